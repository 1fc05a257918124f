// Is this device (or file) in use, and how?
//
// The safety checks around reading and writing block devices: backup refuses a source that is
// mounted read-write (with `--snapshot none` it would read a changing filesystem), and restore
// refuses a target that is mounted, an active swap area, or held by another block device
// (device-mapper, md), then opens it with O_EXCL so the kernel enforces the same at open time.
//
// Mounts are matched by device number (major:minor), not by name, so /dev/disk/by-* aliases,
// symlinks and other device nodes for the same device all work. Only the mount namespace of
// the calling process is visible; O_EXCL covers mounts in other namespaces.
#ifndef HOTSNAP_SNAPSHOT_DEVICE_USE_H_
#define HOTSNAP_SNAPSHOT_DEVICE_USE_H_

#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "snapshot/proc_tables.h"  // ParseMountInfo, ParseSwaps

namespace hotsnap {

struct MountUse {
  std::string device;       // kernel node of the mounted device, e.g. /dev/loop3p1
  std::string mount_point;  // e.g. /mnt/data
  std::string fs_type;      // e.g. ext4
  bool read_write = false;  // per-mount option "rw" and a writable superblock
};

struct DeviceUse {
  // Mounts of the device itself, any of its partitions, or (for a regular file) of a loop
  // device backed by it and that loop device's partitions.
  std::vector<MountUse> mounts;
  // Active swap areas on the same devices (the /proc/swaps file name), or the file itself.
  std::vector<std::string> swaps;
  // /sys/class/block/<dev>/holders entries of the same devices, e.g. "dm-0".
  std::vector<std::string> holders;

  bool mounted_read_write() const;
  bool in_use() const;  // any mount, swap or holder
  // One line, e.g. "mounted read-write at /mnt/data (/dev/loop3p1, ext4)"; several uses are
  // joined with "; ". "not in use" when there is none.
  std::string Describe() const;
};

// `path` is a block device or a regular file (any symlink to one is followed). For a regular
// file, the loop devices whose backing file is that file (by inode) are inspected. Errors
// carry `failure_code` (kSource for a backup source, kTarget for a restore target) and name
// `path`. Reads /proc/self/mountinfo, /proc/swaps and /sys; needs no privilege except to
// open loop devices when the kernel has no backing_inode attribute in sysfs.
Result<DeviceUse> InspectDeviceUse(const std::string& path, Code failure_code = Code::kSource);

// Opens a restore target for writing. For a block device: refuses (kTarget, naming the
// device and why: "mounted at X", "active swap", "held by dm-0") when InspectDeviceUse finds
// it in use, then opens it O_WRONLY | O_EXCL | O_CLOEXEC | `extra_flags` (e.g. O_DIRECT), so
// the kernel refuses with EBUSY a device mounted or claimed where /proc cannot see it; that
// refusal is reported as such. `extra_flags` may carry O_RDWR instead of the implied O_WRONLY.
// For an existing regular file the same in-use check is done (a loop device over it) and it
// is opened without O_EXCL, which means nothing for regular files without O_CREAT.
// The returned descriptor is owned by the caller; for a block device it holds the exclusive
// claim until closed.
Result<UniqueFd> OpenExclusiveForWrite(const std::string& path, int extra_flags);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_DEVICE_USE_H_
