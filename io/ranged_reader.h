// RangedReader: byte ranges of one image file, wherever the file is.
//
// LoadImageIndex (io/image_index.h) needs only a handful of ranges of an image — its footer,
// seek table, trailer, report and metadata frame — so it reads through this one interface.
// Two implementations: a local file descriptor (below) and a file on another host read over
// ssh (io/ssh_ranged_reader.h), so that a parent image on a backup server can be indexed
// without fetching it.
#ifndef HOTSNAP_IO_RANGED_READER_H_
#define HOTSNAP_IO_RANGED_READER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "base/status.h"

namespace hotsnap {

class RangedReader {
 public:
  virtual ~RangedReader() = default;
  // The file's size in bytes, as found when the reader was opened.
  virtual uint64_t size_bytes() const = 0;
  // Reads exactly `bytes` bytes at byte `offset` into `dst`. kIntegrity when the file ends
  // before offset + bytes; kSource when the file cannot be read.
  virtual Status Read(uint64_t offset, size_t bytes, void* dst) = 0;
};

// pread that loops over short reads; kIntegrity on a premature end of file, kSource on a
// read error. `name` is for messages.
Status ReadExactAt(int fd, const std::string& name, uint64_t offset, void* dst, size_t bytes);

// A regular file open for reading; does not own `fd`, which must outlive the reader.
class FdRangedReader : public RangedReader {
 public:
  // fstat()s `fd` for its size (kSource on failure); `name` is for messages.
  static Result<FdRangedReader> Open(int fd, std::string name);
  uint64_t size_bytes() const override { return size_bytes_; }
  Status Read(uint64_t offset, size_t bytes, void* dst) override;

 private:
  FdRangedReader(int fd, std::string name, uint64_t size_bytes)
      : fd_(fd), name_(std::move(name)), size_bytes_(size_bytes) {}
  int fd_;
  std::string name_;
  uint64_t size_bytes_;
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_RANGED_READER_H_
