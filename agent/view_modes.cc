// The snapshot modes that copy a view of the device in one pass: none (the idle device
// itself), freeze (the device while its filesystem is frozen) and lvm/lvm-thin (a snapshot
// device). They differ in how the view is taken and released; the copy is CopyDevice for all.
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>

#include "agent/copy_mode.h"
#include "agent/events.h"
#include "agent/used_map.h"
#include "base/log.h"
#include "base/process_identity.h"
#include "snapshot/freeze.h"
#include "snapshot/freeze_view.h"
#include "snapshot/lvm_kept.h"
#include "snapshot/lvm_view.h"
#include "snapshot/thin_delta.h"
#include "snapshot/thin_device.h"

namespace hotsnap {
namespace {

// Maps the used blocks of `device` (a view) unless `map` holds them already, writes the
// metadata frame, and copies every chunk. `check` runs before each chunk.
Result<CopyResult> CopyDevice(const SourceDevice& device, std::optional<UsedBlockMap>* map,
                              bool all_blocks, std::function<Status()> check, CopyTarget* t) {
  if (!map->has_value()) {
    EmitPhase("map");
    auto used = MapUsedBlocks(device, all_blocks, true);
    if (!used.ok()) return used.status();
    map->emplace(std::move(used.value()));
  }
  const UsedBlockMap& used = **map;
  if (t->pipeline.progress != nullptr) t->pipeline.progress->SetTotal(used.used_bytes());
  RecordMap(used, t->meta);
  EmitPhase("read");
  HOTSNAP_RETURN_IF_ERROR(t->writer->Begin(*t->meta, t->base_hashes));
  PipelineOptions p = t->pipeline;
  CopyResult result;
  std::vector<bool> unchanged;
  if (!t->base_hashes.empty()) {
    p.base_hashes = &t->base_hashes;
    // At the consistency point (frozen, or a snapshot): may a change log spare the read?
    Result<ChangeLog> log = Status(Code::kInternal, "");
    if (t->change_log) log = t->change_log();
    ChangeSourceChoice choice =
        ChooseChangeSource(log.ok() ? &log.value() : nullptr, t->base_image_hash, t->meta->device_bytes, BootId());
    if (t->change_log && !log.ok()) {
      choice.reason = "every used block read and hashed against the parent's chunk hashes: " + log.status().message();
    }
    if (choice.use_log) {
      unchanged = UnchangedChunks(*log, used, *t->meta);
      p.unchanged = &unchanged;
    }
    result.report.change_source = choice.source;
    result.report.change_reason = choice.reason;
  }
  p.check = std::move(check);
  if (!used.all_blocks()) {
    p.planner = [&used](uint64_t, uint64_t offset, uint32_t length, std::vector<ByteExtent>* out) {
      used.UsedIn(offset, length, out);
    };
  }
  auto stats = RunBackupPipeline(device, *t->meta, p, t->writer);
  if (!stats.ok()) return stats.status();
  result.reader = stats->reader;
  result.bytes_read = stats->bytes_read;
  result.zero_chunks = stats->zero_chunks;
  result.chunks = stats->chunks;
  result.report.used_bytes = used.used_bytes();
  result.used_map = std::make_shared<const UsedBlockMap>(used);
  return result;
}

// --snapshot none: reads the device as it is; nobody may be writing to it.
class PlainMode : public CopyMode {
 public:
  PlainMode(const ModeOptions& options, std::vector<std::string> crash_consistent)
      : options_(options) {
    crash_consistent_ = std::move(crash_consistent);
  }
  SnapshotMode mode() const override { return SnapshotMode::kNone; }
  std::string Describe() const override {
    if (!crash_consistent_.empty()) {
      std::string list;
      for (const std::string& c : crash_consistent_) list += (list.empty() ? "" : ", ") + c;
      return "read the device as it is, with " + list +
             " mounted read-write and not frozen (--allow-crash-consistent: crash-consistent)";
    }
    return "read the device as it is (not mounted read-write)";
  }
  Status Plan(const BackupSubject& subject) override {
    // Every read-write mount was either refused by the group or let through by the user.
    if (subject.use.mounted_read_write() && crash_consistent_.empty()) {
      return Status(Code::kSource,
                    subject.path + " is " + subject.use.Describe() +
                        ". With --snapshot none hotsnap reads the device as it is; a filesystem "
                        "that is written during the read gives an image mixing old and new "
                        "blocks, which may not mount. Use --snapshot tracked or freeze, "
                        "unmount it, or remount it read-only (mount -o remount,ro).");
    }
    subject_ = &subject;
    // Nobody writes to the device, so the map made now is the run's map.
    auto used = MapUsedBlocks(subject.device, options_.all_blocks, true);
    if (!used.ok()) return used.status();
    map_.emplace(std::move(used.value()));
    return Status::Ok();
  }
  uint64_t planned_bytes() const override { return map_ ? map_->used_bytes() : 0; }
  std::string planned_map() const override { return map_ ? DescribeMap(*map_) : ""; }
  Status Prepare() override { return Status::Ok(); }
  Result<CopyResult> Copy(CopyTarget* t) override {
    return CopyDevice(subject_->device, &map_, options_.all_blocks, nullptr, t);
  }
  Status Release(CopyResult*) override { return Status::Ok(); }

