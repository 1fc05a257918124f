#include "fsmap/ext_used_blocks.h"

#include <ext2fs/ext2_fs.h>
#include <ext2fs/ext2fs.h>

#include <cerrno>
#include <memory>
#include <mutex>

#include "fsmap/ext_ranged_io.h"
#include "fsmap/used_block_map_builder.h"

namespace hotsnap {
namespace {

// Frees the in-memory filesystem handle. ext2fs_free, unlike ext2fs_close, never flushes
// anything to disk; the handle was opened read-only anyway.
struct ExtFsDeleter {
  void operator()(struct struct_ext2_filsys* fs) const { ext2fs_free(fs); }
};
using ExtFsPtr = std::unique_ptr<struct struct_ext2_filsys, ExtFsDeleter>;

std::string ExtError(errcode_t err) {
  static std::once_flag once;
  std::call_once(once, [] { initialize_ext2_error_table(); });
  return error_message(err);
}

Status ExtStatus(const std::string& device_name, const std::string& what, errcode_t err) {
  return Status(Code::kSource, device_name + ": " + what + ": " + ExtError(err),
                err > 0 && err < 4096 ? static_cast<int>(err) : 0);
}

// libext2fs leaves a BLOCK_UNINIT group's bitmap zero on disk and, since e2fsprogs 1.42,
// marks that group's superblock backup, descriptors and own metadata itself after reading
// (mark_uninit_bg_group_blocks in lib/ext2fs/rw_bitmaps.c). Marking them again here is
// idempotent and keeps the map right whatever library version is linked: those blocks are
// used even though the group's bitmap block was never written.
void MarkUninitGroupMetadata(ext2_filsys fs) {
  if (!ext2fs_has_group_desc_csum(fs)) return;
  blk64_t blocks = ext2fs_blocks_count(fs->super);
  for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
    if (!ext2fs_bg_flags_test(fs, g, EXT2_BG_BLOCK_UNINIT)) continue;
    ext2fs_reserve_super_and_bgd(fs, g, fs->block_map);
    blk64_t table = ext2fs_inode_table_loc(fs, g);
    if (table != 0 && table + fs->inode_blocks_per_group <= blocks) {
      ext2fs_mark_block_bitmap_range2(fs->block_map, table, fs->inode_blocks_per_group);
    }
    for (blk64_t b : {ext2fs_block_bitmap_loc(fs, g), ext2fs_inode_bitmap_loc(fs, g)}) {
      if (b != 0 && b < blocks) ext2fs_mark_block_bitmap2(fs->block_map, b);
    }
  }
}

// The unused tail of each group's inode table holds no inode anyone reads, so it is left
// out of the map and restores as zeros. bg_itable_unused counts the inodes at the end of
// a group's table that are not in use; the kernel and e2fsprogs keep it whenever the group
// descriptors carry checksums (uninit_bg / metadata_csum), and nothing reads those slots:
//  - the kernel zeroes an inode's whole on-disk slot when it allocates it (EXT4_STATE_NEW
//    in ext4_do_update_inode) and lowers bg_itable_unused first, so old bytes there are
//    never taken for an inode;
//  - its lazy-init thread zeroes the tail of every group without ITABLE_ZEROED; groups
//    with ITABLE_ZEROED are trusted to be zero, which the restored image is;
//  - e2fsck's and libext2fs' inode scans skip the tail (EXT2_SF_DO_LAZY).
// On a fresh large filesystem these tails are nearly all of the inode tables (16 GiB of
// 1 TiB with the default inode ratio), so reading them would cost more than the data.
//
// Only done where every input can be trusted: descriptor checksums on and valid for the
// group, descriptors that pass ext2fs_check_desc (tables inside the filesystem and not
// overlapping other metadata), and no inode of the tail marked in use in the inode bitmap.
// Skipped on bigalloc, whose bitmap is per cluster. Anything doubtful keeps the table.
void FreeUnusedInodeTableTails(ext2_filsys fs) {
  if (!ext2fs_has_group_desc_csum(fs) || EXT2FS_CLUSTER_RATIO(fs) != 1) return;
  // ext2fs_check_desc builds a bitmap of the metadata it checks; as a tree of extents it
  // costs a few KiB instead of a second full bit array (32 MiB for 1 TiB, all page faults).
  int bitmap_type = fs->default_bitmap_type;
  fs->default_bitmap_type = EXT2FS_BMAP64_RBTREE;
  errcode_t desc = ext2fs_check_desc(fs);
  fs->default_bitmap_type = bitmap_type;
  if (desc != 0) return;
  if (ext2fs_read_inode_bitmap(fs) != 0) return;
  const uint64_t inode_bytes = EXT2_INODE_SIZE(fs->super);
  const uint32_t per_group = fs->super->s_inodes_per_group;
  const blk64_t table_blocks = fs->inode_blocks_per_group;
  for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
    if (!ext2fs_group_desc_csum_verify(fs, g)) continue;
    uint32_t unused = ext2fs_bg_itable_unused(fs, g);
    if (unused == 0 || unused > per_group) continue;
    uint32_t kept_inodes = per_group - unused;  // the group's first inodes, maybe in use
    ext2_ino_t first_unused = static_cast<ext2_ino_t>(g) * per_group + kept_inodes + 1;
    ext2_ino_t last = static_cast<ext2_ino_t>(g + 1) * per_group;
    ext2_ino_t found = 0;
    if (ext2fs_find_first_set_inode_bitmap2(fs->inode_map, first_unused, last, &found) !=
        ENOENT) {
      continue;  // an inode of the tail is in use (or the lookup failed): keep the table
    }
    blk64_t kept_blocks = (kept_inodes * inode_bytes + fs->blocksize - 1) / fs->blocksize;
    blk64_t table = ext2fs_inode_table_loc(fs, g);
    if (table == 0 || kept_blocks >= table_blocks) continue;
    ext2fs_unmark_block_bitmap_range2(fs->block_map, table + kept_blocks,
                                      table_blocks - kept_blocks);
  }
}

