// libFuzzer target: chunk decoding (ChunkDecompressor) with the window cap the readers use.
// The first byte picks the chunk size (bits 0-2: 64 KiB << n, up to 8 MiB), whether the expected
// length is the full chunk or the frame's own declared size (bit 3), and whether a frame that
// decodes is re-compressed and decoded again (bit 4); decoding must never write past it.
#include <zstd.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "io/chunk_codec.h"

using namespace hotsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  uint32_t chunk_bytes = kMinChunkBytes << (data[0] & 7);  // 64 KiB .. 8 MiB
  std::span<const uint8_t> frame(data + 1, size - 1);
  auto d = ChunkDecompressor::Create(WindowLogFor(chunk_bytes));
  if (!d.ok()) std::abort();
  size_t expected = chunk_bytes;
  if (data[0] & 8) {
    unsigned long long declared = ZSTD_getFrameContentSize(frame.data(), frame.size());
    if (declared <= chunk_bytes) expected = static_cast<size_t>(declared);
  }
  // Exactly `expected` bytes of room: ASan catches any write past it.
  std::vector<uint8_t> dst(expected);
  Status s = (*d)->Decompress(frame, dst, expected);
  if (s.ok() && (data[0] & 16)) {
    // A frame that decodes must compress back to something that decodes to the same bytes.
    auto c = ChunkCompressor::Create(1);
    std::vector<uint8_t> out(MaxFrameBytes(chunk_bytes));
    auto n = (*c)->Compress(dst, out);
    if (!n.ok()) std::abort();
    std::vector<uint8_t> back(expected);
    if (!(*d)->Decompress(std::span<const uint8_t>(out.data(), *n), back, expected).ok() ||
        back != dst) {
      std::abort();
    }
  }
  return 0;
}