 private:
  ModeOptions options_;
  const BackupSubject* subject_ = nullptr;
  std::optional<UsedBlockMap> map_;
};

// --snapshot freeze: the group's filesystems stay frozen for the whole copy.
class FreezeMode : public CopyMode {
 public:
  FreezeMode(const ModeOptions& options, ConsistencyGroup group)
      : options_(options), group_(std::move(group)) {
    crash_consistent_ = group_.crash_consistent;
  }
  SnapshotMode mode() const override { return SnapshotMode::kFreeze; }
  std::string Describe() const override {
    return "freeze " + group_.Describe() + " for the whole copy, at most " +
           std::to_string(options_.max_freeze.count()) + " ms";
  }
  Status Plan(const BackupSubject& subject) override {
    subject_ = &subject;
    return EstimateGroupUse(subject, group_, options_.all_blocks, &planned_, &how_);
  }
  uint64_t planned_bytes() const override { return planned_; }
  std::string planned_map() const override { return how_; }
  std::vector<MountUse> frozen_mounts() const override { return group_.members; }
  Status Prepare() override {
    EmitPhase("snapshot");
    if (options_.rendezvous != nullptr) {
      // Several sources: the group of all of them is frozen at once, when every one is here.
      auto share = options_.rendezvous->Join(std::nullopt);
      if (!share.ok()) return share.status();
      view_ = std::move(share.value());
      return Status::Ok();
    }
    FreezeViewOptions f;
    f.source = subject_->path;
    f.mount_points = group_.mount_points();
    f.max_freeze = options_.max_freeze;
    f.hooks = options_.hooks;
    auto view = FreezeView::Open(f);
    if (!view.ok()) return view.status();
    view_ = std::move(view.value());
    return Status::Ok();
  }
  Result<CopyResult> Copy(CopyTarget* t) override {
    std::optional<UsedBlockMap> map;  // mapped under the freeze
    HeldFreeze* view = view_.get();
    return CopyDevice(subject_->device, &map, options_.all_blocks, [view] { return view->Check(); },
                      t);
  }
  Status Release(CopyResult* result) override {
    if (!view_) return Status::Ok();
    EmitPhase("release");
    Status thawed = view_->Release();
    if (result != nullptr) result->report.freeze_ms.push_back(view_->frozen_for().count());
    EmitFreezeWindow(JoinMountPoints(group_.mount_points()), view_->frozen_for().count() / 1000.0);
    view_.reset();
    return thawed;
  }

