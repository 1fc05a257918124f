#include "snapshot/lvm_view.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <thread>

#include "base/log.h"
#include "snapshot/thin_delta.h"

namespace hotsnap {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kMinCowBytes = 64 * kMiB;

std::string Percent(double p) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%.1f%%", p);
  return buf;
}

// Finds the LV behind `source` and decides classic or thin. `listed` gets the whole lvs report
// read on the way (for the pool's use and the leftovers: no second lvs).
Result<LvRecord> FindOrigin(const LvmViewOptions& options, bool* thin, std::vector<LvRecord>* listed) {
  if (!LvmAvailable()) {
    return Status(Code::kUnsupported, "--snapshot " + options.mode + " needs LVM: the lvm command "
                                      "(package lvm2) and a kernel with device-mapper "
                                      "(/dev/mapper/control); this system has not both");
  }
  auto found = FindLogicalVolume(options.lvm, options.source, listed);
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return Status(Code::kUsage, options.source + " is not an active LVM logical volume; --snapshot " +
                                    options.mode + " works only on LVM logical volumes");
  }
  LvRecord origin = std::move(found->value());
  // A thin snapshot is a thin LV like any other, but LVM cannot snapshot a classic one.
  if (origin.segtype == "snapshot") {
    return Status(Code::kUsage, options.source + " (" + origin.full_name() +
                                    ") is itself a classic LVM snapshot, which LVM cannot "
                                    "snapshot; back it up with --snapshot none");
  }
  if (options.mode == "lvm-thin" && !origin.is_thin()) {
    return Status(Code::kUsage, options.source + " (" + origin.full_name() + ") is a " +
                                    origin.segtype + " LV, not a thin one; use --snapshot lvm");
  }
  *thin = options.mode == "lvm-thin" || (options.mode == "auto" && origin.is_thin());
  if (options.keep_snapshot && !*thin) {
    return Status(Code::kUsage, "keeping the snapshot for an incremental backup needs a thin LV "
                                "(--snapshot lvm-thin); " + origin.full_name() + " gets a classic snapshot");
  }
  return origin;
}

// The pool `origin` lives in: its row in `listed` when that is given (a report just read),
// else freshly reported.
Result<LvRecord> GetPool(LvmControl* lvm, const LvRecord& origin, const std::vector<LvRecord>* listed) {
  if (listed != nullptr) {
    const LvRecord* pool = FindLvRow(*listed, origin.vg_name, origin.pool_lv);
    if (pool != nullptr) return *pool;
  }
  auto pools = ListLvs(lvm, {origin.vg_name + "/" + origin.pool_lv});
  if (!pools.ok()) return pools.status();
  if (pools->empty()) return Status(Code::kSource, "thin pool " + origin.vg_name + "/" + origin.pool_lv + " not found");
  return pools->front();
}

Status CheckPoolRoom(const LvRecord& pool, double limit, const std::string& when) {
  double data = pool.data_percent.value_or(0), meta = pool.metadata_percent.value_or(0);
  if (data > limit || meta > limit) {
    return Status(Code::kSource,
                  "thin pool " + pool.full_name() + " is too full " + when + ": data " +
                      Percent(data) + ", metadata " + Percent(meta) + " used (limit " +
                      Percent(limit) + "). A thin snapshot makes every write to the origin take "
                      "new pool space, and a full pool stalls every volume in it. Extend the pool "
                      "(lvextend -L +SIZE " + pool.full_name() + ", or --poolmetadatasize) or free "
                      "space in it first");
  }
  return Status::Ok();
}

}  // namespace

uint64_t DefaultCowBytes(uint64_t origin_bytes) {
  return std::max(origin_bytes / 10, kMinCowBytes);
}

LvmSnapshotView::LvmSnapshotView(const LvmViewOptions& options, const LvRecord& origin, bool thin,
                                 std::string run_id)
    : options_(options), origin_(origin), thin_(thin), run_id_(std::move(run_id)) {
  snapshot_ = origin_.vg_name + "/hotsnap-" + origin_.lv_name + "-" + run_id_;
}

