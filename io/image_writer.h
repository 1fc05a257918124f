// ImageWriter: lays out an image on a Sink strictly sequentially (no seeks), so it works
// on pipes. It does not compress; it receives finished chunk frames in chunk order.
//
// Usage: Begin(meta); AppendChunk(...) once per chunk, in order; for the tracked layout,
// any number of rounds: BeginRound(header) then AppendRecopy(...) for each listed chunk;
// Finish(report). Not thread-safe.
#ifndef HOTSNAP_IO_IMAGE_WRITER_H_
#define HOTSNAP_IO_IMAGE_WRITER_H_

#include <xxhash.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"
#include "io/image_format.h"
#include "io/sink.h"

namespace hotsnap {

class ImageWriter {
 public:
  explicit ImageWriter(Sink* sink);  // `sink` must outlive the writer
  ~ImageWriter();
  ImageWriter(const ImageWriter&) = delete;
  ImageWriter& operator=(const ImageWriter&) = delete;

  // Delta layout: `base_hashes` are the parent's XXH3-128 of every chunk (its trailer's); a
  // chunk whose hash equals its parent's is recorded as the parent's and writes no frame
  // (AppendChunk may then be given an empty frame). Empty for other layouts.
  Status Begin(const ImageMetadata& meta, std::vector<Hash128> base_hashes = {});
  // `frame`: the chunk's complete zstd frame; `hash`: XXH3-128 of its uncompressed bytes.
  // Delta layout: a changed chunk's frame follows a round header (round 0) naming it.
  Status AppendChunk(std::span<const uint8_t> frame, uint32_t decompressed_bytes, const Hash128& hash);
  // Tracked layout: announces the chunks whose new frames follow, in that order.
  Status BeginRound(const RoundHeader& round);
  Status AppendRecopy(uint64_t index, std::span<const uint8_t> frame, uint32_t decompressed_bytes,
                      const Hash128& hash);
  // Writes the report, trailer and seek table. Fails if fewer chunks than the metadata
  // declares, or a round is incomplete.
  Status Finish(const RunReport& report = {});

  // Where the newest frame of chunk `index` lies in the bytes written so far (tracked
  // layout: the last re-copy, or the first pass), so a caller can read it back from the
  // sink. Fails for a chunk not written yet, and (kUnsupported) for a delta image's chunk that
  // is the parent's.
  struct FrameLocation {
    uint64_t offset_bytes = 0;  // from the first byte of the image
    uint32_t frame_bytes = 0;
    uint32_t decompressed_bytes = 0;
    Hash128 hash;  // of the decompressed bytes
  };
  Result<FrameLocation> LatestFrame(uint64_t index) const;

  uint64_t bytes_written() const { return bytes_written_; }
  uint64_t chunks_written() const { return trailer_.chunk_hashes.size(); }
  // Delta layout: chunks stored here, and chunks left to the parent.
  uint64_t changed_chunks() const { return changed_chunks_; }
  uint64_t unchanged_chunks() const { return unchanged_chunks_; }
  // The parent's hash of chunk `index` (delta layout), or nullptr.
  const Hash128* base_hash(uint64_t index) const {
    return index < base_hashes_.size() ? &base_hashes_[index] : nullptr;
  }
  const Hash128& image_hash() const { return trailer_.image_hash; }

 private:
  Status Put(const void* data, size_t bytes, bool hashed);

  Sink* sink_;
  ImageMetadata meta_;
  Trailer trailer_;
  std::vector<SeekEntry> entries_;
  XXH3_state_t* hash_state_;
  uint64_t bytes_written_ = 0;
  uint64_t initial_chunks_ = 0;
  RoundHeader round_;
  size_t round_next_ = 0;
  std::vector<uint64_t> latest_offsets_;  // per chunk: image offset of its newest frame
  std::vector<Hash128> base_hashes_;      // delta layout: the parent's chunk hashes
  uint64_t changed_chunks_ = 0;
  uint64_t unchanged_chunks_ = 0;
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_IMAGE_WRITER_H_
