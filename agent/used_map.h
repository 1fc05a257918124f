// The used-block map of the device a backup reads, as every snapshot mode computes it.
#ifndef HOTSNAP_AGENT_USED_MAP_H_
#define HOTSNAP_AGENT_USED_MAP_H_

#include <string>

#include "base/status.h"
#include "fsmap/used_block_map.h"
#include "io/source_device.h"

namespace hotsnap {

// The map of `source` (a view: the device, a snapshot, a frozen filesystem), or every
// block with `all_blocks`. Reads through a buffered descriptor after dropping the device's
// cached pages (a filesystem that keeps metadata in its own cache, like xfs, wrote it at
// the freeze; stale pages from an earlier read must not hide that). A fallback notice is
// printed when `announce`.
Result<UsedBlockMap> MapUsedBlocks(const SourceDevice& source, bool all_blocks, bool announce);

// "all blocks", "xfs bnobt", "ext4 bitmap": how the map was made, for the metadata.
std::string DescribeMap(const UsedBlockMap& map);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_USED_MAP_H_
