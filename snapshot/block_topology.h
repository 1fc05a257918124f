// What sysfs says about block devices: the kernel name of a device number, its partitions,
// its holders, and which loop devices are backed by a given file.
//
// Everything here reads /sys (and, for loop devices without inode attributes in sysfs, one
// LOOP_GET_STATUS64 ioctl on a read-only descriptor). Nothing is modified.
#ifndef HOTSNAP_SNAPSHOT_BLOCK_TOPOLOGY_H_
#define HOTSNAP_SNAPSHOT_BLOCK_TOPOLOGY_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

// A block device as the kernel names it.
struct BlockDevice {
  dev_t dev = 0;        // major:minor
  std::string name;     // kernel name, e.g. "loop3p1"; its node is /dev/<name>
  std::string sys_dir;  // canonical sysfs directory, e.g. /sys/devices/virtual/block/loop3
};

// Identity of a regular file: what a loop device's backing file is compared by.
struct FileIdentity {
  dev_t dev = 0;  // st_dev of the filesystem holding the file
  ino_t ino = 0;
  std::string canonical_path;  // realpath(), used only when the kernel gives no inode
};

// Looks up /sys/dev/block/<major>:<minor>. Fails (with `failure_code`) when sysfs does not
// know the device, e.g. a stale device node.
Result<BlockDevice> FindBlockDevice(dev_t dev, Code failure_code);

// The partitions of a whole disk (empty for a partition or an unpartitioned disk).
std::vector<BlockDevice> ListPartitions(const BlockDevice& disk);

// A partition as the kernel sees it, from <sys_dir>/partition, start and size.
struct KernelPartition {
  BlockDevice device;        // e.g. loop3p2; its node is /dev/<name>
  int number = 0;            // the "partition" attribute
  uint64_t start_bytes = 0;  // from the start of the disk (sysfs counts 512-byte sectors)
  uint64_t size_bytes = 0;
};

// ListPartitions with each partition's number and byte range; a partition whose attributes
// cannot be read is left out.
std::vector<KernelPartition> ListKernelPartitions(const BlockDevice& disk);

// Entries of <sys_dir>/holders, e.g. {"dm-0"}.
std::vector<std::string> ListHolders(const BlockDevice& device);

// Attached loop devices whose backing file is `file`. Compared by device and inode (from
// sysfs loop/backing_inode + loop/backing_dev when the kernel has them, else from
// LOOP_GET_STATUS64); only when neither is available, by path, and then a backing file
// shown as "... (deleted)" never matches.
std::vector<BlockDevice> FindLoopDevicesBackedBy(const FileIdentity& file);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_BLOCK_TOPOLOGY_H_