 private:
  ModeOptions options_;
  ConsistencyGroup group_;
  const BackupSubject* subject_ = nullptr;
  uint64_t planned_ = 0;
  std::string how_;
  std::unique_ptr<HeldFreeze> view_;
};

// --snapshot lvm / lvm-thin: reads an LVM snapshot; the origin stays writable.
class LvmMode : public CopyMode {
 public:
  LvmMode(const ModeOptions& options, SnapshotMode mode, const MountUse* mount)
      : options_(options), mode_(mode), mount_point_(mount ? mount->mount_point : "") {}
  SnapshotMode mode() const override { return mode_; }
  std::string Describe() const override {
    return std::string("take an LVM ") + (mode_ == SnapshotMode::kLvmThin ? "thin" : "classic") +
           " snapshot of " + plan_.origin.full_name() +
           (mode_ == SnapshotMode::kLvm ? " (copy-on-write area " + HumanBytes(plan_.cow_bytes) + ")" : "") +
           " and read the snapshot";
  }
  Status Plan(const BackupSubject& subject) override {
    subject_ = &subject;
    auto plan = LvmSnapshotView::Plan(ViewOptions());
    if (!plan.ok()) return plan.status();
    plan_ = std::move(plan.value());
    if (!mount_point_.empty()) {
      return EstimateMountedUse(subject, mount_point_, options_.all_blocks, &planned_, &how_);
    }
    // Not mounted: the origin is idle, so its map now is what the snapshot will hold.
    auto used = MapUsedBlocks(subject.device, options_.all_blocks, false);
    if (!used.ok()) return used.status();
    planned_ = used->used_bytes();
    how_ = DescribeMap(*used) + " of the origin";
    return Status::Ok();
  }
  uint64_t planned_bytes() const override { return planned_; }
  std::string planned_map() const override { return how_; }
  Status Prepare() override {
    EmitPhase("snapshot");
    auto view = LvmSnapshotView::Open(ViewOptions(), &plan_);
    if (!view.ok()) return view.status();
    view_ = std::move(view.value());
    return Status::Ok();
  }
  Result<CopyResult> Copy(CopyTarget* t) override {
    auto opened = OpenSource(view_->device_path());
    if (!opened.ok()) return opened.status();
    snapshot_.emplace(std::move(opened.value()));
    if (options_.keep_snapshot) {
      t->meta->kept_snapshot = KeptSnapshotRef{plan_.origin.vg_name, KeptSnapshotName(plan_.origin.lv_name),
                                               view_->run_id()};
    }
    // A delta of a thin LV whose parent's snapshot was kept: the pool's metadata says what
    // changed since (thin_delta), unless the caller brought its own change log.
    if (plan_.thin && !t->base_hashes.empty() && !t->change_log && t->base_meta != nullptr) {
      const ImageMetadata parent = *t->base_meta;
      const Hash128 parent_hash = t->base_image_hash;
      const uint64_t device_bytes = t->meta->device_bytes;
      t->change_log = [this, parent, parent_hash, device_bytes] {
        return ThinChangeLog(parent, parent_hash, device_bytes);
      };
    }
    std::optional<UsedBlockMap> map;  // the snapshot's own
    LvmSnapshotView* view = view_.get();
    auto copied = CopyDevice(*snapshot_, &map, options_.all_blocks,
                             [view] { return view->Check(); }, t);
    // A read error from an invalidated snapshot: say why it failed, not just "EIO".
    if (!copied.ok()) HOTSNAP_RETURN_IF_ERROR(view_->CheckNow());
    return copied;
  }
  Status Release(CopyResult* result) override {
    if (!view_) return Status::Ok();
    EmitPhase("release");
    // Still valid after the last chunk? Only then does the copy count.
    Status valid = result != nullptr ? view_->CheckNow() : Status::Ok();
    snapshot_.reset();  // LVM cannot remove a snapshot we still hold open
    // A snapshot to keep stays until the image is published (AfterPublish); if the run fails
    // before that, the view's destructor removes it.
    if (options_.keep_snapshot && result != nullptr && valid.ok()) return Status::Ok();
    Status removed = view_->Release();
    view_.reset();
    HOTSNAP_RETURN_IF_ERROR(valid);
    return removed;
  }
  void AfterPublish() override {
    if (!view_) return;
    Status kept = view_->Keep();
    if (kept.ok() && view_->kept()) {
      Notice("kept the thin snapshot " + view_->kept()->full_name() +
             " as the parent of the next delta backup (--base this image)");
    } else if (!kept.ok()) {
      Notice("warning: the image is published, but its thin snapshot could not be kept for the next delta: " +
           kept.message() + "; the next delta backup will compare hashes");
    }
    view_.reset();
  }

