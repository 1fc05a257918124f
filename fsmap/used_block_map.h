// UsedBlockMap: which byte ranges of a block device (or image file) the filesystem on it
// uses, so the backup reader reads only those and writes zeros for the rest. Blocks the
// filesystem counts as free (for example those of deleted files) are never in the map, so
// their old contents never reach an image.
//
// What counts as used (all offsets and lengths in this file are in bytes):
//  - ext2/3/4: every block set in the block bitmap, which holds the superblocks, group
//    descriptors, reserved GDT blocks, bitmaps, inode tables, the journal and all file and
//    directory data; plus the blocks before s_first_data_block (block 0 on a 1 KiB-block
//    filesystem: the boot sector). Groups flagged BLOCK_UNINIT get their metadata marked
//    explicitly. Exception: the blocks of a group's inode table that hold only inodes past
//    bg_itable_unused (never read by the kernel or e2fsck; zero on a restored image) are
//    free, when the group descriptors carry valid checksums (see ext_used_blocks.cc). So
//    used_bytes() can be below what dumpe2fs or df count as used, by those blocks.
//  - xfs: every block of the data device that is neither in an allocation group's
//    by-block-number free-space B+tree (bnobt) nor on its AG free list (AGFL). The AG
//    headers, all btrees, inodes, the internal log and file data are therefore used.
//  - Bytes past the end of the filesystem (a device larger than the filesystem on it) are
//    used: they belong to no filesystem, so nothing says they are free, and they are kept.
//  - all-blocks map (no recognised filesystem): everything is used.
//
// Representation and memory bound. The map is exact at filesystem-block granularity: a
// block is either used or free, never rounded to a coarser unit. It is held as whichever is
// smaller of
//  - a sorted, coalesced list of used extents (16 bytes per extent), or
//  - a bitmap with one bit per filesystem block over the whole device
//    (device_bytes / block_bytes / 8 bytes).
// The builder keeps the extent list while it is under half the bitmap's size (or under
// 1 MiB) and converts to the bitmap otherwise, so the finished map never exceeds
// max(1 MiB, the bitmap size): for a 1 TiB device with 4 KiB blocks that is 32 MiB even in
// the worst case of alternating used and free blocks; building peaks at 1.5 times that.
//
// Thread-safety: immutable after construction; const methods may be called concurrently.
#ifndef HOTSNAP_FSMAP_USED_BLOCK_MAP_H_
#define HOTSNAP_FSMAP_USED_BLOCK_MAP_H_

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

// A byte range of the device.
struct ByteExtent {
  uint64_t offset_bytes = 0;
  uint64_t length_bytes = 0;
  uint64_t end_bytes() const { return offset_bytes + length_bytes; }
  bool operator==(const ByteExtent&) const = default;
};
// Prints "[offset, +length)" in bytes; for logs and test failure messages.
std::ostream& operator<<(std::ostream& os, const ByteExtent& extent);

class UsedBlockMapBuilder;
struct DiskLayout;  // fsmap/disk_map.h

// Movable and copyable value; immutable once built.
class UsedBlockMap {
 public:
  // The fallback: every byte of a device of `device_bytes` bytes is used; fs_type() is "".
  static UsedBlockMap AllBlocks(uint64_t device_bytes);

  // "ext2", "ext3", "ext4", "xfs", or "" for an all-blocks map.
  const std::string& fs_type() const { return fs_type_; }
  bool all_blocks() const { return all_blocks_; }
  uint64_t device_bytes() const { return device_bytes_; }
  uint64_t used_bytes() const { return used_bytes_; }
  // Granularity of the map in bytes (the filesystem block size; 512 for all-blocks maps).
  uint32_t block_bytes() const { return block_bytes_; }

  // Appends to *out the used extents intersecting [offset_bytes, offset_bytes+length_bytes),
  // clipped to that window and to the device, in ascending order, adjacent ranges coalesced.
  // Existing elements of *out are left alone. Cost: O(log extents + extents in the window)
  // for the extent list, O(window / block_bytes / 64) for the bitmap.
  void UsedIn(uint64_t offset_bytes, uint64_t length_bytes, std::vector<ByteExtent>* out) const;

  // True if every byte of [offset_bytes, offset_bytes+length_bytes) is used.
  bool AllUsed(uint64_t offset_bytes, uint64_t length_bytes) const;
  // True if no byte of [offset_bytes, offset_bytes+length_bytes) is used.
  bool NoneUsed(uint64_t offset_bytes, uint64_t length_bytes) const;

  // The map of a whole partitioned disk (ComputeDiskMap) keeps the table and what each
  // partition's own map found; nullptr for the map of one filesystem or an all-blocks map.
  const DiskLayout* disk_layout() const { return disk_layout_.get(); }

  // Introspection for tests and diagnostics.
  bool uses_bitmap() const { return uses_bitmap_; }
  size_t memory_bytes() const;

 private:
  friend class UsedBlockMapBuilder;
  friend UsedBlockMap AttachDiskLayout(UsedBlockMap map, std::shared_ptr<const DiskLayout> disk);
  UsedBlockMap() = default;

  void BitmapUsedIn(uint64_t offset_bytes, uint64_t end_bytes,
                    std::vector<ByteExtent>* out) const;

  std::string fs_type_;
  uint64_t device_bytes_ = 0;
  uint64_t used_bytes_ = 0;
  uint32_t block_bytes_ = 512;
  bool all_blocks_ = false;
  bool uses_bitmap_ = false;
  std::vector<ByteExtent> extents_;  // when !uses_bitmap_: sorted, coalesced, within device
  std::vector<uint64_t> bitmap_;     // when uses_bitmap_: bit b = block b used
  std::shared_ptr<const DiskLayout> disk_layout_;  // shared: the layout never changes
};

// Returns `map` with its disk_layout() set to `disk` (for ComputeDiskMap).
UsedBlockMap AttachDiskLayout(UsedBlockMap map, std::shared_ptr<const DiskLayout> disk);

// Detects the filesystem on the open descriptor `fd` (a block device or an image file of
// `device_bytes` bytes) with libblkid and builds its used-block map. The descriptor is only
// read (pread); its file offset is not used. For ext2/3/4 the device is reopened read-only
// through /proc/self/fd/<fd>, because libext2fs opens by name. Nothing is ever written.
//
// When there is no filesystem this build understands (none, an unknown type, an ambiguous
// probe), or one whose on-disk free-space records cannot be trusted (ext3/4 journal needing
// recovery, errors recorded, XFS marked as needing repair), returns AllBlocks and sets
// *notice to a one-line reason naming `device_name`. Otherwise *notice is left empty.
// A recognised filesystem whose metadata is corrupt (bad magic, counts or pointers out of
// range) is an error with code kSource naming the structure (e.g. the XFS AG and block).
//
// The filesystem must not change while this runs: the caller has it unmounted, mounted
// read-only, or frozen. `device_name` is used only in messages.
Result<UsedBlockMap> ComputeUsedBlockMap(int fd, const std::string& device_name,
                                         uint64_t device_bytes, std::string* notice);

// The same for a filesystem that starts at byte `base_bytes` of `fd` and spans `device_bytes`
// (a partition of a whole disk read through the disk's descriptor). The map is in bytes from
// `base_bytes`; nothing outside [base_bytes, base_bytes + device_bytes) is read.
Result<UsedBlockMap> ComputeUsedBlockMapAt(int fd, const std::string& device_name,
                                           uint64_t base_bytes, uint64_t device_bytes,
                                           std::string* notice);

}  // namespace hotsnap

#endif  // HOTSNAP_FSMAP_USED_BLOCK_MAP_H_
