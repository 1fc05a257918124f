// Used-block map of an ext2/3/4 filesystem, from its block bitmaps via libext2fs.
#ifndef HOTSNAP_FSMAP_EXT_USED_BLOCKS_H_
#define HOTSNAP_FSMAP_EXT_USED_BLOCKS_H_

#include <cstdint>
#include <string>

#include "base/status.h"
#include "fsmap/used_block_map.h"
#include "io/ranged_reader.h"

namespace hotsnap {

// Opens `open_path` read-only with libext2fs (never writes), the filesystem starting at byte
// `base_bytes` of it (0, or a partition's start in a whole disk), and maps the blocks its block
// bitmap marks used, plus those before s_first_data_block and past the filesystem's end.
// `fs_type` ("ext2", "ext3", "ext4") is recorded in the map. If the bitmaps cannot be trusted
// (journal needs recovery, errors recorded) or libext2fs does not support the filesystem's
// features, returns AllBlocks and sets *notice. Other failures are kSource errors. The map
// covers `device_bytes` (the partition's size) in bytes from `base_bytes`.
Result<UsedBlockMap> ExtUsedBlockMap(const std::string& open_path, const std::string& device_name,
                                     const std::string& fs_type, uint64_t base_bytes,
                                     uint64_t device_bytes, std::string* notice);

// The same for the filesystem whose bytes `source` reads (byte 0 of it is the filesystem's
// first byte; its size_bytes() is the device size), through fsmap/ext_ranged_io.h: for
// example the filesystem inside an image, read through the image's decoder. Only read.
Result<UsedBlockMap> ExtUsedBlockMapOf(RangedReader& source, const std::string& device_name,
                                       const std::string& fs_type, std::string* notice);

}  // namespace hotsnap

#endif  // HOTSNAP_FSMAP_EXT_USED_BLOCKS_H_