 private:
  // The changes since `parent` (made with --keep-snapshot): thin_delta between its kept
  // snapshot and this run's, and the kept snapshot's used blocks (activated just to map them).
  Result<ChangeLog> ThinChangeLog(const ImageMetadata& parent, const Hash128& parent_hash,
                                  uint64_t device_bytes) {
    const std::string& vg = plan_.origin.vg_name;
    const std::string& origin = plan_.origin.lv_name;
    if (!parent.kept_snapshot) {
      return Status(Code::kSource, "the parent image was not made with --keep-snapshot: no thin snapshot of its "
                                   "moment to compare with");
    }
    // One lvs report for the kept snapshot, this run's and their pool (the repair, with lvs
    // runs of its own, only when the report shows a crash's leftovers).
    auto rows = ListThinLvs(RealLvmControl(), vg);
    if (!rows.ok()) return rows.status();
    Result<std::optional<KeptSnapshot>> kept = Status(Code::kInternal, "");
    if (KeptSnapshotsNeedRepairIn(*rows, origin)) {
      kept = FindKeptSnapshot(vg, origin);
      if (kept.ok()) rows = ListThinLvs(RealLvmControl(), vg);
      if (!rows.ok()) return rows.status();
    } else {
      kept = KeptSnapshotIn(*rows, origin);
    }
    if (!kept.ok()) return kept.status();
    if (!*kept) {
      return Status(Code::kSource, "the parent's thin snapshot " + vg + "/" + parent.kept_snapshot->lv +
                                       " is gone (removed since the parent was made)");
    }
    if ((*kept)->run_id != parent.kept_snapshot->run_id) {
      return Status(Code::kSource, "the kept thin snapshot " + (*kept)->full_name() + " is of run " +
                                       (*kept)->run_id + ", not of the parent's (" +
                                       parent.kept_snapshot->run_id + "): a later backup replaced it");
    }
    const std::string now_lv = view_->snapshot_name().substr(view_->snapshot_name().find('/') + 1);
    auto ranges = ThinChangedRangesIn(*rows, vg, (*kept)->lv_name, now_lv);
    if (!ranges.ok()) return ranges.status();
    view_->NoteThinReport(*rows);  // Keep() needs no lvs of its own
    // The parent's used blocks: its snapshot mapped read-only straight from the pool
    // (device-mapper, not LVM: two dmsetup runs instead of two lvchange), then let go.
    auto used = MapKeptSnapshot(*rows, **kept);
    if (!used.ok()) return used.status();
    ChangeLog log;
    log.origin = "thin_delta";
    log.token = ChangeLogToken{BootId(), parent_hash, 0, device_bytes};
    log.changed = std::move(ranges.value());
    log.parent_used = std::make_shared<const UsedBlockMap>(std::move(used.value()));
    return log;
  }

