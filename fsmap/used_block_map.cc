#include "fsmap/used_block_map.h"

#include <algorithm>
#include <bit>
#include <ostream>
#include <utility>

#include "fsmap/used_block_map_builder.h"

namespace hotsnap {
namespace {

constexpr uint64_t kAllOnes = ~uint64_t{0};

// Index of the first bit >= `from` and < `end` whose value is `want`, or `end`.
uint64_t FindBit(const std::vector<uint64_t>& bits, uint64_t from, uint64_t end, bool want) {
  while (from < end) {
    uint64_t word = bits[from / 64];
    if (!want) word = ~word;
    word &= kAllOnes << (from % 64);
    if (word != 0) return std::min(end, (from / 64) * 64 + std::countr_zero(word));
    from = (from / 64 + 1) * 64;
  }
  return end;
}

void AppendExtent(uint64_t offset, uint64_t end, std::vector<ByteExtent>* out) {
  out->push_back({offset, end - offset});
}

}  // namespace

std::ostream& operator<<(std::ostream& os, const ByteExtent& extent) {
  return os << "[" << extent.offset_bytes << ", +" << extent.length_bytes << ")";
}

UsedBlockMap UsedBlockMap::AllBlocks(uint64_t device_bytes) {
  UsedBlockMapBuilder builder("", device_bytes, 512);
  Status ignored = builder.AddUsedBlocks(0, builder.device_blocks());
  (void)ignored;  // a single range from block 0 cannot violate the ordering contract
  UsedBlockMap map = std::move(builder).Build();
  map.all_blocks_ = true;
  return map;
}

size_t UsedBlockMap::memory_bytes() const {
  return extents_.capacity() * sizeof(ByteExtent) + bitmap_.capacity() * sizeof(uint64_t);
}

void UsedBlockMap::UsedIn(uint64_t offset_bytes, uint64_t length_bytes,
                          std::vector<ByteExtent>* out) const {
  if (offset_bytes >= device_bytes_ || length_bytes == 0) return;
  uint64_t end = std::min(device_bytes_, offset_bytes + std::min(length_bytes,
                                                                 device_bytes_ - offset_bytes));
  if (uses_bitmap_) {
    BitmapUsedIn(offset_bytes, end, out);
    return;
  }
  // First extent ending after offset_bytes: the one before the first starting after it,
  // if that one reaches into the window.
  auto it = std::upper_bound(
      extents_.begin(), extents_.end(), offset_bytes,
      [](uint64_t offset, const ByteExtent& e) { return offset < e.offset_bytes; });
  if (it != extents_.begin() && std::prev(it)->end_bytes() > offset_bytes) --it;
  for (; it != extents_.end() && it->offset_bytes < end; ++it) {
    AppendExtent(std::max(offset_bytes, it->offset_bytes), std::min(end, it->end_bytes()),
                    out);
  }
}

void UsedBlockMap::BitmapUsedIn(uint64_t offset_bytes, uint64_t end_bytes,
                                std::vector<ByteExtent>* out) const {
  uint64_t block = offset_bytes / block_bytes_;
  uint64_t end_block = (end_bytes + block_bytes_ - 1) / block_bytes_;
  while (block < end_block) {
    uint64_t run_start = FindBit(bitmap_, block, end_block, true);
    if (run_start == end_block) break;
    uint64_t run_end = FindBit(bitmap_, run_start, end_block, false);
    AppendExtent(std::max(offset_bytes, run_start * block_bytes_),
                    std::min(end_bytes, run_end * block_bytes_), out);
    block = run_end;
  }
}

bool UsedBlockMap::AllUsed(uint64_t offset_bytes, uint64_t length_bytes) const {
  if (length_bytes == 0) return true;
  if (offset_bytes >= device_bytes_ || device_bytes_ - offset_bytes < length_bytes) return false;
  std::vector<ByteExtent> used;
  UsedIn(offset_bytes, length_bytes, &used);
  return used.size() == 1 && used[0] == ByteExtent{offset_bytes, length_bytes};
}

bool UsedBlockMap::NoneUsed(uint64_t offset_bytes, uint64_t length_bytes) const {
  std::vector<ByteExtent> used;
  UsedIn(offset_bytes, length_bytes, &used);
  return used.empty();
}

// ---- UsedBlockMapBuilder ----

UsedBlockMapBuilder::UsedBlockMapBuilder(std::string fs_type, uint64_t device_bytes,
                                         uint32_t block_bytes, size_t max_extent_list_bytes) {
  map_.fs_type_ = std::move(fs_type);
  map_.device_bytes_ = device_bytes;
  map_.block_bytes_ = block_bytes;
  device_blocks_ = (device_bytes + block_bytes - 1) / block_bytes;
  if (max_extent_list_bytes == 0) {
    uint64_t bitmap_bytes = (device_blocks_ + 63) / 64 * 8;
    max_extent_list_bytes = std::max<uint64_t>(kMinExtentListBytes, bitmap_bytes / 2);
  }
  max_extent_list_bytes_ = max_extent_list_bytes;
}

Status UsedBlockMapBuilder::AddUsedBlocks(uint64_t first_block, uint64_t block_count) {
  if (block_count == 0) return Status::Ok();
  if (first_block < next_free_block_ || first_block + block_count < first_block) {
    return Status(Code::kInternal,
                  "used-block map: range at block " + std::to_string(first_block) +
                      " is out of order (next allowed block " +
                      std::to_string(next_free_block_) + ")");
  }
  next_free_block_ = first_block + block_count;
  if (first_block >= device_blocks_) return Status::Ok();
  uint64_t end_block = std::min(device_blocks_, first_block + block_count);
  used_blocks_ += end_block - first_block;

  if (map_.uses_bitmap_) {
    SetBits(first_block, end_block);
    return Status::Ok();
  }
  uint64_t offset = first_block * map_.block_bytes_;
  uint64_t end = std::min(map_.device_bytes_, end_block * map_.block_bytes_);
  std::vector<ByteExtent>& extents = map_.extents_;
  if (!extents.empty() && extents.back().end_bytes() == offset) {
    extents.back().length_bytes = end - extents.back().offset_bytes;
    return Status::Ok();
  }
  if ((extents.size() + 1) * sizeof(ByteExtent) > max_extent_list_bytes_) {
    ConvertToBitmap();
    SetBits(first_block, end_block);
    return Status::Ok();
  }
  extents.push_back({offset, end - offset});
  return Status::Ok();
}

void UsedBlockMapBuilder::SetBits(uint64_t first_block, uint64_t end_block) {
  std::vector<uint64_t>& bits = map_.bitmap_;
  uint64_t b = first_block;
  while (b < end_block && b % 64 != 0) {
    bits[b / 64] |= uint64_t{1} << (b % 64);
    ++b;
  }
  while (end_block - b >= 64) {
    bits[b / 64] = kAllOnes;
    b += 64;
  }
  while (b < end_block) {
    bits[b / 64] |= uint64_t{1} << (b % 64);
    ++b;
  }
}

void UsedBlockMapBuilder::ConvertToBitmap() {
  map_.bitmap_.assign((device_blocks_ + 63) / 64, 0);
  map_.uses_bitmap_ = true;
  uint32_t bs = map_.block_bytes_;
  for (const ByteExtent& e : map_.extents_) {
    SetBits(e.offset_bytes / bs, (e.end_bytes() + bs - 1) / bs);
  }
  std::vector<ByteExtent>().swap(map_.extents_);
}

UsedBlockMap UsedBlockMapBuilder::Build() && {
  uint64_t used = used_blocks_ * map_.block_bytes_;
  // The last block may be partial; count only the bytes that exist.
  uint64_t slack = device_blocks_ * map_.block_bytes_ - map_.device_bytes_;
  if (slack != 0) {
    bool last_used =
        map_.uses_bitmap_
            ? (map_.bitmap_[(device_blocks_ - 1) / 64] >> ((device_blocks_ - 1) % 64)) & 1
            : (!map_.extents_.empty() && map_.extents_.back().end_bytes() == map_.device_bytes_);
    if (last_used) used -= slack;
  }
  map_.used_bytes_ = used;
  map_.extents_.shrink_to_fit();
  return std::move(map_);
}

}  // namespace hotsnap
