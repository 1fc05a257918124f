// The current mount table (/proc/self/mountinfo), parsed by snapshot/proc_tables.h.
#ifndef HOTSNAP_MOUNT_MOUNT_TABLE_H_
#define HOTSNAP_MOUNT_MOUNT_TABLE_H_

#include <vector>

#include "snapshot/proc_tables.h"

namespace hotsnap {

// Empty if /proc/self/mountinfo cannot be read.
std::vector<MountInfoEntry> CurrentMounts();

}  // namespace hotsnap

#endif  // HOTSNAP_MOUNT_MOUNT_TABLE_H_