  // The used-block map of the kept snapshot `kept` (a row of `rows`), read through a
  // read-only device-mapper device for its thin id (snapshot/thin_device.h).
  Result<UsedBlockMap> MapKeptSnapshot(const std::vector<ThinLvRecord>& rows, const KeptSnapshot& kept) {
    auto pool = ThinPoolIn(rows, kept.vg_name, kept.pool_lv);
    if (!pool.ok()) return pool.status();
    uint64_t size_bytes = 0;
    for (const ThinLvRecord& row : rows) {
      if (row.lv_name == kept.lv_name) size_bytes = row.size_bytes;
    }
    auto mapped = ReadOnlyThinDevice::Create(*pool, kept.thin_id, size_bytes, view_->run_id());
    if (!mapped.ok()) return mapped.status().Wrap("reading the kept snapshot " + kept.full_name());
    Result<UsedBlockMap> used = Status(Code::kInternal, "");
    {
      auto device = OpenSource(mapped->path());
      used = device.ok() ? MapUsedBlocks(*device, options_.all_blocks, false) : Result<UsedBlockMap>(device.status());
    }
    Status removed = mapped->Remove();
    if (!used.ok()) return used.status().WithCleanup(removed);
    HOTSNAP_RETURN_IF_ERROR(removed);
    return used;
  }

  LvmViewOptions ViewOptions() const {
    LvmViewOptions l;
    l.keep_snapshot = options_.keep_snapshot;
    l.source = subject_->path;
    l.mode = SnapshotModeName(mode_);
    l.cow_bytes = options_.cow_bytes;
    l.mount_point = mount_point_;
    l.hooks = options_.hooks;
    return l;
  }

  ModeOptions options_;
  SnapshotMode mode_;
  std::string mount_point_;
  const BackupSubject* subject_ = nullptr;
  LvmSnapshotPlan plan_;
  uint64_t planned_ = 0;
  std::string how_;
  std::unique_ptr<LvmSnapshotView> view_;
  std::optional<SourceDevice> snapshot_;
};

}  // namespace

Status EstimateMountedUse(const BackupSubject& subject, const std::string& mount_point,
                          bool all_blocks, uint64_t* bytes, std::string* how) {
  const uint64_t device_bytes = subject.device.size_bytes;
  if (all_blocks) {
    *bytes = device_bytes;
    *how = "all blocks (--all-blocks)";
    return Status::Ok();
  }
  struct statvfs st;
  if (::statvfs(mount_point.c_str(), &st) != 0) {
    return Status::FromErrno(Code::kSource, errno, "statfs " + mount_point);
  }
  const uint64_t free_bytes = static_cast<uint64_t>(st.f_bfree) * st.f_frsize;
  *bytes = device_bytes - std::min(device_bytes, free_bytes);
  *how = "estimate from statfs of " + mount_point + "; mapped exactly at the consistency point";
  return Status::Ok();
}

Status EstimateGroupUse(const BackupSubject& subject, const ConsistencyGroup& group,
                        bool all_blocks, uint64_t* bytes, std::string* how) {
  const uint64_t device_bytes = subject.device.size_bytes;
  if (all_blocks) return EstimateMountedUse(subject, "", true, bytes, how);
  // The disk less, for each member, what statfs reports free in it.
  uint64_t free_bytes = 0;
  for (const MountUse& m : group.members) {
    struct statvfs st;
    if (::statvfs(m.mount_point.c_str(), &st) != 0) {
      return Status::FromErrno(Code::kSource, errno, "statfs " + m.mount_point);
    }
    free_bytes += static_cast<uint64_t>(st.f_bfree) * st.f_frsize;
  }
  *bytes = device_bytes - std::min(device_bytes, free_bytes);
  *how = "estimate from statfs of " + JoinMountPoints(group.mount_points()) +
         "; mapped exactly at the consistency point";
  return Status::Ok();
}

std::unique_ptr<CopyMode> MakePlainMode(const ModeOptions& options,
                                        std::vector<std::string> crash_consistent) {
  return std::make_unique<PlainMode>(options, std::move(crash_consistent));
}
std::unique_ptr<CopyMode> MakeFreezeMode(const ModeOptions& options, ConsistencyGroup group) {
  return std::make_unique<FreezeMode>(options, std::move(group));
}
std::unique_ptr<CopyMode> MakeLvmMode(const ModeOptions& options, SnapshotMode mode,
                                      const MountUse* mount) {
  return std::make_unique<LvmMode>(options, mode, mount);
}

}  // namespace hotsnap
