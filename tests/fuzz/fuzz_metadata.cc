// libFuzzer target: the metadata frame's payload (DecodeMetadataPayload).
// The input is decoded as a raw payload, and again as the JSON body of a payload with a
// valid tag, version and hash, so mutations of the JSON reach the field checks. A payload
// that decodes must survive an encode/decode round trip unchanged.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "io/image_format.h"
#include "tests/fuzz/fuzz_util.h"

using namespace hotsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)DecodeMetadataPayload(std::span<const uint8_t>(data, size));

  std::string payload("HSNPMETA");
  AppendLe32(&payload, kFormatVersion);
  payload.append(reinterpret_cast<const char*>(data), size);
  payload.append(16, '\0');
  fuzz::FixPayloadHash(&payload, 0, payload.size());
  auto meta = DecodeMetadataPayload(fuzz::AsSpan(payload));
  if (!meta.ok()) return 0;
  // What decoded is within the documented bounds...
  if (meta->device_bytes > kMaxDeviceBytes || meta->chunk_bytes < kMinChunkBytes ||
      meta->chunk_bytes > kMaxChunkBytes || meta->chunk_count() > kMaxSeekFrames) {
    std::abort();
  }
  // ...and re-encodes to the same metadata.
  std::string frame = EncodeMetadataFrame(meta.value());
  auto again = DecodeMetadataPayload(fuzz::AsSpan(frame).subspan(kSkippableHeaderBytes));
  if (!again.ok() || again->device_bytes != meta->device_bytes ||
      again->chunk_bytes != meta->chunk_bytes || again->layout != meta->layout ||
      again->source_path != meta->source_path) {
    std::abort();
  }
  return 0;
}