// Room for the snapshot: VG free space for a COW area (returned in bytes, rounded to extents),
// or pool use for a thin snapshot (0 returned; from `listed` when given, a report just read).
static Result<uint64_t> CheckRoom(const LvmViewOptions& options, const LvRecord& origin, bool thin,
                                  const std::vector<LvRecord>* listed) {
  if (thin) {
    auto pool = GetPool(options.lvm, origin, listed);
    if (!pool.ok()) return pool.status();
    HOTSNAP_RETURN_IF_ERROR(CheckPoolRoom(*pool, options.thin_pool_max_percent, "to take a snapshot"));
    return uint64_t{0};
  }
  auto vg = GetVg(options.lvm, origin.vg_name);
  if (!vg.ok()) return vg.status();
  uint64_t cow = options.cow_bytes ? options.cow_bytes : DefaultCowBytes(origin.size_bytes);
  uint64_t extent = std::max<uint64_t>(vg->extent_bytes, 512);
  cow = (cow + extent - 1) / extent * extent;
  if (cow > vg->free_bytes) {
    return Status(Code::kSource,
                  "volume group " + vg->vg_name + " has " + FormatMiB(vg->free_bytes) +
                      " free, the snapshot's copy-on-write area needs " + FormatMiB(cow) +
                      (options.cow_bytes ? "" : " (10 % of the origin, at least 64 MiB)") +
                      ". Free space in the VG (vgextend, or shrink another LV) or pass a "
                      "smaller --cow-size");
  }
  return cow;
}

Result<LvmSnapshotPlan> LvmSnapshotView::Plan(const LvmViewOptions& options) {
  LvmSnapshotPlan plan;
  std::vector<LvRecord> listed;
  auto origin = FindOrigin(options, &plan.thin, &listed);
  if (!origin.ok()) return origin.status();
  auto cow = CheckRoom(options, *origin, plan.thin, &listed);
  if (!cow.ok()) return cow.status();
  plan.origin = std::move(origin.value());
  plan.cow_bytes = *cow;
  plan.listed = std::move(listed);
  return plan;
}

Result<std::unique_ptr<LvmSnapshotView>> LvmSnapshotView::Open(const LvmViewOptions& options,
                                                               const LvmSnapshotPlan* plan) {
  // 1. Which LV, and which kind of snapshot.
  // One lvs report serves steps 1-3 unless the cleanup changed something.
  bool thin = false;
  std::vector<LvRecord> listed;
  Result<LvRecord> origin = Status(Code::kInternal, "");
  if (plan != nullptr && !plan->listed.empty()) {
    thin = plan->thin;
    origin = plan->origin;
    listed = plan->listed;
  } else {
    origin = FindOrigin(options, &thin, &listed);
  }
  if (!origin.ok()) return origin.status();

  // 2. Leftovers of crashed runs slow every write to their origin: remove them first.
  LvmCleanupReport cleaned;
  Status cleanup = CleanupLvmLeftovers(options.lvm, options.lease_dir, &cleaned, &listed);
  for (const std::string& line : cleaned.removed) Notice("removed leftover " + line);
  if (!cleanup.ok()) Notice("could not clean up every leftover: " + cleanup.message());

  std::unique_ptr<LvmSnapshotView> view(new LvmSnapshotView(options, *origin, thin, NewRunId()));
  // 3. Room for it (again, freshly reported, when leftovers were removed: that may have freed some).
  auto cow = CheckRoom(options, *origin, thin, cleaned.removed.empty() ? &listed : nullptr);
  if (!cow.ok()) return cow.status();
  view->cow_bytes_ = *cow;

  // 4. Lease, hooks, lvcreate. From here on the destructor removes whatever exists.
  HOTSNAP_RETURN_IF_ERROR(view->Create());
  return view;
}

