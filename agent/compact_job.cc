#include "agent/compact_job.h"

#include <unistd.h>

#include <memory>
#include <vector>

#include "agent/image_jobs.h"
#include "base/interrupt.h"
#include "io/chunk_codec.h"
#include "io/image_chain.h"
#include "io/image_writer.h"
#include "io/sink.h"

namespace hotsnap {

Result<CompactReport> RunCompact(const CompactOptions& options) {
  auto image = OpenImage(options.image);
  if (!image.ok()) return image.status();
  if (!image->index) {
    return Status(Code::kUsage, "compact needs an image file it can seek in; " + image->name +
                                    " is a stream (save it to a file first)");
  }
  // A delta image brings its parents: each chunk's frame comes from the newest image holding one.
  auto chain = ImageChain::Open(options.image, options.chain);
  if (!chain.ok()) return chain.status();
  const ImageIndex& index = chain->newest();
  std::unique_ptr<Sink> sink;
  if (options.dest == "-") {
    if (::isatty(STDOUT_FILENO)) return Status(Code::kUsage, "refusing to write an image to a terminal");
    sink = MakeFdSink(STDOUT_FILENO, "stdout");
  } else {
    auto file = MakeFileSink(options.dest, FileSinkOptions{options.overwrite});
    if (!file.ok()) return file.status();
    sink = std::move(file.value());
  }
  ImageMetadata meta = index.meta;
  meta.layout = Layout::kPlain;
  meta.base.reset();
  meta.stands_for.clear();
  ImageWriter writer(sink.get());
  HOTSNAP_RETURN_IF_ERROR(writer.Begin(meta));
  auto decompressor = ChunkDecompressor::Create(WindowLogFor(meta.chunk_bytes));
  if (!decompressor.ok()) return decompressor.status();
  std::vector<uint8_t> frame(MaxFrameBytes(meta.chunk_bytes));
  std::vector<uint8_t> data(meta.chunk_bytes);
  CompactReport r;
  for (uint64_t i = 0; i < meta.chunk_count(); ++i) {
    if (Interrupted()) return Status(Code::kInterrupted, "interrupted during compaction");
    const ChainLink& link = chain->links()[chain->LinkOf(i)];
    if (chain->LinkOf(i) != 0) ++r.parent_chunks;
    uint32_t frame_bytes = link.index.ChunkFrameBytes(i);
    if (frame_bytes > frame.size()) {
      return Status(Code::kIntegrity, "image " + link.path + ": chunk " + std::to_string(i) +
                                          " frame is larger than a chunk frame can be");
    }
    HOTSNAP_RETURN_IF_ERROR(
        ReadExactAt(link.fd.get(), link.path, link.index.chunk_offsets[i], frame.data(), frame_bytes));
    std::span<const uint8_t> f(frame.data(), frame_bytes);
    uint32_t length = meta.ChunkLength(i);
    Status s = (*decompressor)->Decompress(f, data, length);
    Hash128 h = s.ok() ? HashBytes(data.data(), length) : Hash128{};
    if (!s.ok() || !(h == index.trailer.chunk_hashes[i])) {
      return Status(Code::kIntegrity, "image " + link.path + ": chunk " + std::to_string(i) +
                                          " (image offset " + std::to_string(link.index.chunk_offsets[i]) +
                                          ") is corrupt" + (s.ok() ? ": hash mismatch" : ": " + s.message()));
    }
    HOTSNAP_RETURN_IF_ERROR(writer.AppendChunk(f, length, h));
  }
  RunReport report = index.report;
  report.change_source.clear();
  report.change_reason.clear();
  report.changed_chunks = report.unchanged_chunks = 0;
  HOTSNAP_RETURN_IF_ERROR(writer.Finish(report));
  HOTSNAP_RETURN_IF_ERROR(sink->Commit());
  r.image_bytes = writer.bytes_written();
  r.chain_links = chain->links().size();
  uint64_t chunk_frames = 0;
  for (const SeekEntry& e : index.entries) chunk_frames += e.decompressed_bytes > 0 ? 1 : 0;
  r.dropped_frames = chunk_frames - (meta.chunk_count() - r.parent_chunks);
  return r;
}

}  // namespace hotsnap
