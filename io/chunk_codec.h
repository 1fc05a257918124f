// Compression and decompression of single chunks, on buffers only.
//
// Every chunk becomes one independent zstd frame with the content size and a content
// checksum in its header, so stock `zstd -dc` checks and reproduces it. A ChunkCompressor
// or ChunkDecompressor owns one zstd context and is used by one thread at a time.
#ifndef HOTSNAP_IO_CHUNK_CODEC_H_
#define HOTSNAP_IO_CHUNK_CODEC_H_

#include <zstd.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/status.h"
#include "io/image_format.h"

namespace hotsnap {

// Upper bound of one compressed chunk frame, in bytes.
size_t MaxFrameBytes(uint32_t chunk_bytes);

// True if every byte of the buffer is zero. Fast path for the common free-space case.
bool IsAllZero(const void* data, size_t bytes);

class ChunkCompressor {
 public:
  static Result<std::unique_ptr<ChunkCompressor>> Create(int level);
  ~ChunkCompressor();
  ChunkCompressor(const ChunkCompressor&) = delete;
  ChunkCompressor& operator=(const ChunkCompressor&) = delete;

  // Compresses `src` into `dst` (capacity at least MaxFrameBytes); returns the frame size.
  Result<size_t> Compress(std::span<const uint8_t> src, std::span<uint8_t> dst);

 private:
  explicit ChunkCompressor(ZSTD_CCtx* cctx) : cctx_(cctx) {}
  ZSTD_CCtx* cctx_;
};

// The frame and hash of an all-zero chunk of one length, computed once per run so that
// free space costs neither a read nor a compression.
struct ZeroChunk {
  std::string frame;
  Hash128 hash;
};
Result<ZeroChunk> MakeZeroChunk(int level, uint32_t length_bytes);

class ChunkDecompressor {
 public:
  // `max_window_log` is set as ZSTD_d_windowLogMax. Decompress() decodes a whole frame into
  // a buffer of exactly the expected length in one call, which needs no window buffer, so
  // memory is bounded by that length whatever window a frame declares; the cap matters only
  // if this context is ever used for streaming.
  static Result<std::unique_ptr<ChunkDecompressor>> Create(int max_window_log);
  ~ChunkDecompressor();
  ChunkDecompressor(const ChunkDecompressor&) = delete;
  ChunkDecompressor& operator=(const ChunkDecompressor&) = delete;

  // Decompresses exactly one frame from `frame` into `dst`. Fails (kIntegrity) if the frame
  // is malformed, fails its content checksum, or does not produce exactly `expected_bytes`.
  Status Decompress(std::span<const uint8_t> frame, std::span<uint8_t> dst, size_t expected_bytes);

 private:
  explicit ChunkDecompressor(ZSTD_DCtx* dctx) : dctx_(dctx) {}
  ZSTD_DCtx* dctx_;
};

// The window log that frames of `chunk_bytes` need, plus headroom; used as the cap.
int WindowLogFor(uint32_t chunk_bytes);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_CHUNK_CODEC_H_
