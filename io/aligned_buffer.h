// AlignedBuffer: page-aligned anonymous memory suitable for O_DIRECT and io_uring buffer
// registration. Move-only; unmapped on destruction.
#ifndef HOTSNAP_IO_ALIGNED_BUFFER_H_
#define HOTSNAP_IO_ALIGNED_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/status.h"

namespace hotsnap {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  static Result<AlignedBuffer> Allocate(size_t bytes);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<uint8_t> span() const { return {data_, size_}; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_ALIGNED_BUFFER_H_
