// Test helpers for devices holding partition tables: the table is written by sfdisk, and the
// filesystems inside partitions are made by the real mkfs tools on a scratch file of the
// partition's size, then copied to the partition's byte range. No partition device nodes are
// needed (plain loop devices have none), so nothing depends on udev or partition scanning.
#ifndef HOTSNAP_TESTS_PARTITIONED_DISK_H_
#define HOTSNAP_TESTS_PARTITIONED_DISK_H_

#include <cstdint>
#include <string>

#include "tests/test_util.h"

namespace hotsnap::testing {

// Writes the partition table described by the sfdisk `script` (e.g. "label: dos\n
// start=2048,size=65536,type=83\n", sectors of 512 bytes) onto `device`.
inline void WritePartitionTable(const std::string& device, const std::string& script) {
  // sfdisk's re-read of the table fails on a loop device without partition scanning and says
  // so on stderr; the table is written all the same (checked by the tests with blkid).
  RunOk("printf %s " + Quote(script) + " | sfdisk -q " + Quote(device) + " 2>/dev/null");
}

// Runs `mkfs` (a command line that takes the file as its last argument, e.g. "mkfs.ext4 -q
// -F -U <uuid>") on a scratch file of `bytes` in `dir`, then copies it to bytes
// [offset, offset + bytes) of `device`.
inline void MakeFilesystemAt(const std::string& dir, const std::string& device, uint64_t offset,
                             uint64_t bytes, const std::string& mkfs) {
  std::string scratch = dir + "/partition-scratch.img";
  RunOk("rm -f " + Quote(scratch) + " && truncate -s " + std::to_string(bytes) + " " +
        Quote(scratch));
  RunOk(mkfs + " " + Quote(scratch) + " >/dev/null");
  RunOk("dd if=" + Quote(scratch) + " of=" + Quote(device) + " bs=1M oflag=seek_bytes seek=" +
        std::to_string(offset) + " conv=notrunc,fsync status=none");
  RunOk("rm -f " + Quote(scratch));
}

// Leaves `device` with two signatures libblkid cannot rank: an ext4 filesystem over the whole
// device, and a FAT boot sector (from mkfs.vfat) over its first 512 bytes, which ext4 leaves
// unused. `blkid -p` calls the result ambivalent.
inline void MakeAmbiguousSignatures(const std::string& dir, const std::string& device) {
  RunOk("mkfs.ext4 -q -F " + Quote(device));
  std::string fat = dir + "/fat-scratch.img";
  RunOk("rm -f " + Quote(fat) + " && truncate -s 8M " + Quote(fat) + " && mkfs.vfat " + Quote(fat) +
        " >/dev/null");
  RunOk("dd if=" + Quote(fat) + " of=" + Quote(device) +
        " bs=512 count=1 conv=notrunc,fsync status=none");
  RunOk("rm -f " + Quote(fat));
}

}  // namespace hotsnap::testing

#endif  // HOTSNAP_TESTS_PARTITIONED_DISK_H_
