// BlockWriter: asynchronous writes of whole chunks to a restore target.
//
// Two layers, like the read side (io/block_reader.h):
// - WriteQueue is the OS capability: writes queued from caller-owned buffers and their
//   completions, with the kernel's results (bytes written, or -errno). io_uring, or pwrite
//   when io_uring is unavailable. It is the one place restore writes reach the kernel, so
//   tests wrap the real queue to inject faults (EIO at an offset, ENOSPC, short writes,
//   -EAGAIN) into the real io_uring completion path; see tests/restore_fault_test.cc.
// - BlockWriter owns a few chunk-sized aligned buffers on top of a WriteQueue. Acquire()
//   hands out a free buffer (waiting for an earlier write to finish if all are busy); Write()
//   queues it at a byte offset and takes the buffer back when the write completes. Short
//   writes are continued and -EAGAIN retried; any other error, or a write that makes no
//   progress (ENOSPC), names the target and the byte offset where it failed. The first error
//   sticks: every later call returns it. Single-threaded.
// Offsets and lengths are in bytes; for an O_DIRECT target they must be aligned to its
// logical sector size.
#ifndef HOTSNAP_IO_BLOCK_WRITER_H_
#define HOTSNAP_IO_BLOCK_WRITER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/background_flush.h"

namespace hotsnap {

struct WriteRequest {
  uint64_t tag = 0;               // returned in the completion
  const uint8_t* data = nullptr;  // caller-owned; must stay valid until the completion
  uint32_t length_bytes = 0;
  uint64_t offset_bytes = 0;
};

struct WriteCompletion {
  uint64_t tag = 0;
  int32_t result = 0;  // bytes written, or -errno
};

class WriteQueue {
 public:
  virtual ~WriteQueue() = default;
  virtual const char* name() const = 0;
  // Queues a write. The io_uring queue issues it at the next Reap(); pwrite does it now.
  virtual Status Queue(const WriteRequest& request) = 0;
  // Issues queued writes and appends finished ones to *out. With `wait`, blocks until at
  // least one is finished, unless a signal interrupts the wait (then returns OK with nothing
  // appended; the caller checks Interrupted()).
  virtual Status Reap(std::vector<WriteCompletion>* out, bool wait) = 0;
  // Writes queued or issued and not yet reaped.
  virtual unsigned in_flight() const = 0;
};

// The io_uring queue on `fd` (which stays the caller's and must outlive the queue), at most
// `depth` writes in flight; if io_uring cannot be set up (ENOSYS, EPERM,
// kernel.io_uring_disabled) the pwrite queue, with *fallback_reason set.
Result<std::unique_ptr<WriteQueue>> MakeWriteQueue(int fd, unsigned depth,
                                                   std::string* fallback_reason);
std::unique_ptr<WriteQueue> MakePwriteQueue(int fd);

// Takes the real queue and returns what the writer should use instead: tests return a
// wrapper that forwards to the real queue and rewrites its completions.
using WriteQueueWrapper =
    std::function<std::unique_ptr<WriteQueue>(std::unique_ptr<WriteQueue> real)>;

class BlockWriter {
 public:
  virtual ~BlockWriter() = default;
  // The queue's name: "io_uring" or "pwrite".
  virtual const char* name() const = 0;
  virtual Result<std::span<uint8_t>> Acquire() = 0;
  // `data` must be (a prefix of) a buffer from Acquire().
  virtual Status Write(std::span<uint8_t> data, uint64_t offset_bytes) = 0;
  // Waits for every queued write and background flush, then fsyncs the target. Fails if
  // any write or flush failed.
  virtual Status Finish() = 0;
  // Background flushes finished so far.
  virtual unsigned flushes() const = 0;
};

struct BlockWriterOptions {
  uint32_t chunk_bytes = 0;  // the largest write, and the size of each buffer
  unsigned queue_depth = 4;  // writes in flight (at least 2)
  // Least bytes written between two background flushes; 0: none, only the final fsync.
  uint64_t flush_every_bytes = uint64_t{16} << 20;
  // If set, wraps the real write queue (tests inject faults with it).
  WriteQueueWrapper wrap;
  // The flush used in the background and at Finish(); empty: FlushTarget (fdatasync).
  TargetFlush flush;
};

// `fd` stays owned by the caller and must outlive the writer. `target` is for messages.
Result<std::unique_ptr<BlockWriter>> MakeBlockWriter(int fd, const std::string& target,
                                                     const BlockWriterOptions& options,
                                                     std::string* fallback_reason);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_BLOCK_WRITER_H_
