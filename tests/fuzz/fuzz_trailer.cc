// libFuzzer target: the trailer payload (DecodeTrailerPayload), raw and with its self-hash
// fixed up so the geometry, count and layout checks are reached.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/image_format.h"
#include "tests/fuzz/fuzz_util.h"

using namespace hotsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)DecodeTrailerPayload(std::span<const uint8_t>(data, size));
  std::string payload(reinterpret_cast<const char*>(data), size);
  fuzz::FixPayloadHash(&payload, 0, payload.size());
  auto t = DecodeTrailerPayload(fuzz::AsSpan(payload));
  if (!t.ok()) return 0;
  uint64_t count = (t->device_bytes + t->chunk_bytes - 1) / t->chunk_bytes;
  if (t->chunk_hashes.size() != count ||
      (t->layout == Layout::kTracked && t->final_frames.size() != count)) {
    std::abort();
  }
  // Re-encoding gives back the same payload.
  std::string frame = EncodeTrailerFrame(t.value());
  if (frame.compare(kSkippableHeaderBytes, std::string::npos, payload) != 0) std::abort();
  return 0;
}
