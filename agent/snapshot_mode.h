// SnapshotMode: how a backup gets a consistent view of its source (--snapshot).
#ifndef HOTSNAP_AGENT_SNAPSHOT_MODE_H_
#define HOTSNAP_AGENT_SNAPSHOT_MODE_H_

#include <string>

#include "base/status.h"

namespace hotsnap {

enum class SnapshotMode {
  kAuto,     // resolved by the plan: lvm/lvm-thin, tracked or none
  kNone,     // read the device as it is
  kFreeze,   // FIFREEZE for the whole copy
  kTracked,  // copy while tracking writes, brief freezes
  kLvm,      // classic LVM snapshot
  kLvmThin,  // thin LVM snapshot
};

// "auto", "none", "freeze", "tracked", "lvm", "lvm-thin": the --snapshot spelling, also what
// the image metadata and the report record.
const char* SnapshotModeName(SnapshotMode mode);

// Parses the --snapshot spelling; kUsage naming the value and the choices otherwise.
Result<SnapshotMode> ParseSnapshotMode(const std::string& name);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_SNAPSHOT_MODE_H_
