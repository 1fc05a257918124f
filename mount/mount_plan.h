// MountPlan: which filesystems `hotsnap mount IMAGE DIR` mounts, and where — decided from the
// image's metadata alone, before anything is attached or mounted (pure; no I/O).
//
//   - The image of one filesystem: that filesystem, at DIR.
//   - A whole-disk image (its metadata has a partition table) with --partition N: partition N
//     alone, at DIR, through a loop device showing only its byte range.
//   - A whole-disk image without --partition: every partition holding a filesystem hotsnap
//     can mount read-only (ReadOnlyMountFor: ext2/3/4, xfs, vfat), each at DIR/pN (N as
//     `hotsnap info` numbers it), in table order. The others (swap, LUKS, LVM PVs, no
//     filesystem) are listed in `skipped` with the reason; extended dos partitions (containers
//     of the logical ones) are left out silently. A disk with nothing mountable is refused.
//
// Offsets and sizes are in BYTES of the image's device.
#ifndef HOTSNAP_MOUNT_MOUNT_PLAN_H_
#define HOTSNAP_MOUNT_MOUNT_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/image_format.h"
#include "mount/fs_mount.h"

namespace hotsnap {

struct PlannedMount {
  int partition = 0;          // as `hotsnap info` numbers it; 0 for the image's own filesystem
  std::string fs_type;        // libblkid's name, from the metadata: "ext4", "xfs", "vfat"
  ReadOnlyMount how;          // ReadOnlyMountFor(fs_type)
  uint64_t offset_bytes = 0;  // the window of the device the loop device shows (0 and 0:
  uint64_t size_bytes = 0;    // the whole device)
  std::string mount_point;    // DIR, or DIR/pN
  // DIR/pN: made if missing (and then removed again at unmount); DIR itself must exist.
  bool own_directory = false;

  // "partition 3 (xfs at byte 138412032 of the disk)", or "the ext4 filesystem" for an image
  // of one filesystem: how errors and notices name it.
  std::string Describe() const;
};

// A partition of a whole-disk image that is not mounted, and why.
struct SkippedPartition {
  int partition = 0;
  std::string notice;  // "partition 4 (swap at byte N of the disk) is not mounted: <why>"
};

struct MountPlan {
  std::vector<PlannedMount> mounts;       // at least one
  std::vector<SkippedPartition> skipped;  // in table order
  bool whole_disk() const { return !mounts.empty() && mounts.front().own_directory; }
};

// The plan for mounting `image` (named in messages) with metadata `meta` at the canonical
// directory `dir`; `partition` is --partition N, or 0. kUsage for a --partition that does
// not exist or is not a disk image; kUnsupported for a filesystem (or, whole, a disk) with
// nothing mountable.
Result<MountPlan> PlanMounts(const ImageMetadata& meta, const std::string& image, int partition,
                             const std::string& dir);

// "p" + N: the directory a whole-disk mount puts partition N under.
std::string PartitionDirName(int partition);

}  // namespace hotsnap

#endif  // HOTSNAP_MOUNT_MOUNT_PLAN_H_
