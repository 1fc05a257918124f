// Helpers shared by the libFuzzer targets in tests/fuzz.
//
// A fuzzer cannot forge the XXH3-128 self-hashes that end every hotsnap skippable frame,
// so it would never get past them. FixSelfHashes() walks an image the way the readers do and
// recomputes the trailing hash of each hotsnap frame (metadata, round, report, trailer), so
// the mutated fields behind the hash reach the decoders. Targets feed both the raw input and
// the fixed-up one.
#ifndef HOTSNAP_TESTS_FUZZ_FUZZ_UTIL_H_
#define HOTSNAP_TESTS_FUZZ_FUZZ_UTIL_H_

#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "io/image_format.h"

namespace hotsnap::fuzz {

inline std::span<const uint8_t> AsSpan(const std::string& s) {
  return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// Rewrites the last 16 bytes of `payload` (at [begin, begin + bytes) of `s`) with the
// XXH3-128 of the bytes before them, as the encoders do.
inline void FixPayloadHash(std::string* s, size_t begin, size_t bytes) {
  if (bytes < 16) return;
  Hash128 h = HashBytes(s->data() + begin, bytes - 16);
  for (int i = 0; i < 8; ++i) {
    (*s)[begin + bytes - 16 + i] = static_cast<char>(h.low >> (8 * i));
    (*s)[begin + bytes - 8 + i] = static_cast<char>(h.high >> (8 * i));
  }
}

// Recomputes the self-hash of every hotsnap skippable frame (payload tag "HSNP...").
inline std::string FixSelfHashes(std::string image) {
  size_t at = 0;
  while (at + 8 <= image.size()) {
    const auto* p = reinterpret_cast<const uint8_t*>(image.data()) + at;
    uint32_t magic = LoadLe32(p);
    if (at == 0 && IsPoisonFrame(std::span<const uint8_t>(p, std::min<size_t>(13, image.size())))) {
      at += sizeof(kPoisonFrame);
    } else if ((magic & kSkippableMagicMask) == kSkippableMagicBase) {
      uint64_t payload = LoadLe32(p + 4);
      if (at + 8 + payload > image.size()) break;
      if (payload >= 12 + 16 && std::memcmp(p + 8, "HSNP", 4) == 0) {
        FixPayloadHash(&image, at + 8, payload);
      }
      at += 8 + payload;
    } else if (magic == kZstdFrameMagic) {
      size_t n = ZSTD_findFrameCompressedSize(p, image.size() - at);
      if (ZSTD_isError(n)) break;
      at += n;
    } else {
      break;
    }
  }
  return image;
}

// An in-memory file holding `bytes`, positioned at offset 0.
inline UniqueFd MemFile(const uint8_t* data, size_t size) {
  UniqueFd fd(::memfd_create("fuzz-image", MFD_CLOEXEC));
  if (!fd.valid()) std::abort();
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::write(fd.get(), data + done, size - done);
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  ::lseek(fd.get(), 0, SEEK_SET);
  return fd;
}

}  // namespace hotsnap::fuzz

#endif  // HOTSNAP_TESTS_FUZZ_FUZZ_UTIL_H_
