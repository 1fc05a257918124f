#include "agent/copy_mode.h"

#include "base/log.h"
#include "snapshot/lvm_control.h"

namespace hotsnap {

const MountUse* BackupSubject::ReadWriteMount() const {
  for (const MountUse& m : use.mounts) {
    if (m.read_write) return &m;
  }
  return nullptr;
}

namespace {

// The logical volume behind `path`, if LVM is here and it is one.
std::optional<LvRecord> LogicalVolumeOf(const std::string& path) {
  if (!LvmAvailable()) return std::nullopt;
  auto lv = FindLogicalVolume(RealLvmControl(), path);
  if (!lv.ok() || !lv->has_value()) return std::nullopt;
  return lv->value();
}

}  // namespace

Result<std::unique_ptr<CopyMode>> ChooseCopyMode(SnapshotMode requested,
                                                 const ModeOptions& options,
                                                 const BackupSubject& subject) {
  const MountUse* mount = subject.ReadWriteMount();
  std::unique_ptr<CopyMode> mode;
  // The group of every read-write mount of the source and its partitions.
  auto group = [&](bool check_holders) {
    return PlanConsistencyGroup(subject, options.allow_crash_consistent, check_holders);
  };
  std::optional<LvRecord> lv;
  if (requested == SnapshotMode::kAuto) lv = LogicalVolumeOf(subject.path);
  if (requested == SnapshotMode::kAuto && lv) {
    // An LVM snapshot for a logical volume.
    mode = MakeLvmMode(options, lv->is_thin() ? SnapshotMode::kLvmThin : SnapshotMode::kLvm,
                       mount);
  } else if (requested == SnapshotMode::kLvm || requested == SnapshotMode::kLvmThin) {
    mode = MakeLvmMode(options, requested, mount);
  } else if (requested == SnapshotMode::kNone) {
    auto g = group(false);
    if (!g.ok()) return g.status();
    mode = MakePlainMode(options, std::move(g->crash_consistent));
  } else {
    auto g = group(true);
    if (!g.ok()) return g.status();
    if (g->members.empty() && requested == SnapshotMode::kTracked) {
      return Status(Code::kUsage, subject.path + " is not mounted read-write: nothing is "
                                  "writing to it, so --snapshot none gives a consistent image");
    }
    if (g->members.empty()) {
      // kAuto or kFreeze with nothing to freeze: a plain read of an idle device.
      if (requested == SnapshotMode::kFreeze) {
        Notice(subject.path + " is not mounted read-write; nothing to freeze, reading it as it is");
      }
      mode = MakePlainMode(options, std::move(g->crash_consistent));
    } else if (requested == SnapshotMode::kFreeze) {
      mode = MakeFreezeMode(options, std::move(g.value()));
    } else {
      // kAuto or kTracked: write tracking for a busy source.
      mode = MakeTrackedMode(options, std::move(g.value()));
    }
  }
  HOTSNAP_RETURN_IF_ERROR(mode->Plan(subject));
  return mode;
}

}  // namespace hotsnap
