// --snapshot tracked as a CopyMode: the copy itself is RunTrackedCopy (agent/tracked_copy.h).
#include <cstdlib>

#include "agent/copy_mode.h"
#include "agent/events.h"
#include "agent/tracked_copy.h"
#include "io/ssh_remote.h"
#include "snapshot/write_tracker.h"

namespace hotsnap {
namespace {

class TrackedMode : public CopyMode {
 public:
  TrackedMode(const ModeOptions& options, ConsistencyGroup group)
      : options_(options), group_(std::move(group)) {
    crash_consistent_ = group_.crash_consistent;
  }
  SnapshotMode mode() const override { return SnapshotMode::kTracked; }
  std::string Describe() const override {
    return "copy " + group_.Describe() +
           " while tracking its writes, then copy what changed again with brief freezes (at "
           "most " + std::to_string(options_.max_freeze.count()) + " ms each)";
  }
  Status Plan(const BackupSubject& subject) override {
    if (!subject.device.is_block_device) {
      return Status(Code::kUsage, "--snapshot tracked needs a block device; " + subject.path +
                                      " is a regular file");
    }
    subject_ = &subject;
    return EstimateGroupUse(subject, group_, options_.all_blocks, &planned_, &how_);
  }
  uint64_t planned_bytes() const override { return planned_; }
  std::string planned_map() const override { return how_; }
  std::vector<MountUse> frozen_mounts() const override { return group_.members; }
  // Writes are recorded from here on; the first freeze (in Copy) is the clean starting point.
  Status Prepare() override {
    auto tracker = WriteTracker::Start(subject_->path, subject_->device.size_bytes);
    if (!tracker.ok()) return tracker.status().Wrap("--snapshot tracked");
    tracker_ = std::move(tracker.value());
    return Status::Ok();
  }
  Result<CopyResult> Copy(CopyTarget* t) override {
    TrackedOptions o;
    o.mount_points = group_.mount_points();
    o.max_freeze = options_.max_freeze;
    o.hooks = options_.hooks;
    o.all_blocks = options_.all_blocks;
    o.pipeline = t->pipeline;
    o.rendezvous = options_.rendezvous;
    // Test seam, like HOTSNAP_CRASH_AT: the tests' small filesystems rarely have enough writes
    // ahead of the pre-copy for a freeze between its parts; this lowers the bar.
    if (const char* env = std::getenv("HOTSNAP_TEST_MID_FREEZE_CHUNKS")) {
      o.mid_freeze_chunks = std::strtoull(env, nullptr, 10);
    }
    o.base_hashes = t->base_hashes;
    o.base_path = t->base_path;
    int image_fd = t->image_fd;
    if (IsSshUrl(o.base_path)) {
      // A parent on another host: the final freeze cannot rebuild its chunks from it, so it
      // captures whole chunks, as when the image itself cannot be read back.
      o.base_path.clear();
      image_fd = -1;
    }
    t->meta->layout = t->base_hashes.empty() ? Layout::kTracked : Layout::kDelta;
    EmitPhase("read");
    auto copied = RunTrackedCopy(o, subject_->device, t->meta, t->writer, image_fd,
                                 std::move(tracker_));
    if (!copied.ok()) return copied.status();
    CopyResult result;
    result.report = copied->report;
    result.reader = copied->reader;
    result.bytes_read = copied->bytes_read;
    result.zero_chunks = copied->zero_chunks;
    result.chunks = t->meta->chunk_count();
    return result;
  }
  // Every freeze was thawed inside the copy; the tracker stops with it.
  Status Release(CopyResult*) override {
    tracker_.reset();
    return Status::Ok();
  }

 private:
  ModeOptions options_;
  ConsistencyGroup group_;
  const BackupSubject* subject_ = nullptr;
  uint64_t planned_ = 0;
  std::string how_;
  std::unique_ptr<WriteTracker> tracker_;
};

}  // namespace

std::unique_ptr<CopyMode> MakeTrackedMode(const ModeOptions& options, ConsistencyGroup group) {
  return std::make_unique<TrackedMode>(options, std::move(group));
}

}  // namespace hotsnap
