// The consistency group of a backup: every filesystem mounted read-write from the source —
// the source itself or any of its partitions — is frozen together, so the whole disk is
// captured at one moment (freeze mode: for the whole copy; tracked mode: at each of its brief
// freezes, with writes tracked on the whole disk).
//
// A member that cannot join refuses the backup, naming it, unless the user opts into a
// crash-consistent copy of it (--allow-crash-consistent PART, PART its device or its mount
// point): a filesystem whose driver has no FIFREEZE (vfat, exfat, ntfs3, ...), or a device
// stacked on the source (device-mapper, md: an LV of a PV on this disk), which is written
// through another device that no freeze of ours covers. Planned without side effects, so the
// dry run refuses exactly what the run refuses.
#ifndef HOTSNAP_AGENT_CONSISTENCY_GROUP_H_
#define HOTSNAP_AGENT_CONSISTENCY_GROUP_H_

#include <string>
#include <vector>

#include "base/status.h"
#include "snapshot/device_use.h"

namespace hotsnap {

struct BackupSubject;

struct ConsistencyGroup {
  std::vector<MountUse> members;  // frozen together, in freeze order (MountPointDepth)
  // Left out on request, for the report: "DEVICE at MOUNTPOINT", or a holder's node and its
  // device-mapper name, "/dev/dm-0 (/dev/mapper/vg-lv)".
  std::vector<std::string> crash_consistent;

  std::vector<std::string> mount_points() const;
  // "/mnt/a (ext4 on /dev/sda2), /mnt/b (xfs on /dev/sda3)".
  std::string Describe() const;
};

// The group of `subject`'s read-write mounts. `allow_crash_consistent` are the user's PARTs;
// one that matches no read-write member or holder is a usage error (a typo must not silently
// leave a filesystem unfrozen). `check_holders`: refuse devices stacked on the source (false
// for the lvm modes, whose source is the LV and whose snapshot is a holder by design).
// Whether the user's PART names one of `use`'s read-write mounted filesystems (by device or
// mount point) or one of its holders.
bool PartNamesMemberOf(const std::string& part, const DeviceUse& use);

Result<ConsistencyGroup> PlanConsistencyGroup(
    const BackupSubject& subject, const std::vector<std::string>& allow_crash_consistent,
    bool check_holders);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_CONSISTENCY_GROUP_H_