Status LvmSnapshotView::Create() {
  Lease lease = LeaseForThisProcess(run_id_);
  lease.vg_name = origin_.vg_name;
  lease.snapshot_lv = snapshot_.substr(snapshot_.find('/') + 1);
  lease.origin_lv = origin_.lv_name;
  lease.mode = mode();
  HOTSNAP_RETURN_IF_ERROR(WriteLease(options_.lease_dir, lease).Wrap("leasing the LVM snapshot"));
  leased_ = true;

  std::vector<std::string> args = {"lvcreate", "-y", "-s", "-n", lease.snapshot_lv, "-p", "r",
                                   "--addtag", kSnapshotTag, "--addtag",
                                   std::string(kRunTagPrefix) + run_id_};
  created_unix_ = static_cast<int64_t>(std::time(nullptr));
  if (thin_) {
    // Thin snapshots get the activation-skip flag (-ky, said here to rely on it: a kept one
    // needs it); -K activates this one anyway, in the same command.
    args.insert(args.end(), {"-ky", "-K"});
    // A snapshot to keep carries its record from the start (KeepThinSnapshot then has one
    // command less to run); until the commit its run tag makes it the run's.
    if (options_.keep_snapshot) {
      args.insert(args.end(), {"--addtag", kKeepRunTagPrefix + run_id_, "--addtag",
                               kKeepTimeTagPrefix + std::to_string(created_unix_)});
    }
  } else {
    args.push_back("-L");
    args.push_back(std::to_string(cow_bytes_) + "b");
  }
  args.push_back(origin_.full_name());

  const HookSet& hooks = options_.hooks;
  HOTSNAP_RETURN_IF_ERROR(RunHook("pre-freeze", hooks.pre_freeze, hooks, options_.source, options_.mount_point));
  Status created = RunLvmChange(options_.lvm, args, "creating LVM snapshot " + snapshot_);
  // The hook may read the snapshot: it must be active (a thin one is not until -K).
  if (created.ok()) created = Activate();
  if (created.ok()) {
    created = RunHook("while-frozen", hooks.while_frozen, hooks, options_.source, options_.mount_point);
  }
  // post-thaw runs whenever pre-freeze ran, whatever happened in between.
  Status post = RunHook("post-thaw", hooks.post_thaw, hooks, options_.source, options_.mount_point);
  HOTSNAP_RETURN_IF_ERROR(created);
  return post;
}

