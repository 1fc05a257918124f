// The used-block map of the device a backup reads, as every snapshot mode computes it.
#ifndef HOTSNAP_AGENT_USED_MAP_H_
#define HOTSNAP_AGENT_USED_MAP_H_

#include <set>
#include <string>

#include "base/status.h"
#include "fsmap/used_block_map.h"
#include "io/image_format.h"
#include "io/source_device.h"

namespace hotsnap {

// The map of `source` (a view: the device, a snapshot, a frozen filesystem), or every
// block with `all_blocks`. Reads through a buffered descriptor after dropping the device's
// cached pages (a filesystem that keeps metadata in its own cache, like xfs, wrote it at
// the freeze; stale pages from an earlier read must not hide that). A source holding a GPT
// or DOS partition table gets the whole-disk map of fsmap/disk_map.h (each partition mapped
// on its own; the result's disk_layout() says how). Fallback notices are printed when
// `announce`; with `shown`, only those not in it, which are added (a copy that maps at every
// freeze says once what each map changed, e.g. a partition read whole from the third freeze).
Result<UsedBlockMap> MapUsedBlocks(const SourceDevice& source, bool all_blocks, bool announce,
                                   std::set<std::string>* shown = nullptr);

// "all blocks", "xfs bnobt", "ext4 bitmap", or for a disk "gpt partitions: p1 vfat all
// blocks 32.0 MiB, p2 ext4 bitmap 9.1 MiB, ...": how the map was made, for the metadata and
// the plan.
std::string DescribeMap(const UsedBlockMap& map);

// Records `map` in the metadata: used bytes, DescribeMap, and for a disk map the partition
// table with each partition's used bytes and map.
void RecordMap(const UsedBlockMap& map, ImageMetadata* meta);

// The partition table of a disk map as the metadata records it (empty() for other maps).
ImagePartitionTable PartitionTableOf(const UsedBlockMap& map);

// One line per partition, each starting with `indent` and ending in '\n': number, byte range,
// type, filesystem (label, UUID), used bytes and how they were found. What `hotsnap info`
// prints for a disk image.
std::string FormatPartitionLines(const ImagePartitionTable& table, const std::string& indent);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_USED_MAP_H_
