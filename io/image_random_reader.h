// ImageRandomReader: random access to the device bytes stored in an image FILE.
//
// Built on the seek table (LoadImageIndex): a read decodes only the chunks it touches. A
// delta image is read through its chain (io/image_chain.h): each chunk from the newest image
// that holds a frame of it, checked against the newest image's hash of it. Each
// chunk frame is read with pread, decoded, and checked against its XXH3-128 in the trailer
// before any of its bytes are handed out; a chunk that fails (bad frame, wrong length, hash
// mismatch) makes every read touching it fail with kIntegrity, naming the chunk — it never
// yields wrong data. Other chunks stay readable.
//
// Decoded chunks are kept in a small LRU cache. A chunk whose trailer hash is the hash of
// all zeros is served from one shared zero buffer without reading its frame: the trailer
// (itself hash-checked when the index is loaded) already says what the chunk holds.
//
// Frames are read with O_DIRECT where the image's filesystem allows it (through the page
// cache otherwise, and always with RandomReaderOptions::direct_reads false): each is read
// once and decoded at once, so the page cache would only add a copy and the cost of filling
// and reclaiming it.
//
// Read-ahead (RandomReaderOptions::readahead_chunks, off by default): when reads move from
// one chunk to the next, the following chunks are decoded (and hash-checked) on background
// threads, so a single sequential reader such as `hotsnap cat` finds them in the cache
// instead of waiting for the decoder. Random reads start no read-ahead. A chunk that fails
// in the background is not cached; the read that wants it decodes it again and gets the
// error.
//
// Decoded chunks live in page-aligned buffers that are reused, never zeroed first: a
// decode costs the decompression and the hash, not an allocation and its page faults.
//
// Thread-safety: Read() and Pin() may be called from any number of threads at once. Two
// threads wanting the same chunk decode it once (the second waits for the first). Memory
// is bounded by (cache_chunks + chunks being decoded + chunks pinned after leaving the
// cache) × chunk_bytes, plus one frame buffer per decoder (one per thread decoding at
// once). The destructor waits for the read-ahead threads; no Read()/Pin() may run then,
// but PinnedBytes may outlive the reader.
#ifndef HOTSNAP_IO_IMAGE_RANDOM_READER_H_
#define HOTSNAP_IO_IMAGE_RANDOM_READER_H_

#include <sys/uio.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "io/aligned_buffer.h"
#include "io/chunk_codec.h"
#include "io/image_chain.h"
#include "io/image_index.h"

namespace hotsnap {

struct RandomReaderOptions {
  size_t cache_chunks = 16;      // decoded chunks kept (16 × 4 MiB = 64 MiB at most)
  size_t readahead_chunks = 0;   // chunks decoded ahead of a sequential reader; 0: none.
                                 // At most cache_chunks / 2: they wait in the cache.
  size_t readahead_threads = 2;  // background decoders (at most readahead_chunks)
  ChainOptions chain;            // where a delta image's parents are (io/image_chain.h)
  bool direct_reads = true;      // frames with O_DIRECT where allowed; false: through the
                                 // page cache (a few scattered frames of a cached image)
};

struct RandomReaderStats {
  uint64_t chunks_decoded = 0;      // frames read and decompressed, in readers or ahead
  uint64_t readahead_decoded = 0;   // of those, decoded by the read-ahead threads
  uint64_t readahead_queued = 0;    // chunks put on the read-ahead queue (counted when queued,
                                    // so a test can see "nothing will be decoded ahead" at once)
  uint64_t cache_hits = 0;
  uint64_t zero_chunks_served = 0;
  uint64_t integrity_failures = 0;
  uint64_t frames_read_direct = 0;  // frames read with O_DIRECT rather than through the page cache
};

class DecodedChunk;

// Device bytes handed out without a copy: `pieces` point into decoded chunks that stay
// alive (and unchanged) as long as this object does. Move-only in practice; cheap to
// destroy from any thread.
struct PinnedBytes {
  std::vector<iovec> pieces;
  std::vector<std::shared_ptr<const DecodedChunk>> chunks;
  size_t bytes = 0;
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
  const ImageChain& chain() const { return chain_; }
  const std::string& name() const { return name_; }
  // The declared device size in bytes; no read goes past it.
  uint64_t device_bytes() const { return index_.meta.device_bytes; }

