#include "io/chunk_codec.h"

#include <cstring>
#include <map>
#include <mutex>
#include <vector>

namespace hotsnap {

size_t MaxFrameBytes(uint32_t chunk_bytes) { return ZSTD_compressBound(chunk_bytes); }

bool IsAllZero(const void* data, size_t bytes) {
  const auto* p = static_cast<const uint8_t*>(data);
  // Check a short prefix first: data chunks almost always fail here at once.
  size_t head = bytes < 64 ? bytes : 64;
  for (size_t i = 0; i < head; ++i) {
    if (p[i] != 0) return false;
  }
  if (bytes <= 64) return true;
  // p[0..63] are zero, so the buffer is all zero iff it equals itself shifted by 64.
  return std::memcmp(p, p + 64, bytes - 64) == 0;
}

Result<std::unique_ptr<ChunkCompressor>> ChunkCompressor::Create(int level) {
  if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
    return Status(Code::kUsage, "zstd level " + std::to_string(level) + " is outside " +
                                    std::to_string(ZSTD_minCLevel()) + ".." +
                                    std::to_string(ZSTD_maxCLevel()));
  }
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (cctx == nullptr) return Status(Code::kInternal, "ZSTD_createCCtx failed");
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
  return std::unique_ptr<ChunkCompressor>(new ChunkCompressor(cctx));
}

ChunkCompressor::~ChunkCompressor() { ZSTD_freeCCtx(cctx_); }

Result<size_t> ChunkCompressor::Compress(std::span<const uint8_t> src, std::span<uint8_t> dst) {
  size_t n = ZSTD_compress2(cctx_, dst.data(), dst.size(), src.data(), src.size());
  if (ZSTD_isError(n)) {
    return Status(Code::kInternal, std::string("zstd compression: ") + ZSTD_getErrorName(n));
  }
  return n;
}

Result<ZeroChunk> MakeZeroChunk(int level, uint32_t length_bytes) {
  // Computed once per (level, length) per process: tracked mode runs many passes.
  static std::mutex mutex;
  static std::map<std::pair<int, uint32_t>, ZeroChunk> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto cached = cache.find({level, length_bytes});
  if (cached != cache.end()) return cached->second;
  auto compressor = ChunkCompressor::Create(level);
  if (!compressor.ok()) return compressor.status();
  std::vector<uint8_t> zeros(length_bytes, 0);
  std::vector<uint8_t> frame(MaxFrameBytes(length_bytes));
  auto n = (*compressor)->Compress(zeros, frame);
  if (!n.ok()) return n.status();
  ZeroChunk z;
  z.frame.assign(reinterpret_cast<const char*>(frame.data()), *n);
  z.hash = HashBytes(zeros.data(), zeros.size());
  cache.emplace(std::make_pair(level, length_bytes), z);
  return z;
}

int WindowLogFor(uint32_t chunk_bytes) {
  int log = 10;
  while ((1u << log) < chunk_bytes && log < 30) ++log;
  return log + 1;
}

Result<std::unique_ptr<ChunkDecompressor>> ChunkDecompressor::Create(int max_window_log) {
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  if (dctx == nullptr) return Status(Code::kInternal, "ZSTD_createDCtx failed");
  ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, max_window_log);
  return std::unique_ptr<ChunkDecompressor>(new ChunkDecompressor(dctx));
}

ChunkDecompressor::~ChunkDecompressor() { ZSTD_freeDCtx(dctx_); }

Status ChunkDecompressor::Decompress(std::span<const uint8_t> frame, std::span<uint8_t> dst,
                                     size_t expected_bytes) {
  if (expected_bytes > dst.size()) {
    return Status(Code::kInternal, "decompression buffer smaller than the chunk");
  }
  unsigned long long declared = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (declared != expected_bytes) {
    return Status(Code::kIntegrity, "frame declares " +
                                        (declared == ZSTD_CONTENTSIZE_UNKNOWN ||
                                                 declared == ZSTD_CONTENTSIZE_ERROR
                                             ? std::string("no valid content size")
                                             : std::to_string(declared) + " bytes") +
                                        ", expected " + std::to_string(expected_bytes));
  }
  // Decompress into exactly expected_bytes of room so a lying frame cannot write further.
  size_t n = ZSTD_decompressDCtx(dctx_, dst.data(), expected_bytes, frame.data(), frame.size());
  if (ZSTD_isError(n)) {
    return Status(Code::kIntegrity, std::string("zstd: ") + ZSTD_getErrorName(n));
  }
  if (n != expected_bytes) {
    return Status(Code::kIntegrity, "frame decompressed to " + std::to_string(n) +
                                        " bytes, expected " + std::to_string(expected_bytes));
  }
  return Status::Ok();
}

}  // namespace hotsnap
