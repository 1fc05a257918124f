// libFuzzer target: the seek table (DecodeSeekTableFrame, SeekTableFrameBytes), as the
// random-access reader meets it: footer first, then the frame the footer sizes.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "io/image_format.h"

using namespace hotsnap;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  uint8_t descriptor = 0xff;
  auto entries = DecodeSeekTableFrame(in, &descriptor);
  if (size >= kSeekFooterBytes) {
    auto bytes = SeekTableFrameBytes(in.subspan(size - kSeekFooterBytes));
    if (entries.ok() && (!bytes.ok() || *bytes != size)) std::abort();
  }
  if (!entries.ok()) return 0;
  std::string again = EncodeSeekTableFrame(entries.value(), descriptor);
  if (again.size() != size || std::memcmp(again.data(), data, size) != 0) std::abort();
  return 0;
}
