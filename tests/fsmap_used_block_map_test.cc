// UsedBlockMap and its builder, without devices: both representations answer alike,
// clipping, partial last blocks, ordering contract, memory bound.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "fsmap/used_block_map.h"
#include "fsmap/used_block_map_builder.h"

namespace hotsnap {
namespace {

constexpr uint32_t kBlock = 4096;

// Reference: one bool per block.
std::vector<ByteExtent> Reference(const std::vector<bool>& used, uint64_t device_bytes,
                                  uint64_t offset, uint64_t length) {
  std::vector<ByteExtent> out;
  uint64_t end = std::min(device_bytes, offset + length);
  for (uint64_t b = offset / kBlock; b < used.size() && b * kBlock < end; ++b) {
    if (!used[b]) continue;
    uint64_t s = std::max(offset, b * kBlock);
    uint64_t e = std::min(end, (b + 1) * kBlock);
    if (!out.empty() && out.back().end_bytes() == s) {
      out.back().length_bytes += e - s;
    } else {
      out.push_back({s, e - s});
    }
  }
  return out;
}

UsedBlockMap BuildFrom(const std::vector<bool>& used, uint64_t device_bytes,
                       size_t max_list_bytes) {
  UsedBlockMapBuilder builder("test", device_bytes, kBlock, max_list_bytes);
  for (uint64_t b = 0; b < used.size();) {
    if (!used[b]) {
      ++b;
      continue;
    }
    uint64_t e = b;
    while (e < used.size() && used[e]) ++e;
    EXPECT_TRUE(builder.AddUsedBlocks(b, e - b).ok());
    b = e;
  }
  return std::move(builder).Build();
}

TEST(FsmapUsedBlockMap, ListAndBitmapAgreeWithReference) {
  std::mt19937_64 rng(42);
  // Device with a partial last block.
  const uint64_t blocks = 5000;
  const uint64_t device_bytes = (blocks - 1) * kBlock + 1000;
  std::vector<bool> used(blocks);
  bool state = false;
  for (uint64_t b = 0; b < blocks; ++b) {
    if (rng() % 7 == 0) state = !state;
    used[b] = state;
  }
  used[blocks - 1] = true;
  uint64_t expected_used = 0;
  for (uint64_t b = 0; b < blocks; ++b) {
    if (used[b]) expected_used += (b == blocks - 1) ? 1000 : kBlock;
  }

  UsedBlockMap list = BuildFrom(used, device_bytes, 1 << 30);
  UsedBlockMap bitmap = BuildFrom(used, device_bytes, 16);
  ASSERT_FALSE(list.uses_bitmap());
  ASSERT_TRUE(bitmap.uses_bitmap());
  for (const UsedBlockMap* map : {&list, &bitmap}) {
    EXPECT_EQ(map->used_bytes(), expected_used);
    EXPECT_EQ(map->fs_type(), "test");
    EXPECT_FALSE(map->all_blocks());
    for (int i = 0; i < 2000; ++i) {
      uint64_t offset = rng() % (device_bytes + 2 * kBlock);
      uint64_t length = rng() % (64 * kBlock);
      std::vector<ByteExtent> got;
      map->UsedIn(offset, length, &got);
      ASSERT_EQ(got, Reference(used, device_bytes, offset, length))
          << "offset " << offset << " length " << length << " bitmap " << map->uses_bitmap();
    }
    std::vector<ByteExtent> whole;
    map->UsedIn(0, UINT64_MAX, &whole);
    EXPECT_EQ(whole, Reference(used, device_bytes, 0, device_bytes));
  }
}

TEST(FsmapUsedBlockMap, UsedInAppendsAndClips) {
  UsedBlockMapBuilder builder("x", 100 * kBlock, kBlock);
  ASSERT_TRUE(builder.AddUsedBlocks(10, 5).ok());
  ASSERT_TRUE(builder.AddUsedBlocks(15, 5).ok());  // touching: coalesced
  ASSERT_TRUE(builder.AddUsedBlocks(30, 1).ok());
  UsedBlockMap map = std::move(builder).Build();
  EXPECT_EQ(map.used_bytes(), 11u * kBlock);
  std::vector<ByteExtent> out = {{1, 2}};
  map.UsedIn(12 * kBlock + 7, 20 * kBlock, &out);
  std::vector<ByteExtent> want = {{1, 2}, {12 * kBlock + 7, 8 * kBlock - 7}, {30 * kBlock, kBlock}};
  EXPECT_EQ(out, want);
  EXPECT_TRUE(map.NoneUsed(0, 10 * kBlock));
  EXPECT_FALSE(map.NoneUsed(0, 10 * kBlock + 1));
  EXPECT_TRUE(map.AllUsed(10 * kBlock, 10 * kBlock));
  EXPECT_FALSE(map.AllUsed(10 * kBlock, 10 * kBlock + 1));
}

TEST(FsmapUsedBlockMap, RejectsOutOfOrderRanges) {
  UsedBlockMapBuilder builder("x", 100 * kBlock, kBlock);
  ASSERT_TRUE(builder.AddUsedBlocks(10, 5).ok());
  Status s = builder.AddUsedBlocks(12, 1);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kInternal);
}

TEST(FsmapUsedBlockMap, AllBlocksCoversDevice) {
  UsedBlockMap map = UsedBlockMap::AllBlocks(12345);
  EXPECT_TRUE(map.all_blocks());
  EXPECT_EQ(map.fs_type(), "");
  EXPECT_EQ(map.used_bytes(), 12345u);
  std::vector<ByteExtent> out;
  map.UsedIn(100, 1 << 20, &out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], (ByteExtent{100, 12245}));
}

// The worst case for an extent list: every other block used. The map must switch to the
// bitmap and stay within the documented bound (one bit per block, at least 1 MiB of list).
TEST(FsmapUsedBlockMap, AlternatingBlocksStayWithinBitmapBound) {
  const uint64_t blocks = 8 * 1024 * 1024;  // 32 GiB of 4 KiB blocks
  UsedBlockMapBuilder builder("x", blocks * kBlock, kBlock);
  for (uint64_t b = 0; b < blocks; b += 2) ASSERT_TRUE(builder.AddUsedBlocks(b, 1).ok());
  UsedBlockMap map = std::move(builder).Build();
  EXPECT_TRUE(map.uses_bitmap());
  EXPECT_LE(map.memory_bytes(), std::max<uint64_t>(blocks / 8, 1 << 20));
  EXPECT_EQ(map.used_bytes(), blocks / 2 * kBlock);
  std::vector<ByteExtent> out;
  map.UsedIn(4 << 20, 4 << 20, &out);
  EXPECT_EQ(out.size(), (4u << 20) / kBlock / 2);
}

}  // namespace
}  // namespace hotsnap
