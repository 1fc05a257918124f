#include "agent/snapshot_mode.h"

namespace hotsnap {

const char* SnapshotModeName(SnapshotMode mode) {
  switch (mode) {
    case SnapshotMode::kAuto: return "auto";
    case SnapshotMode::kNone: return "none";
    case SnapshotMode::kFreeze: return "freeze";
    case SnapshotMode::kTracked: return "tracked";
    case SnapshotMode::kLvm: return "lvm";
    case SnapshotMode::kLvmThin: return "lvm-thin";
  }
  return "?";
}

Result<SnapshotMode> ParseSnapshotMode(const std::string& name) {
  for (SnapshotMode m : {SnapshotMode::kAuto, SnapshotMode::kNone, SnapshotMode::kFreeze,
                         SnapshotMode::kTracked, SnapshotMode::kLvm, SnapshotMode::kLvmThin}) {
    if (name == SnapshotModeName(m)) return m;
  }
  return Status(Code::kUsage, "--snapshot " + name +
                                  ": unknown mode (modes: auto, none, freeze, tracked, lvm, "
                                  "lvm-thin)");
}

}  // namespace hotsnap
