#include "io/ranged_reader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace hotsnap {

Status ReadExactAt(int fd, const std::string& name, uint64_t offset, void* dst, size_t bytes) {
  auto* p = static_cast<uint8_t*>(dst);
  while (bytes > 0) {
    ssize_t n = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno(Code::kSource, errno,
                               "reading image " + name + " at offset " + std::to_string(offset));
    }
    if (n == 0) {
      return Status(Code::kIntegrity,
                    "image " + name + ": ends before offset " + std::to_string(offset + bytes));
    }
    p += n;
    offset += static_cast<uint64_t>(n);
    bytes -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Result<FdRangedReader> FdRangedReader::Open(int fd, std::string name) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno(Code::kSource, errno, "stat " + name);
  return FdRangedReader(fd, std::move(name), static_cast<uint64_t>(st.st_size));
}

Status FdRangedReader::Read(uint64_t offset, size_t bytes, void* dst) {
  return ReadExactAt(fd_, name_, offset, dst, bytes);
}

}  // namespace hotsnap
