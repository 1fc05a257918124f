// BlockWriter: asynchronous writes of whole chunks to a restore target.
//
// Owns a few chunk-sized aligned buffers. Acquire() hands out a free buffer (waiting for
// an earlier write to finish if all are busy); Write() queues it at a byte offset and takes
// the buffer back when the write completes. Short writes are continued and -EAGAIN retried;
// any other error names the target and byte offset. Uses io_uring, or pwrite when io_uring
// is unavailable. Single-threaded.
#ifndef HOTSNAP_IO_BLOCK_WRITER_H_
#define HOTSNAP_IO_BLOCK_WRITER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/status.h"

namespace hotsnap {

class BlockWriter {
 public:
  virtual ~BlockWriter() = default;
  virtual const char* name() const = 0;
  virtual Result<std::span<uint8_t>> Acquire() = 0;
  // `data` must be (a prefix of) a buffer from Acquire().
  virtual Status Write(std::span<uint8_t> data, uint64_t offset_bytes) = 0;
  // Waits for every queued write, then fsyncs the target.
  virtual Status Finish() = 0;
};

// `fd` stays owned by the caller and must outlive the writer. `target` is for messages.
Result<std::unique_ptr<BlockWriter>> MakeBlockWriter(int fd, const std::string& target,
                                                     uint32_t chunk_bytes, unsigned queue_depth,
                                                     std::string* fallback_reason);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_BLOCK_WRITER_H_
