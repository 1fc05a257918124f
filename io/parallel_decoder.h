// ParallelDecoder: chunk frames decompressed and hashed by a few worker threads, handed
// back in submission order.
//
// The image scanner reads frames in stream order and submits each one (a copy of its bytes:
// the frame reader's buffer is reused); workers decompress into the job's own buffer,
// compute the chunk's XXH3-128 and whether it is all zeros; TakeNext() waits for the oldest
// job and returns it, so everything the scanner checks in order (trailer hashes, the image
// hash, the seek table) and the visitor still see chunks in order. Decoding runs ahead of
// the visitor by at most `depth` chunks. Submit/TakeNext/Recycle from one thread.
#ifndef HOTSNAP_IO_PARALLEL_DECODER_H_
#define HOTSNAP_IO_PARALLEL_DECODER_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "base/status.h"
#include "io/chunk_codec.h"
#include "io/image_format.h"

namespace hotsnap {

struct DecodeJob {
  uint64_t index = 0;
  uint64_t frame_offset = 0;   // image byte offset of the frame
  uint32_t length = 0;         // the chunk's bytes
  std::vector<uint8_t> frame;  // the whole zstd frame
  // Decoded bytes, chunk_bytes of them, left uninitialised: a page costs memory only once a
  // decoder writes it, not because the metadata declared a large chunk size.
  std::unique_ptr<uint8_t[]> chunk;
  // Filled in by a worker:
  Status status;  // zstd's verdict (frame checksum, exact length)
  Hash128 hash;
  bool zero = false;
  bool done = false;
};

class ParallelDecoder {
 public:
  // `workers` threads with one zstd context each (window limit `window_log`); up to `depth`
  // jobs of `chunk_bytes` outstanding.
  static Result<std::unique_ptr<ParallelDecoder>> Create(unsigned workers, unsigned depth,
                                                         int window_log, uint32_t chunk_bytes);
  ~ParallelDecoder();  // stops and joins the workers; outstanding jobs are dropped
  ParallelDecoder(const ParallelDecoder&) = delete;
  ParallelDecoder& operator=(const ParallelDecoder&) = delete;

  unsigned depth() const { return depth_; }
  unsigned outstanding() const { return static_cast<unsigned>(queue_.size()); }
  // A job to fill (index, offset, length, frame) and Submit(); reuses recycled buffers.
  std::unique_ptr<DecodeJob> NewJob();
  void Submit(std::unique_ptr<DecodeJob> job);
  // Waits for the oldest submitted job and returns it; nullptr if none is outstanding.
  std::unique_ptr<DecodeJob> TakeNext();
  void Recycle(std::unique_ptr<DecodeJob> job);

 private:
  ParallelDecoder(unsigned depth, uint32_t chunk_bytes)
      : depth_(depth), chunk_bytes_(chunk_bytes) {}
  void Work(ChunkDecompressor* decompressor);

  unsigned depth_;
  uint32_t chunk_bytes_;
  Hash128 zero_hash_;
  std::vector<std::unique_ptr<ChunkDecompressor>> decompressors_;
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable work_cv_;               // a job to claim, or stopping
  std::condition_variable done_cv_;               // a job finished
  std::deque<std::unique_ptr<DecodeJob>> queue_;  // submitted, in order (owned here)
  size_t next_unclaimed_ = 0;                     // index into queue_
  std::vector<std::unique_ptr<DecodeJob>> free_;
  bool stopping_ = false;
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_PARALLEL_DECODER_H_
