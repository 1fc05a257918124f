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
  switch (requested) {
    case SnapshotMode::kAuto:
      // An LVM snapshot for a logical volume, write tracking for a filesystem mounted
      // read-write on a plain device, and a plain read for anything idle.
      if (auto lv = LogicalVolumeOf(subject.path)) {
        mode = MakeLvmMode(options, lv->is_thin() ? SnapshotMode::kLvmThin : SnapshotMode::kLvm,
                           mount);
      } else if (mount != nullptr) {
        mode = MakeTrackedMode(options, *mount);
      } else {
        mode = MakePlainMode(options);
      }
      break;
    case SnapshotMode::kNone:
      mode = MakePlainMode(options);
      break;
    case SnapshotMode::kFreeze:
      if (mount == nullptr) {
        Notice(subject.path + " is not mounted read-write; nothing to freeze, reading it as it is");
        mode = MakePlainMode(options);
      } else {
        mode = MakeFreezeMode(options, *mount);
      }
      break;
    case SnapshotMode::kTracked:
      if (mount == nullptr) {
        return Status(Code::kUsage, subject.path + " is not mounted read-write: nothing is "
                                    "writing to it, so --snapshot none gives a consistent image");
      }
      mode = MakeTrackedMode(options, *mount);
      break;
    case SnapshotMode::kLvm:
    case SnapshotMode::kLvmThin:
      mode = MakeLvmMode(options, requested, mount);
      break;
  }
  HOTSNAP_RETURN_IF_ERROR(mode->Plan(subject));
  return mode;
}

}  // namespace hotsnap
