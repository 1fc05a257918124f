// AlignedBuffer: page-aligned anonymous memory suitable for O_DIRECT and io_uring buffer
// registration. Move-only; unmapped on destruction. size() is what was asked for (the
// mapping may be larger). Not inherited by fork(): the children hotsnap forks (the freeze
// watchdog, hooks, ssh) never use these buffers, and copying the page tables of a large
// pipeline's buffers made each fork take up to tens of milliseconds before a freeze.
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
  // For large buffers: `bytes` rounded up to whole 2 MiB huge pages, aligned to one, and
  // advised to be backed by transparent huge pages. The first touch of a fresh 4 MiB
  // buffer then costs two page faults, not a thousand; page faults are expensive, in
  // virtual machines most of all. Without THP (kernel or setting) it is an ordinary mapping.
  static Result<AlignedBuffer> AllocateHuge(size_t bytes);
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
  size_t size_ = 0;          // bytes asked for
  size_t mapped_bytes_ = 0;  // bytes mapped at data_
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_ALIGNED_BUFFER_H_
