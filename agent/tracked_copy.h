// The "tracked" snapshot mode: a consistent image of a mounted, busy filesystem with
// freezes of milliseconds, using only interfaces of every stock kernel.
//
//   1. start recording writes to the device (WriteTracker);
//   2. freeze briefly: drop the write records so far (all of them completed before the
//      freeze returned), compute the used-block map, thaw;
//   3. pre-copy every chunk while the system runs;
//   4. rounds: freeze briefly, collect the chunks written since the last freeze plus those
//      whose used blocks changed, recompute the map, thaw, copy those chunks again;
//   5. once a round is small: the final freeze (with the user's hooks). Collect the last
//      written set, recompute the map, read those chunks into memory, thaw; then compress
//      and append them.
// Re-copied chunks go into the image as rounds of the tracked layout (docs/image-format.md).
// The image equals the device at the final freeze on every block in use then.
#ifndef HOTSNAP_AGENT_TRACKED_COPY_H_
#define HOTSNAP_AGENT_TRACKED_COPY_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "agent/backup_pipeline.h"
#include "base/status.h"
#include "io/image_format.h"
#include "io/image_writer.h"
#include "io/source_device.h"
#include "snapshot/hooks.h"

namespace hotsnap {

struct TrackedOptions {
  std::string mount_point;                     // where the source's filesystem is mounted
  std::chrono::milliseconds max_freeze{10000};  // per freeze
  HookSet hooks;                               // around the final freeze
  PipelineOptions pipeline;                    // level, workers, queue depth, limits
  bool all_blocks = false;
  uint32_t max_rounds = 8;
  // A round this small (bytes) makes the next freeze the final one; also the most the final
  // freeze reads into memory before thawing.
  uint64_t final_round_bytes = 64ull << 20;
};

struct TrackedResult {
  RunReport report;
  uint64_t bytes_read = 0;
  uint64_t zero_chunks = 0;
  std::string reader;
};

// `source` is the open device; `meta` is filled (used bytes and map, layout) and written through
// writer->Begin() here. The caller calls writer->Finish(result.report) and commits.
Result<TrackedResult> RunTrackedCopy(const TrackedOptions& options, const SourceDevice& source,
                                     ImageMetadata* meta, ImageWriter* writer);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_TRACKED_COPY_H_
