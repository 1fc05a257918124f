// Tests for io/aligned_buffer.h: AllocateHuge gives a buffer aligned to a 2 MiB huge page,
// of the size asked for, writable to its last byte, and unmaps all it mapped (the rounding
// included) when destroyed or overwritten by a move.
#include "io/aligned_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <vector>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

constexpr size_t kHuge = size_t{2} << 20;

// True if every page of [p, p + bytes) is mapped (mincore fails with ENOMEM otherwise).
bool Mapped(const uint8_t* p, size_t bytes) {
  std::vector<unsigned char> v((bytes + 4095) / 4096);
  return ::mincore(const_cast<uint8_t*>(p), bytes, v.data()) == 0;
}

TEST(AlignedBufferTest, AllocateHugeIsAlignedSizedWritableAndFullyUnmapped) {
  const size_t asked = 3 * kHuge + 12345;  // not a multiple of the huge page
  const uint8_t* data = nullptr;
  {
    auto b = AlignedBuffer::AllocateHuge(asked);
    ASSERT_TRUE(b.ok()) << b.status().message();
    data = b->data();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % kHuge, 0u);
    EXPECT_EQ(b->size(), asked);
    b->data()[0] = 1;
    b->data()[asked - 1] = 2;
    EXPECT_EQ(b->data()[asked - 1], 2);
    EXPECT_TRUE(Mapped(data, 4 * kHuge)) << "the rounding up to whole huge pages is mapped";
    // Moving keeps the mapping alive under its new owner.
    AlignedBuffer moved = std::move(b.value());
    EXPECT_EQ(moved.data(), data);
    EXPECT_EQ(moved.size(), asked);
    EXPECT_TRUE(Mapped(data, 4 * kHuge));
  }
  EXPECT_FALSE(Mapped(data, kHuge)) << "first huge page still mapped after destruction";
  EXPECT_FALSE(Mapped(data + 4 * kHuge - 4096, 4096)) << "the rounded-up tail is still mapped";
}

TEST(AlignedBufferTest, MoveAssignmentUnmapsTheOverwrittenBuffer) {
  auto a = AlignedBuffer::AllocateHuge(kHuge + 1);
  auto b = AlignedBuffer::Allocate(4096);
  ASSERT_TRUE(a.ok() && b.ok());
  const uint8_t* old = a->data();
  AlignedBuffer target = std::move(a.value());
  target = std::move(b.value());
  EXPECT_FALSE(Mapped(old, 2 * kHuge)) << "the overwritten buffer was not unmapped whole";
  EXPECT_EQ(target.size(), 4096u);
}

}  // namespace
}  // namespace hotsnap
