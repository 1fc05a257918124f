// ScanImage: one sequential pass over an image stream that checks everything in it.
//
// Checks, in stream order: the metadata frame (tag, hash, version, geometry); each chunk
// frame (decodes with zstd's content checksum, exact decompressed length, XXH3-128); the
// trailer (self-hash, geometry, every chunk hash, the hash of all bytes before it); the
// seek table (each entry against the frame actually seen); and that nothing follows.
// When `expected` (a trailer read beforehand from a file's end) is given, each chunk is
// checked against it before the visitor sees the chunk; from a pipe the strong hashes
// arrive last, so the visitor sees chunks checked by zstd's frame checksum only, and the
// scan fails at the end if any strong hash disagrees.
//
// Tracked layout: a chunk can appear several times (re-copied in rounds); the last
// appearance is the valid one. With `expected` the visitor sees only each chunk's final
// frame (found through the trailer's frame map); without it, every appearance in stream
// order, so that writing them in order leaves the final content.
//
// Delta layout: only the chunks that differ from the parent are in the stream, each after a
// round header naming it; the visitor sees those alone (the rest are the parent's, which a
// stream cannot reach: restoring a delta takes its file and its parents, io/image_chain.h).
#ifndef HOTSNAP_IO_IMAGE_SCANNER_H_
#define HOTSNAP_IO_IMAGE_SCANNER_H_

#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "base/status.h"
#include "io/image_format.h"

namespace hotsnap {

class ScanVisitor {
 public:
  virtual ~ScanVisitor() = default;
  // Called once, before any chunk; returning an error stops the scan (e.g. a refused target).
  virtual Status OnMetadata(const ImageMetadata& meta) { return Status::Ok(); }
  // Called for each chunk in order. `data` is valid only during the call; `zero` says the
  // chunk is all zeros.
  virtual Status OnChunk(uint64_t index, uint64_t offset_bytes, std::span<const uint8_t> data,
                         bool zero) {
    return Status::Ok();
  }
};

struct ScanResult {
  ImageMetadata meta;
  Trailer trailer;
  RunReport report;
  uint64_t superseded_frames = 0;  // tracked layout: chunk frames replaced by later rounds
  uint64_t image_bytes = 0;
  uint64_t zero_chunks = 0;
  bool verified_before_use = false;  // chunks were checked against strong hashes first
};

Result<ScanResult> ScanImage(int fd, const std::string& name, const Trailer* expected,
                             ScanVisitor* visitor);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_IMAGE_SCANNER_H_
