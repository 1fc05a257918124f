// UsedBlockMapBuilder: assembles a UsedBlockMap from used block ranges reported in ascending
// order, choosing the extent-list or bitmap representation (see used_block_map.h) as it goes
// so that memory stays bounded by the bitmap size whatever the fragmentation.
//
// Not thread-safe; one builder per map.
#ifndef HOTSNAP_FSMAP_USED_BLOCK_MAP_BUILDER_H_
#define HOTSNAP_FSMAP_USED_BLOCK_MAP_BUILDER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "fsmap/used_block_map.h"

namespace hotsnap {

class UsedBlockMapBuilder {
 public:
  // Extent lists below this many bytes are always kept as lists (a bitmap would not help).
  static constexpr size_t kMinExtentListBytes = 1 << 20;

  // `block_bytes` (the granularity, a power of two from 512 to 65536) divides the device
  // into ceil(device_bytes / block_bytes) blocks; the last may be partial.
  // `max_extent_list_bytes` overrides the switch-to-bitmap threshold (0 = automatic: half
  // the bitmap size, at least kMinExtentListBytes); tests use it to force either form.
  UsedBlockMapBuilder(std::string fs_type, uint64_t device_bytes, uint32_t block_bytes,
                      size_t max_extent_list_bytes = 0);

  uint64_t device_blocks() const { return device_blocks_; }

  // Marks blocks [first_block, first_block + block_count) used. Ranges must come in
  // ascending order and must not overlap earlier ones (touching is fine); the part past the
  // end of the device is ignored. Violations are kInternal errors (a caller bug).
  Status AddUsedBlocks(uint64_t first_block, uint64_t block_count);

  // Finishes the map. The builder is spent afterwards.
  UsedBlockMap Build() &&;

 private:
  void ConvertToBitmap();
  void SetBits(uint64_t first_block, uint64_t end_block);

  UsedBlockMap map_;
  uint64_t device_blocks_ = 0;
  uint64_t next_free_block_ = 0;  // every later range must start at or after this
  uint64_t used_blocks_ = 0;
  size_t max_extent_list_bytes_ = 0;
};

}  // namespace hotsnap

#endif  // HOTSNAP_FSMAP_USED_BLOCK_MAP_BUILDER_H_
