// libFuzzer target: random access to an image file (LoadImageIndex from the seek table,
// then ImageRandomReader reads), from an in-memory file; when the index loads, the whole
// image is also scanned with the index's trailer as the expected one (restore from a file).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "io/image_index.h"
#include "io/image_random_reader.h"
#include "io/image_scanner.h"
#include "tests/fuzz/fuzz_util.h"

using namespace hotsnap;

namespace {

void Check(const std::string& image) {
  UniqueFd fd = fuzz::MemFile(reinterpret_cast<const uint8_t*>(image.data()), image.size());
  auto index = LoadImageIndex(fd.get(), "fuzz");
  if (!index.ok()) return;
  if (index->chunk_offsets.size() != index->meta.chunk_count()) std::abort();
  for (size_t i = 0; i < index->chunk_offsets.size(); ++i) {
    if (index->chunk_offsets[i] + index->chunk_frame_bytes[i] > index->image_bytes) std::abort();
  }
  ::lseek(fd.get(), 0, SEEK_SET);
  (void)ScanImage(fd.get(), "fuzz", &index->trailer, nullptr);

  auto reader = ImageRandomReader::Open("/proc/self/fd/" + std::to_string(fd.get()));
  if (!reader.ok()) return;
  std::vector<uint8_t> buf(8192);
  uint64_t device = (*reader)->device_bytes();
  for (uint64_t at : {uint64_t{0}, device / 2, device > 100 ? device - 100 : 0, device + 5}) {
    auto n = (*reader)->Read(at, buf.size(), buf.data());
    if (n.ok() && *n > buf.size()) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string image(reinterpret_cast<const char*>(data), size);
  Check(image);
  std::string fixed = fuzz::FixSelfHashes(image);
  if (fixed != image) Check(fixed);
  return 0;
}
