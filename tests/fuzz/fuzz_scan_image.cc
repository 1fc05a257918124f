// libFuzzer target: a whole image read as a stream (FrameReader + ScanImage), as restore and
// verify read stdin, from an in-memory file. Fed raw and with every frame's self-hash fixed
// up. A scan that succeeds must report what the metadata declares.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "io/image_scanner.h"
#include "tests/fuzz/fuzz_util.h"

using namespace hotsnap;

namespace {

// Touches every byte handed out, so ASan sees a span pointing outside its buffer: its memcmp
// interceptor checks both whole ranges (a byte loop here, instrumented for coverage, cost more
// than the scan itself).
class TouchingVisitor : public ScanVisitor {
 public:
  Status OnChunk(uint64_t index, uint64_t offset, std::span<const uint8_t> data, bool zero) override {
    if (data.empty()) return Status::Ok();
    bool all_zero = data[0] == 0 && std::memcmp(data.data(), data.data() + 1, data.size() - 1) == 0;
    if (zero && !all_zero) std::abort();  // "zero" must mean all zeros
    return Status::Ok();
  }
};

void Scan(const std::string& image) {
  UniqueFd fd = fuzz::MemFile(reinterpret_cast<const uint8_t*>(image.data()), image.size());
  TouchingVisitor visitor;
  auto r = ScanImage(fd.get(), "fuzz", nullptr, &visitor);
  if (r.ok() && r->image_bytes != image.size()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string image(reinterpret_cast<const char*>(data), size);
  Scan(image);
  std::string fixed = fuzz::FixSelfHashes(image);
  if (fixed != image) Scan(fixed);
  return 0;
}
