// libFuzzer target: the report and round-header payloads (DecodeReportPayload,
// DecodeRoundPayload). The first byte picks which; the rest is the payload, decoded raw and
// with its self-hash fixed up.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/image_format.h"
#include "tests/fuzz/fuzz_util.h"

using namespace hotsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  bool round = data[0] & 1;
  uint64_t chunk_count = (data[0] >> 1) * 1000u;  // 0 .. 127000
  std::string payload(reinterpret_cast<const char*>(data + 1), size - 1);
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) fuzz::FixPayloadHash(&payload, 0, payload.size());
    if (round) {
      auto r = DecodeRoundPayload(fuzz::AsSpan(payload), chunk_count);
      if (r.ok()) {
        for (uint32_t c : r->chunks) {
          if (c >= chunk_count) std::abort();
        }
      }
    } else {
      auto r = DecodeReportPayload(fuzz::AsSpan(payload));
      if (r.ok()) (void)EncodeReportFrame(r.value());
    }
  }
  return 0;
}