  // Copies device bytes [offset, offset + length) into `dst`, clipped at device_bytes();
  // returns how many bytes were copied (0 at or past the end). Fails with kIntegrity if a
  // chunk in the range is corrupt, kSource if the image file cannot be read.
  Result<size_t> Read(uint64_t offset, size_t length, void* dst);

  // Like Read, but instead of copying, points `out` at the decoded bytes (clipped the same
  // way; out->bytes says how many). On failure `out` holds nothing.
  Status Pin(uint64_t offset, size_t length, PinnedBytes* out);

  RandomReaderStats stats() const;

 private:
  using ChunkData = std::shared_ptr<const DecodedChunk>;
  class BufferPool;
  struct Decoder;
  ImageRandomReader(std::string name, ImageChain chain, const RandomReaderOptions& options,
                    AlignedBuffer zeros);

  // The decoded, verified bytes of chunk `chunk` (from the cache, or decoded now).
  Result<ChunkData> GetChunk(uint64_t chunk);
  bool IsZeroChunk(uint64_t chunk) const;
  // Reads, decodes and verifies one chunk; called without the lock held.
  Result<ChunkData> DecodeChunk(uint64_t chunk);
  Result<std::unique_ptr<Decoder>> TakeDecoder();
  void ReturnDecoder(std::unique_ptr<Decoder> d);
  void InsertLocked(uint64_t chunk, ChunkData data);
  // Called when a reader enters `chunk`: queues the next chunks if it came from the one before.
  void NoteAccessLocked(uint64_t chunk);
  void ReadAheadLoop();
  // Reads the frame at image bytes [offset, offset + bytes) into `buffer`; `*frame` points
  // at its first byte there.
  Status ReadFrame(size_t link, uint64_t offset, uint32_t bytes, const AlignedBuffer& buffer,
                   const uint8_t** frame);

  const std::string name_;
  const ImageChain chain_;
  std::vector<UniqueFd> direct_fds_;          // each link with O_DIRECT, if its filesystem allows it
  std::atomic<bool> direct_reads_work_{true};  // false after a direct read failed with EINVAL
  std::atomic<uint64_t> direct_frames_{0};
  const ImageIndex index_;
  const RandomReaderOptions options_;
  Hash128 zero_hash_full_;  // hash of chunk_bytes zeros
  Hash128 zero_hash_last_;  // hash of the last (maybe short) chunk's length of zeros
  ChunkData zeros_;         // chunk_bytes of zeros, shared by every zero chunk
  std::shared_ptr<BufferPool> buffers_;

  mutable std::mutex mu_;
  std::condition_variable decoded_;                   // signalled when a decode finishes
  std::list<std::pair<uint64_t, ChunkData>> lru_;     // front = most recently used
  std::map<uint64_t, std::list<std::pair<uint64_t, ChunkData>>::iterator> cached_;
  std::set<uint64_t> decoding_;                       // chunks some thread is decoding now
  std::vector<std::unique_ptr<Decoder>> idle_decoders_;
  RandomReaderStats stats_;

  // Read-ahead state, under mu_.
  uint64_t last_chunk_ = UINT64_MAX;      // the chunk the latest reader entered
  std::deque<uint64_t> readahead_queue_;  // chunks to decode ahead, nearest first
  std::condition_variable readahead_work_;
  bool stopping_ = false;
  std::vector<std::thread> readahead_threads_;  // started on the first sequential access
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_IMAGE_RANDOM_READER_H_
