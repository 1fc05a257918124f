#include "agent/compact_job.h"

#include <unistd.h>

#include <memory>
#include <vector>

#include "agent/chain_copy.h"
#include "agent/image_jobs.h"
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
  auto copied = AppendChainChunks(*chain, &writer, "compaction");
  if (!copied.ok()) return copied.status();
  CompactReport r;
  r.parent_chunks = copied->parent_chunks;
  HOTSNAP_RETURN_IF_ERROR(writer.Finish(PlainImageReport(index.report)));
  HOTSNAP_RETURN_IF_ERROR(sink->Commit());
  r.image_bytes = writer.bytes_written();
  r.chain_links = chain->links().size();
  uint64_t chunk_frames = 0;
  for (const SeekEntry& e : index.entries) chunk_frames += e.decompressed_bytes > 0 ? 1 : 0;
  r.dropped_frames = chunk_frames - (meta.chunk_count() - r.parent_chunks);
  return r;
}

}  // namespace hotsnap
