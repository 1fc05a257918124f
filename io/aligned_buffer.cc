#include "io/aligned_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <utility>

namespace hotsnap {

Result<AlignedBuffer> AlignedBuffer::Allocate(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return Status::FromErrno(Code::kInternal, errno,
                             "allocating " + std::to_string(bytes) + " bytes");
  }
  (void)::madvise(p, bytes, MADV_DONTFORK);
  AlignedBuffer b;
  b.data_ = static_cast<uint8_t*>(p);
  b.size_ = bytes;
  b.mapped_bytes_ = bytes;
  return b;
}

Result<AlignedBuffer> AlignedBuffer::AllocateHuge(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t rounded = (bytes + kHuge - 1) / kHuge * kHuge;
  // Map one huge page more than needed and trim both ends to a huge-page boundary.
  const size_t span = rounded + kHuge;
  void* p = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return Status::FromErrno(Code::kInternal, errno,
                             "allocating " + std::to_string(bytes) + " bytes");
  }
  auto start = reinterpret_cast<uintptr_t>(p);
  uintptr_t aligned = (start + kHuge - 1) / kHuge * kHuge;
  if (aligned > start) ::munmap(p, aligned - start);
  uintptr_t tail = aligned + rounded;
  if (start + span > tail) ::munmap(reinterpret_cast<void*>(tail), start + span - tail);
  (void)::madvise(reinterpret_cast<void*>(aligned), rounded, MADV_HUGEPAGE);
  (void)::madvise(reinterpret_cast<void*>(aligned), rounded, MADV_DONTFORK);
  AlignedBuffer b;
  b.data_ = reinterpret_cast<uint8_t*>(aligned);
  b.size_ = bytes;
  b.mapped_bytes_ = rounded;
  return b;
}

AlignedBuffer::~AlignedBuffer() {
  if (data_ != nullptr) ::munmap(data_, mapped_bytes_);
}

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_bytes_(std::exchange(other.mapped_bytes_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, mapped_bytes_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_bytes_ = std::exchange(other.mapped_bytes_, 0);
  }
  return *this;
}

}  // namespace hotsnap
