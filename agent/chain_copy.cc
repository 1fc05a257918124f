#include "agent/chain_copy.h"

#include <span>
#include <string>
#include <vector>

#include "base/interrupt.h"
#include "io/chunk_codec.h"
#include "io/image_index.h"

namespace hotsnap {

Result<ChainCopyCounts> AppendChainChunks(const ImageChain& chain, ImageWriter* writer,
                                          const char* job) {
  const ImageIndex& index = chain.newest();
  const ImageMetadata& meta = index.meta;
  auto decompressor = ChunkDecompressor::Create(WindowLogFor(meta.chunk_bytes));
  if (!decompressor.ok()) return decompressor.status();
  std::vector<uint8_t> frame(MaxFrameBytes(meta.chunk_bytes));
  std::vector<uint8_t> data(meta.chunk_bytes);
  ChainCopyCounts counts;
  for (uint64_t i = 0; i < meta.chunk_count(); ++i) {
    if (Interrupted()) return Status(Code::kInterrupted, std::string("interrupted during ") + job);
    const size_t link_index = chain.LinkOf(i);
    const ChainLink& link = chain.links()[link_index];
    if (link_index != 0) ++counts.parent_chunks;
    uint32_t frame_bytes = link.index.ChunkFrameBytes(i);
    if (frame_bytes > frame.size()) {
      return Status(Code::kIntegrity, "image " + link.path + ": chunk " + std::to_string(i) +
                                          " frame is larger than a chunk frame can be");
    }
    HOTSNAP_RETURN_IF_ERROR(ReadExactAt(link.fd.get(), link.path, link.index.chunk_offsets[i],
                                        frame.data(), frame_bytes));
    std::span<const uint8_t> f(frame.data(), frame_bytes);
    uint32_t length = meta.ChunkLength(i);
    Status s = (*decompressor)->Decompress(f, data, length);
    Hash128 h = s.ok() ? HashBytes(data.data(), length) : Hash128{};
    if (!s.ok() || !(h == index.trailer.chunk_hashes[i])) {
      return Status(Code::kIntegrity,
                    "image " + link.path + ": chunk " + std::to_string(i) + " (image offset " +
                        std::to_string(link.index.chunk_offsets[i]) + ") is corrupt" +
                        (s.ok() ? ": hash mismatch" : ": " + s.message()));
    }
    HOTSNAP_RETURN_IF_ERROR(writer->AppendChunk(f, length, h));
    ++counts.chunks;
  }
  return counts;
}

RunReport PlainImageReport(RunReport report) {
  report.change_source.clear();
  report.change_reason.clear();
  report.changed_chunks = report.unchanged_chunks = 0;
  return report;
}

}  // namespace hotsnap
