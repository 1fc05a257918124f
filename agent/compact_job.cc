#include "agent/compact_job.h"

#include <unistd.h>

#include <memory>
#include <vector>

#include "agent/image_jobs.h"
#include "io/chunk_codec.h"
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
  const ImageIndex& index = *image->index;
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
  ImageWriter writer(sink.get());
  HOTSNAP_RETURN_IF_ERROR(writer.Begin(meta));
  auto decompressor = ChunkDecompressor::Create(WindowLogFor(meta.chunk_bytes));
  if (!decompressor.ok()) return decompressor.status();
  std::vector<uint8_t> frame(MaxFrameBytes(meta.chunk_bytes));
  std::vector<uint8_t> data(meta.chunk_bytes);
  for (uint64_t i = 0; i < meta.chunk_count(); ++i) {
    uint32_t frame_bytes = index.ChunkFrameBytes(i);
    if (frame_bytes > frame.size()) {
      return Status(Code::kIntegrity, "image " + image->name + ": chunk " + std::to_string(i) +
                                          " frame is larger than a chunk frame can be");
    }
    HOTSNAP_RETURN_IF_ERROR(ReadExactAt(image->fd, image->name, index.chunk_offsets[i], frame.data(), frame_bytes));
    std::span<const uint8_t> f(frame.data(), frame_bytes);
    uint32_t length = meta.ChunkLength(i);
    Status s = (*decompressor)->Decompress(f, data, length);
    Hash128 h = s.ok() ? HashBytes(data.data(), length) : Hash128{};
    if (!s.ok() || !(h == index.trailer.chunk_hashes[i])) {
      return Status(Code::kIntegrity, "image " + image->name + ": chunk " + std::to_string(i) +
                                          " (image offset " + std::to_string(index.chunk_offsets[i]) +
                                          ") is corrupt" + (s.ok() ? ": hash mismatch" : ": " + s.message()));
    }
    HOTSNAP_RETURN_IF_ERROR(writer.AppendChunk(f, length, h));
  }
  HOTSNAP_RETURN_IF_ERROR(writer.Finish(index.report));
  HOTSNAP_RETURN_IF_ERROR(sink->Commit());
  CompactReport r;
  r.image_bytes = writer.bytes_written();
  uint64_t chunk_frames = 0;
  for (const SeekEntry& e : index.entries) chunk_frames += e.decompressed_bytes > 0 ? 1 : 0;
  r.dropped_frames = chunk_frames - meta.chunk_count();
  return r;
}

}  // namespace hotsnap
