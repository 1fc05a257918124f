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

  Status Begin(const ImageMetadata& meta);
  // `frame`: the chunk's complete zstd frame; `hash`: XXH3-128 of its uncompressed bytes.
  Status AppendChunk(std::span<const uint8_t> frame, uint32_t decompressed_bytes, const Hash128& hash);
  // Tracked layout: announces the chunks whose new frames follow, in that order.
  Status BeginRound(const RoundHeader& round);
  Status AppendRecopy(uint64_t index, std::span<const uint8_t> frame, uint32_t decompressed_bytes,
                      const Hash128& hash);
  // Writes the report, trailer and seek table. Fails if fewer chunks than the metadata
  // declares, or a round is incomplete.
  Status Finish(const RunReport& report = {});

  uint64_t bytes_written() const { return bytes_written_; }
  uint64_t chunks_written() const { return trailer_.chunk_hashes.size(); }
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
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_IMAGE_WRITER_H_
