// BlockReader: asynchronous reads of a source device into caller-owned buffers.
//
// The one interface for reading sectors, so tests can wrap the real reader to inject
// faults (EIO at an offset, short reads, -EAGAIN). Two implementations: io_uring with
// registered buffers (READ_FIXED), and a pread fallback used when io_uring is unavailable.
// Offsets and lengths are in bytes; for O_DIRECT they must be aligned to the device's
// logical sector size. Results are the kernel's: bytes read, or -errno. Retrying short
// reads and -EAGAIN is the caller's job (the caller knows what it asked for).
// Single-threaded: all calls from one thread.
#ifndef HOTSNAP_IO_BLOCK_READER_H_
#define HOTSNAP_IO_BLOCK_READER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

struct ReadRequest {
  uint64_t tag = 0;        // returned in the completion
  int buffer_index = -1;   // index into ReaderOptions::buffers
  uint32_t buffer_offset = 0;  // bytes into that buffer
  uint64_t offset_bytes = 0;
  uint32_t length_bytes = 0;
};

struct ReadCompletion {
  uint64_t tag = 0;
  int32_t result = 0;  // bytes read, or -errno
};

class BlockReader {
 public:
  virtual ~BlockReader() = default;
  virtual const char* name() const = 0;
  // Queues a read. The io_uring reader issues it at the next Reap(); pread does it now.
  virtual Status Queue(const ReadRequest& request) = 0;
  // Issues queued reads and appends finished ones to *out. With `wait`, blocks until at
  // least one is finished, unless a signal interrupts the wait (then returns OK with
  // nothing appended; the caller checks Interrupted()).
  virtual Status Reap(std::vector<ReadCompletion>* out, bool wait) = 0;
  virtual unsigned in_flight() const = 0;
  // The io_uring reader signals this eventfd whenever a completion is posted.
  virtual Status SetWakeFd(int eventfd) = 0;
};

struct ReaderOptions {
  unsigned queue_depth = 4;
  std::vector<std::span<uint8_t>> buffers;  // registered with the ring; must outlive the reader
  bool allow_io_uring = true;
};

// Creates the io_uring reader on `fd`; if io_uring cannot be set up (ENOSYS, EPERM,
// kernel.io_uring_disabled) returns the pread reader and sets *fallback_reason.
Result<std::unique_ptr<BlockReader>> MakeBlockReader(int fd, const ReaderOptions& options,
                                                     std::string* fallback_reason);

std::unique_ptr<BlockReader> MakePreadReader(int fd, const ReaderOptions& options);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_BLOCK_READER_H_
