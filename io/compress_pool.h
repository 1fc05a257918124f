// CompressPool: a fixed set of worker threads turning chunks into zstd frames.
//
// The caller owns every CompressJob and its buffers; a submitted job belongs to the pool
// until TakeFinished() hands it back. Jobs finish in any order; the caller restores chunk
// order. After each finished job the pool writes 1 to `wake_fd` (an eventfd) so a caller
// waiting in poll() wakes up. Submit/TakeFinished are called from one thread.
#ifndef HOTSNAP_IO_COMPRESS_POOL_H_
#define HOTSNAP_IO_COMPRESS_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "base/status.h"
#include "io/chunk_codec.h"

namespace hotsnap {

struct CompressJob {
  uint64_t index = 0;
  int owner = -1;                  // the caller's cookie (e.g. a slot number)
  std::span<const uint8_t> input;  // the chunk's bytes
  std::span<uint8_t> output;       // room for MaxFrameBytes
  // The parent image's hash of this chunk (a delta image), or null. A chunk that hashes to
  // it is not compressed: `unchanged` is set and `frame` left empty.
  const Hash128* base_hash = nullptr;
  // Filled in by the pool:
  std::span<const uint8_t> frame;  // points into `output`, or at the shared zero frame
  Hash128 hash;
  bool zero = false;
  bool unchanged = false;
  Status status;
};

class CompressPool {
 public:
  // `zero` (the frame of a full all-zero chunk of `chunk_bytes`) must outlive the pool.
  CompressPool(unsigned workers, int level, uint32_t chunk_bytes, const ZeroChunk* zero, int wake_fd);
  ~CompressPool();  // stops and joins the workers; unfinished jobs are dropped
  CompressPool(const CompressPool&) = delete;
  CompressPool& operator=(const CompressPool&) = delete;

  Status Start();
  void Submit(CompressJob* job);
  void TakeFinished(std::vector<CompressJob*>* out);

 private:
  void Work(ChunkCompressor* compressor);
  void Finish(CompressJob* job);

  unsigned workers_;
  int level_;
  uint32_t chunk_bytes_;
  const ZeroChunk* zero_;
  int wake_fd_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<CompressJob*> pending_;
  std::vector<CompressJob*> finished_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<ChunkCompressor>> compressors_;
  std::vector<std::thread> threads_;
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_COMPRESS_POOL_H_
