// DiskMap: the used-block map of a whole disk (a block device or an image file) that holds a
// GPT or DOS partition table, in byte offsets of the disk.
//
// What counts as used (all offsets and lengths in bytes from the start of the disk):
//  - every byte outside the partitions: the MBR, the GPT primary header and entries, the GPT
//    backup entries and header at the end, the gaps between partitions, a DOS extended
//    partition's EBRs and whatever of it lies outside its logical partitions;
//  - inside each partition, what that partition's own map says, made at the partition's
//    offset through the disk's descriptor:
//      ext2/3/4, xfs         mapped as on their own device (ComputeUsedBlockMapAt), with the
//                            same fallbacks to every block, the notice naming the partition;
//      swap                  only its header page (the first 4096 bytes: signature, UUID,
//                            label, bad-page list); swapped-out pages are stale after a
//                            restore, so the rest is stored as zeros, with a notice;
//      vfat, LUKS, LVM PV, anything else or nothing recognised: read whole.
// Partition maps are joined at a granularity that divides every partition start and size
// (4096 bytes for aligned tables, down to 512); a block shared by two regions is used if
// either uses it, so the joined map only ever adds bytes.
//
// A table whose partitions overlap or run past the end of the disk is not trusted: the whole
// disk is read, with a notice.
#ifndef HOTSNAP_FSMAP_DISK_MAP_H_
#define HOTSNAP_FSMAP_DISK_MAP_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "fsmap/used_block_map.h"
#include "io/partition_table.h"

namespace hotsnap {

// How one partition was mapped.
struct MappedPartition {
  Partition partition;      // the table entry (number, byte range, type, uuid, name, probe)
  std::string fs_type;      // what was mapped: "ext4", "xfs", "vfat", "swap", "" for nothing known
  std::string method;       // "ext4 bitmap", "xfs bnobt", "swap header", "all blocks",
                            // "extended (EBRs)"
  uint64_t used_bytes = 0;  // bytes of the partition in the map (its own map, before joining)
  std::string notice;       // a fallback or the swap notice, naming the partition; or ""
};

// The table and each partition's result, in table order. Attached to the disk's map.
struct DiskLayout {
  std::string table_type;  // "gpt" or "dos"
  std::string table_uuid;
  std::vector<MappedPartition> partitions;
  std::vector<std::string> notices;  // every notice: the partitions' and the table's own
};

// Maps the disk open as `fd` (only read with pread, or reopened read-only through
// /proc/self/fd by libext2fs), of `disk_bytes` bytes, whose table `table` (from
// ProbePartitionTable, type "gpt" or "dos") describes it. The result's disk_layout() is set.
// Partitions are mapped in parallel, one thread each; a table probed without its filesystems
// (filesystems_probed false: what a map under a freeze does, to keep the freeze short) has
// each partition's filesystem probed in its thread first.
// The filesystems must not change while this runs (unmounted, read-only, or frozen).
// `device_name` is used in messages ("/dev/sda p2"). Corrupt ext/xfs metadata in a partition
// is a kSource error naming the partition.
Result<UsedBlockMap> ComputeDiskMap(int fd, const std::string& device_name, uint64_t disk_bytes,
                                    const PartitionTable& table);

// True for the tables ComputeDiskMap understands.
bool IsMappableTable(const PartitionTable& table);

// Bytes of a swap partition's header page kept in the map.
constexpr uint64_t kSwapHeaderBytes = 4096;

}  // namespace hotsnap

#endif  // HOTSNAP_FSMAP_DISK_MAP_H_