Status LvmSnapshotView::Activate() {
  // lvcreate activated it (a thin one with -K) and made its node /dev/VG/LV: nothing to ask.
  last_check_ = std::chrono::steady_clock::now();
  next_interval_ = options_.check_interval;
  struct stat st;
  device_path_ = "/dev/" + snapshot_;
  if (::stat(device_path_.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) return Status::Ok();
  // Otherwise: a thin snapshot still inactive (an LVM that did not activate it on creation),
  // or a node that lags behind (no udev). A thin snapshot is created with the activation-skip
  // flag; -K activates it anyway.
  if (thin_) {
    HOTSNAP_RETURN_IF_ERROR(RunLvmChange(options_.lvm, {"lvchange", "-ay", "-K", snapshot_},
                                         "activating LVM thin snapshot " + snapshot_));
  }
  auto lvs = ListLvs(options_.lvm, {snapshot_});
  if (!lvs.ok()) return lvs.status();
  if (lvs->empty() || lvs->front().lv_path.empty()) {
    return Status(Code::kSource, "LVM snapshot " + snapshot_ + " was created but lvs does not show its device");
  }
  device_path_ = lvs->front().lv_path;
  if (::stat(device_path_.c_str(), &st) != 0) {
    // Without udev the node may lag behind; ask LVM to (re)create it. Whether the node now
    // exists is what counts; if it does not, vgmknodes' own failure says why.
    auto mknodes = options_.lvm->Run({"vgmknodes", origin_.vg_name}, kLvmReportTimeout);
    if (::stat(device_path_.c_str(), &st) != 0) {
      int err = errno;
      std::string why;
      if (!mknodes.ok()) {
        why = " (vgmknodes: " + mknodes.status().message() + ")";
      } else if (mknodes->exit_code != 0) {
        why = " (vgmknodes exited with " + std::to_string(mknodes->exit_code) + ": " +
              mknodes->err + ")";
      }
      return Status::FromErrno(Code::kSource, err, "LVM snapshot device " + device_path_ + why);
    }
  }
  return Status::Ok();
}

Status LvmSnapshotView::Check() {
  auto now = std::chrono::steady_clock::now();
  if (!last_status_.ok() || now - last_check_ < next_interval_) return last_status_;
  return CheckNow();
}

Status LvmSnapshotView::CheckNow() {
  if (released_) return Status::Ok();
  auto started = std::chrono::steady_clock::now();
  // Thin: the pool's fill from device-mapper (one dmsetup; an lvs costs several times more).
  // Classic: the snapshot's COW fill from lvs. Either costs real CPU (a lot under
  // emulation): keep it under ~20 % of one core by polling no more often than 4 times its own
  // duration.
  auto note_duration = [this, started] {
    last_check_ = std::chrono::steady_clock::now();
    next_interval_ = std::max<std::chrono::steady_clock::duration>(options_.check_interval,
                                                                   4 * (last_check_ - started));
  };
  if (thin_) {
    last_status_ = CheckPool();
    note_duration();
    return last_status_;
  }
  auto lvs = ListLvs(options_.lvm, {snapshot_});
  note_duration();
  if (!lvs.ok()) return last_status_ = lvs.status().Wrap("watching LVM snapshot " + snapshot_);
  if (lvs->empty()) {
    return last_status_ = Status(Code::kSource, "LVM snapshot " + snapshot_ + " disappeared during the backup");
  }
  last_status_ = CheckClassic(lvs->front());
  return last_status_;
}

Status LvmSnapshotView::CheckClassic(const LvRecord& snap) {
  double used = snap.data_percent.value_or(0);
  if (snap.is_invalid_snapshot() || used >= 100.0) {
    return Status(Code::kSource,
                  "LVM snapshot " + snapshot_ + " ran out of copy-on-write space and was invalidated "
                  "by the kernel: its " + FormatMiB(cow_bytes_) + " area filled up (100%; the last "
                  "fill level seen before was " + Percent(max_percent_seen_) + "). " +
                  origin_.full_name() + " changed by more than that while it was being read. "
                  "Nothing was published. Next time give the snapshot room for all writes during "
                  "the backup, e.g. --cow-size " + std::to_string(std::max<uint64_t>(cow_bytes_ * 4, kMinCowBytes) / kMiB) +
                  "M, or run it at a quieter time");
  }
  max_percent_seen_ = std::max(max_percent_seen_, used);
  if (used >= 80.0 && !warned_) {
    warned_ = true;
    Notice("LVM snapshot " + snapshot_ + " copy-on-write area is " + Percent(used) + " full");
  }
  return Status::Ok();
}

Status LvmSnapshotView::CheckPool() {
  struct stat st;
  if (::stat(device_path_.c_str(), &st) != 0) {
    return Status(Code::kSource, "LVM snapshot " + snapshot_ + " disappeared during the backup (" +
                                     device_path_ + " is gone)");
  }
  ThinPool pool;
  pool.vg_name = origin_.vg_name;
  pool.pool_lv = origin_.pool_lv;
  auto use = ThinPoolUsage(pool);
  if (!use.ok()) return use.status().Wrap("watching thin pool of " + origin_.full_name());
  LvRecord row;
  row.vg_name = pool.vg_name;
  row.lv_name = pool.pool_lv;
  row.data_percent = use->data_percent;
  row.metadata_percent = use->metadata_percent;
  return CheckPoolRoom(row, options_.thin_pool_abort_percent, "to go on reading (the snapshot is "
                       "removed to give its space back)");
}

Status LvmSnapshotView::Release() {
  if (released_) return Status::Ok();
  released_ = true;
  Status removed = RemoveLv(options_.lvm, snapshot_);
  if (removed.ok() && leased_) removed = RemoveLease(options_.lease_dir, run_id_);
  return removed;
}

Status LvmSnapshotView::Keep() {
  if (!options_.keep_snapshot || !thin_) {
    return Status(Code::kInternal, "Keep() on a view opened without keep_snapshot (lvm-thin)");
  }
  if (released_) return Status(Code::kInternal, "Keep() after Release()");
  released_ = true;
  const std::string lv = snapshot_.substr(snapshot_.find('/') + 1);
  auto kept = KeepThinSnapshot(options_.lvm, options_.lease_dir, origin_.vg_name, lv, origin_.lv_name,
                               run_id_, created_unix_, thin_report_ ? &*thin_report_ : nullptr);
  if (!kept.ok()) {
    // A failure before KeepThinSnapshot began leaves the snapshot under the run's name (after
    // that it has removed it already, and this finds nothing to remove).
    Status removed = RemoveLv(options_.lvm, snapshot_);
    if (removed.ok() && leased_) removed = RemoveLease(options_.lease_dir, run_id_);
    return kept.status().WithCleanup(removed);
  }
  // The run's snapshot is gone under its own name: the lease has done its job.
  Status unleased = leased_ ? RemoveLease(options_.lease_dir, run_id_) : Status::Ok();
  kept_ = std::move(kept.value());
  return unleased;
}

LvmSnapshotView::~LvmSnapshotView() {
  if (released_) return;
  Status s = Release();
  if (!s.ok()) Error(s.message());
}

}  // namespace hotsnap
