// Used-block map of an XFS filesystem, from each allocation group's free-space records read
// straight from the on-disk format (see kernel-notes/xfs-used-blocks.md).
#ifndef HOTSNAP_FSMAP_XFS_USED_BLOCKS_H_
#define HOTSNAP_FSMAP_XFS_USED_BLOCKS_H_

#include <cstdint>
#include <string>

#include "base/status.h"
#include "fsmap/used_block_map.h"
#include "io/ranged_reader.h"

namespace hotsnap {

// Reads the XFS superblock at byte `base_bytes` of `fd` (0 for a filesystem device, the
// partition's start in a whole disk) and, for each allocation group, its AGF, AGFL
// and by-block-number free-space B+tree (bnobt), with pread only. Everything in the data
// device that is neither a bnobt free extent nor an AGFL block is used. Every magic number,
// count and pointer is checked before use; corruption is a kSource error naming the AG and
// block. A filesystem flagged as unfinished (mkfs in progress), needing repair, or of an
// unknown version gives AllBlocks and a *notice instead, and so does one whose log holds
// changes not yet written in place (an unclean shutdown; see fsmap/xfs_log.h) or an external
// log. `device_bytes` is the filesystem's device (partition) size; the map is in bytes from
// `base_bytes`, and no byte outside [base_bytes, base_bytes + device_bytes) is read.
Result<UsedBlockMap> XfsUsedBlockMap(int fd, const std::string& device_name, uint64_t base_bytes,
                                     uint64_t device_bytes, std::string* notice);

// The same for the filesystem whose bytes `source` reads (byte 0 of it is the superblock; its
// size_bytes() is the device size): for example the filesystem inside an image, read through
// the image's decoder.
Result<UsedBlockMap> XfsUsedBlockMapOf(RangedReader& source, const std::string& device_name,
                                       std::string* notice);

}  // namespace hotsnap

#endif  // HOTSNAP_FSMAP_XFS_USED_BLOCKS_H_