// Feeds the used runs of the in-memory block bitmap to the builder, in ascending order.
Status AddBitmapRuns(ext2_filsys fs, UsedBlockMapBuilder* builder) {
  blk64_t first = fs->super->s_first_data_block;
  blk64_t last = ext2fs_blocks_count(fs->super) - 1;
  blk64_t pos = first;
  while (pos <= last) {
    blk64_t run_start = 0;
    if (ext2fs_find_first_set_block_bitmap2(fs->block_map, pos, last, &run_start) != 0) break;
    blk64_t run_end = last + 1;
    blk64_t zero = 0;
    if (ext2fs_find_first_zero_block_bitmap2(fs->block_map, run_start, last, &zero) == 0) {
      run_end = zero;
    }
    if (run_end <= run_start) {
      return Status(Code::kInternal, "libext2fs bitmap scan did not advance at block " +
                                         std::to_string(run_start));
    }
    HOTSNAP_RETURN_IF_ERROR(builder->AddUsedBlocks(run_start, run_end - run_start));
    pos = run_end;
  }
  return Status::Ok();
}

// ExtUsedBlockMap's work, with the filesystem opened as `open_name` through `manager`
// (with `io_options`, or none when empty).
Result<UsedBlockMap> MapExt(const std::string& open_name, const std::string& io_options, io_manager manager,
                            const std::string& device_name, const std::string& fs_type,
                            uint64_t device_bytes, std::string* notice) {
  // Read-only (no EXT2_FLAG_RW): libext2fs then never writes, and skips MMP updates.
  ext2_filsys raw = nullptr;
  errcode_t err = ext2fs_open2(open_name.c_str(), io_options.empty() ? nullptr : io_options.c_str(),
                               EXT2_FLAG_64BITS, 0, 0, manager, &raw);
  ExtFsPtr fs(raw);
  if (err == EXT2_ET_UNSUPP_FEATURE || err == EXT2_ET_RO_UNSUPP_FEATURE) {
    *notice = fs_type + " on " + device_name + " uses features this libext2fs does not know (" +
              ExtError(err) + "); reading every block";
    return UsedBlockMap::AllBlocks(device_bytes);
  }
  if (err != 0) return ExtStatus(device_name, "opening " + fs_type + " with libext2fs", err);

  // The bitmaps on disk are only the truth once the journal has been replayed, and a
  // filesystem with recorded errors may have bitmaps that miss blocks in use. Zeroing a
  // block in use would lose data, so read everything instead.
  if (ext2fs_has_feature_journal_needs_recovery(fs->super)) {
    *notice = fs_type + " on " + device_name +
              " has a journal that needs recovery (not cleanly unmounted); reading every block";
    return UsedBlockMap::AllBlocks(device_bytes);
  }
  if (fs->super->s_state & EXT2_ERROR_FS) {
    *notice = fs_type + " on " + device_name +
              " has errors recorded (run e2fsck); reading every block";
    return UsedBlockMap::AllBlocks(device_bytes);
  }

  // A plain bit array (one bit per cluster) rather than the default red-black tree of
  // extents: its size is fixed by the filesystem size, whatever the fragmentation.
  fs->default_bitmap_type = EXT2FS_BMAP64_BITARRAY;
  err = ext2fs_read_block_bitmap(fs.get());
  if (err != 0) return ExtStatus(device_name, "reading " + fs_type + " block bitmaps", err);
  MarkUninitGroupMetadata(fs.get());
  FreeUnusedInodeTableTails(fs.get());

  UsedBlockMapBuilder builder(fs_type, device_bytes, fs->blocksize);
  // Blocks before s_first_data_block (block 0 of a 1 KiB-block filesystem: boot sector and
  // partition data) are outside every group's bitmap but must be kept.
  HOTSNAP_RETURN_IF_ERROR(builder.AddUsedBlocks(0, fs->super->s_first_data_block));
  HOTSNAP_RETURN_IF_ERROR(AddBitmapRuns(fs.get(), &builder));
  // Space past the filesystem's end belongs to no filesystem: keep it (see header).
  uint64_t fs_blocks = ext2fs_blocks_count(fs->super);
  if (fs_blocks < builder.device_blocks()) {
    HOTSNAP_RETURN_IF_ERROR(builder.AddUsedBlocks(fs_blocks, builder.device_blocks() - fs_blocks));
  }
  return std::move(builder).Build();
}

}  // namespace

Result<UsedBlockMap> ExtUsedBlockMap(const std::string& open_path, const std::string& device_name,
                                     const std::string& fs_type, uint64_t base_bytes,
                                     uint64_t device_bytes, std::string* notice) {
  // The unix I/O manager's "offset=" option adds base_bytes to every read.
  return MapExt(open_path, "offset=" + std::to_string(base_bytes), unix_io_manager, device_name, fs_type,
                device_bytes, notice);
}

Result<UsedBlockMap> ExtUsedBlockMapOf(RangedReader& source, const std::string& device_name,
                                       const std::string& fs_type, std::string* notice) {
  return MapExt(RangedIoName(&source), "", RangedIoManager(), device_name, fs_type, source.size_bytes(),
                notice);
}

}  // namespace hotsnap
