// Whether the members of a consistency group may be frozen at once (each FIFREEZE issued
// from its own thread) instead of one after another.
//
// Freezing a filesystem writes back its dirty data and journal. If it lives on a loop
// device whose backing file is on another member (directly, or through partitions,
// device-mapper or md devices and further loop devices), that writeback needs the other
// member writable: the two must be frozen in dependency order, the stacked one first. Members
// that rest on nothing of each other (the partitions of one disk, two disks) can be frozen
// together, and the group's freeze then lasts as long as its slowest member's FIFREEZE
// rather than the sum of all of them.
//
// Reads /sys and stat()s the backing files; changes nothing. When in doubt (a member whose
// device sysfs does not know, e.g. a FUSE or btrfs anonymous device, or a backing file that
// cannot be inspected) the answer is false.
#ifndef HOTSNAP_SNAPSHOT_FREEZE_STACKING_H_
#define HOTSNAP_SNAPSHOT_FREEZE_STACKING_H_

#include <string>
#include <vector>

namespace hotsnap {

bool MayFreezeAtOnce(const std::vector<std::string>& mount_points);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_FREEZE_STACKING_H_
