// ImageRandomReader: random access to the device bytes stored in an image FILE.
//
// Built on the seek table (LoadImageIndex): a read decodes only the chunks it touches. Each
// chunk frame is read with pread, decoded, and checked against its XXH3-128 in the trailer
// before any of its bytes are handed out; a chunk that fails (bad frame, wrong length, hash
// mismatch) makes every read touching it fail with kIntegrity, naming the chunk — it never
// yields wrong data. Other chunks stay readable.
//
// Decoded chunks are kept in a small LRU cache. A chunk whose trailer hash is the hash of
// all zeros is served from one shared zero buffer without reading its frame: the trailer
// (itself hash-checked when the index is loaded) already says what the chunk holds.
//
// Thread-safety: Read() may be called from any number of threads at once. Two threads
// wanting the same chunk decode it once (the second waits for the first). Memory is
// bounded by (cache_chunks + concurrent readers) × chunk_bytes.
#ifndef HOTSNAP_IO_IMAGE_RANDOM_READER_H_
#define HOTSNAP_IO_IMAGE_RANDOM_READER_H_

#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "io/chunk_codec.h"
#include "io/image_index.h"

namespace hotsnap {

struct RandomReaderOptions {
  size_t cache_chunks = 16;  // decoded chunks kept (16 × 4 MiB = 64 MiB at most)
};

struct RandomReaderStats {
  uint64_t chunks_decoded = 0;   // frames read and decompressed
  uint64_t cache_hits = 0;
  uint64_t zero_chunks_served = 0;
  uint64_t integrity_failures = 0;
};

class ImageRandomReader {
 public:
  // Opens `path`, which must be a regular file holding an image ("-" and pipes are
  // refused with kUnsupported: random access needs a file), and loads its index.
  static Result<std::unique_ptr<ImageRandomReader>> Open(const std::string& path,
                                                         const RandomReaderOptions& options = {});
  ~ImageRandomReader();
  ImageRandomReader(const ImageRandomReader&) = delete;
  ImageRandomReader& operator=(const ImageRandomReader&) = delete;

  const ImageMetadata& meta() const { return index_.meta; }
  const ImageIndex& index() const { return index_; }
  const std::string& name() const { return name_; }
  // The declared device size in bytes; no read goes past it.
  uint64_t device_bytes() const { return index_.meta.device_bytes; }

  // Copies device bytes [offset, offset + length) into `dst`, clipped at device_bytes();
  // returns how many bytes were copied (0 at or past the end). Fails with kIntegrity if a
  // chunk in the range is corrupt, kSource if the image file cannot be read.
  Result<size_t> Read(uint64_t offset, size_t length, void* dst);

  RandomReaderStats stats() const;

 private:
  using ChunkData = std::shared_ptr<const std::vector<uint8_t>>;
  ImageRandomReader(std::string name, UniqueFd fd, ImageIndex index, const RandomReaderOptions& options);

  // The decoded, verified bytes of chunk `chunk` (from the cache, or decoded now).
  Result<ChunkData> GetChunk(uint64_t chunk);
  // Reads, decodes and verifies one chunk; called without the lock held.
  Result<ChunkData> DecodeChunk(uint64_t chunk);
  Result<std::unique_ptr<ChunkDecompressor>> TakeDecompressor();
  void ReturnDecompressor(std::unique_ptr<ChunkDecompressor> d);
  void InsertLocked(uint64_t chunk, ChunkData data);

  const std::string name_;
  const UniqueFd fd_;
  const ImageIndex index_;
  const RandomReaderOptions options_;
  Hash128 zero_hash_full_;  // hash of chunk_bytes zeros
  Hash128 zero_hash_last_;  // hash of the last (maybe short) chunk's length of zeros
  ChunkData zeros_;         // chunk_bytes of zeros, shared by every zero chunk

  mutable std::mutex mu_;
  std::condition_variable decoded_;                   // signalled when a decode finishes
  std::list<std::pair<uint64_t, ChunkData>> lru_;     // front = most recently used
  std::map<uint64_t, std::list<std::pair<uint64_t, ChunkData>>::iterator> cached_;
  std::set<uint64_t> decoding_;                       // chunks some thread is decoding now
  std::vector<std::unique_ptr<ChunkDecompressor>> idle_decompressors_;
  RandomReaderStats stats_;
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_IMAGE_RANDOM_READER_H_
