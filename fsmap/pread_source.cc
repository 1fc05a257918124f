#include "fsmap/pread_source.h"

#include <unistd.h>

#include <cerrno>

namespace hotsnap {

PreadSource FdPreadSource(int fd) {
  return [fd](void* buf, size_t bytes, uint64_t offset) {
    return ::pread(fd, buf, bytes, static_cast<off_t>(offset));
  };
}

PreadSource RangedPreadSource(RangedReader* reader) {
  return [reader](void* buf, size_t bytes, uint64_t offset) -> ssize_t {
    const uint64_t size = reader->size_bytes();
    if (offset >= size) return 0;
    if (bytes > size - offset) bytes = static_cast<size_t>(size - offset);
    Status s = reader->Read(offset, bytes, buf);
    if (!s.ok()) {
      errno = s.err() != 0 ? s.err() : EIO;
      return -1;
    }
    return static_cast<ssize_t>(bytes);
  };
}

}  // namespace hotsnap
