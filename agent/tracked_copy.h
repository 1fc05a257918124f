// The "tracked" snapshot mode: a consistent image of a mounted, busy filesystem with
// freezes of milliseconds, using only interfaces of every stock kernel.
//
//   1. start recording writes to the device (WriteTracker), per 64 KiB granule;
//   2. freeze briefly: drop the write records so far (all of them completed before the
//      freeze returned), compute the used-block map, thaw;
//   3. pre-copy every chunk while the system runs, in four parts of about equal used bytes;
//      between two parts, if the writes so far touch enough chunks not yet copied, freeze
//      briefly: those chunks are read after that freeze, so their writes so far are
//      forgotten (the map is renewed; a copied chunk whose used blocks changed counts as
//      written whole);
//   4. rounds: freeze briefly, collect the granules written since the last freeze and the
//      chunks whose used blocks changed, recompute the map, thaw, copy those chunks again;
//   5. a freeze that finds few writes (at most final_round_bytes to read) stays on as the
//      final one, unless reading them would take the freeze past final_freeze_budget (it
//      then thaws and another round runs); with pre-freeze/post-thaw hooks, which run
//      around the final freeze only, the final freeze is the one after a round that found
//      few. Under it: collect the last written granules, recompute the map, read just those
//      granules (and blocks that became used) into memory, run the while-frozen hook, thaw. Then each affected
//      chunk is rebuilt from its newest frame, read back from the image being written, with
//      the captured bytes laid over it, and appended as the last round. When the output
//      cannot be read back (a pipe, ssh), whole chunks are captured instead, so that freeze
//      is longer.
// Re-copied chunks go into the image as rounds of the tracked layout (docs/image-format.md).
// The image equals the device at the final freeze on every block in use then.
//
// Why a rebuilt chunk is right: a chunk's newest frame was read after some freeze F; every
// write to it after F was recorded and collected at a later freeze. Collected at the
// freeze after a round, it would have had the chunk copied again after that freeze;
// collected at a freeze between pre-copy parts, it stays marked (only chunks not copied yet
// are cleared there). So what differs from the frame is marked at the final freeze, and
// those granules are read under it. Blocks whose used state changed since the frame's map are read
// whole or zeroed (the final map decides what is kept).
#ifndef HOTSNAP_AGENT_TRACKED_COPY_H_
#define HOTSNAP_AGENT_TRACKED_COPY_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/backup_pipeline.h"
#include "base/status.h"
#include "io/image_format.h"
#include "io/image_writer.h"
#include "io/source_device.h"
#include "snapshot/freeze_rendezvous.h"
#include "snapshot/hooks.h"
#include "snapshot/write_tracker.h"

namespace hotsnap {

struct TrackedOptions {
  // Where the group's filesystems are mounted (the source's, or every one mounted read-write
  // from its partitions), in freeze order: every freeze freezes them all.
  std::vector<std::string> mount_points;
  std::chrono::milliseconds max_freeze{10000};  // per freeze
  HookSet hooks;                                // around the final freeze
  PipelineOptions pipeline;                     // level, workers, queue depth, limits
  bool all_blocks = false;
  uint32_t max_rounds = 8;
  // A freeze that would read at most this many bytes to end the copy (the 64 KiB granules
  // written since the last one, or whole chunks when the image cannot be read back) becomes
  // the final one; with pre-freeze/post-thaw hooks, the freeze after such a round is.
  uint64_t final_round_bytes = 96ull << 20;
  // A freeze between pre-copy parts is made when the writes so far touch at least this
  // many chunks not copied yet. Tests lower it through HOTSNAP_TEST_MID_FREEZE_CHUNKS (see
  // agent/backup_job.cc) to make such freezes happen on small filesystems.
  uint64_t mid_freeze_chunks = 8;
  // How long a final freeze that was not planned may last, counted from the freeze (its
  // FIFREEZE, the map and the reading of the last writes), before it gives up reading,
  // thaws, and lets another round run: a slow disk or a big last round must not make a long
  // freeze; the next round is shorter.
  std::chrono::milliseconds final_freeze_budget{75};
  // The most the final freeze reads into memory before thawing; past it, the last round is
  // copied under the freeze instead (bounded by max_freeze).
  uint64_t capture_limit_bytes = 128ull << 20;
  // Several sources at one moment: the final freeze is the rendezvous' (shared by every
  // source's copy, hooks run there), joined with this wait before another round is copied;
  // the wait doubles after each one that ended without the others (up to 16 s).
  FreezeRendezvous* rendezvous = nullptr;
  std::chrono::milliseconds rendezvous_wait{2000};
  // A delta image (--base): the parent's hash of every chunk and its file. The pre-copy
  // stores only chunks that differ from the parent's; a chunk left to the parent and
  // written during the copy is rebuilt for the final freeze from the parent's frame.
  std::vector<Hash128> base_hashes;
  std::string base_path;
};

struct TrackedResult {
  RunReport report;
  uint64_t bytes_read = 0;
  uint64_t zero_chunks = 0;
  std::string reader;
};

// `source` is the open device; `meta` is filled (used bytes and map, layout) and written through
// writer->Begin() here. `image_fd` reads back what the writer's sink has written
// (Sink::read_back_fd()), or is -1. `tracker` records writes to `source` since before the call
// (started by the caller, so that a failure to track is known before anything is frozen).
// options.pipeline.progress, if set, is advanced by every round, and each re-copy round adds
// its bytes to the work. The caller calls writer->Finish(result.report) and commits.
Result<TrackedResult> RunTrackedCopy(const TrackedOptions& options, const SourceDevice& source,
                                     ImageMetadata* meta, ImageWriter* writer, int image_fd,
                                     std::unique_ptr<WriteTracker> tracker);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_TRACKED_COPY_H_
