#include "io/aligned_buffer.h"

#include <sys/mman.h>

#include <cerrno>
#include <utility>

namespace hotsnap {

Result<AlignedBuffer> AlignedBuffer::Allocate(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return Status::FromErrno(Code::kInternal, errno, "allocating " + std::to_string(bytes) + " bytes");
  }
  AlignedBuffer b;
  b.data_ = static_cast<uint8_t*>(p);
  b.size_ = bytes;
  return b;
}

AlignedBuffer::~AlignedBuffer() {
  if (data_ != nullptr) ::munmap(data_, size_);
}

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

}  // namespace hotsnap
