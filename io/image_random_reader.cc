#include "io/image_random_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "io/aligned_buffer.h"

namespace hotsnap {

namespace {

// Alignment of direct reads of the image (file offset, length and memory), in bytes: the
// largest logical block size in common use. Where more is needed, the read fails with
// EINVAL and the reader falls back to the page cache.
constexpr uint64_t kDirectAlign = 4096;

}  // namespace

// The verified bytes of one chunk, in a buffer that goes back to its pool when the last
// shared_ptr to it is dropped.
class DecodedChunk {
 public:
  DecodedChunk(AlignedBuffer buffer, uint32_t length) : buffer_(std::move(buffer)), length_(length) {}
  const uint8_t* data() const { return buffer_.data(); }
  uint32_t length() const { return length_; }
  AlignedBuffer TakeBuffer() { return std::move(buffer_); }

 private:
  AlignedBuffer buffer_;
  uint32_t length_;
};

// Chunk-sized buffers kept for reuse, so that a decode neither maps fresh memory (and
// faults in every page of it) nor zeroes it. Keeps at most `max_idle` unused buffers.
class ImageRandomReader::BufferPool {
 public:
  BufferPool(size_t buffer_bytes, size_t max_idle) : buffer_bytes_(buffer_bytes), max_idle_(max_idle) {}

  Result<AlignedBuffer> Take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        AlignedBuffer b = std::move(idle_.back());
        idle_.pop_back();
        return b;
      }
    }
    return AlignedBuffer::AllocateHuge(buffer_bytes_);
  }

  void Give(AlignedBuffer b) {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < max_idle_) idle_.push_back(std::move(b));
  }

 private:
  const size_t buffer_bytes_;
  const size_t max_idle_;
  std::mutex mu_;
  std::vector<AlignedBuffer> idle_;
};

// One zstd context and the buffer its frames are read into; used by one thread at a time.
struct ImageRandomReader::Decoder {
  std::unique_ptr<ChunkDecompressor> zstd;
  AlignedBuffer frame;
};

Result<std::unique_ptr<ImageRandomReader>> ImageRandomReader::Open(const std::string& path,
                                                                   const RandomReaderOptions& options) {
  if (path == "-" || path.rfind("ssh://", 0) == 0) {
    return Status(Code::kUnsupported, "image " + path + ": random access needs an image file; a stream (- or "
                                      "ssh://) can only be restored in full (hotsnap restore)");
  }
  auto chain = ImageChain::Open(path, options.chain);
  if (!chain.ok()) return chain.status();
  const ImageIndex* index = &chain->newest();
  RandomReaderOptions opts = options;
  opts.cache_chunks = std::max<size_t>(1, opts.cache_chunks);
  // Chunks decoded ahead land in the cache: never more of them than would stay there.
  opts.readahead_chunks = std::min(opts.readahead_chunks, opts.cache_chunks / 2);
  opts.readahead_threads = std::min(std::max<size_t>(1, opts.readahead_threads), opts.readahead_chunks);
  auto zeros = AlignedBuffer::AllocateHuge(index->meta.chunk_bytes);  // never written: reads as zeros
  if (!zeros.ok()) return zeros.status();
  std::unique_ptr<ImageRandomReader> reader(
      new ImageRandomReader(path, std::move(chain.value()), opts, std::move(zeros.value())));
  // Frames are read once each and decoded at once: the page cache would only add a copy
  // and the cost of filling it. Filesystems without O_DIRECT refuse it here (EINVAL).
  for (const ChainLink& link : reader->chain_.links()) {
    reader->direct_fds_.emplace_back(opts.direct_reads ? ::open(link.path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT)
                                                       : -1);
  }
  return reader;
}

ImageRandomReader::ImageRandomReader(std::string name, ImageChain chain,
                                     const RandomReaderOptions& options, AlignedBuffer zeros)
    : name_(std::move(name)), chain_(std::move(chain)), index_(chain_.newest()), options_(options) {
  const uint32_t chunk_bytes = index_.meta.chunk_bytes;
  zero_hash_full_ = HashBytes(zeros.data(), chunk_bytes);
  uint64_t chunks = index_.meta.chunk_count();
  uint32_t last = chunks ? index_.meta.ChunkLength(chunks - 1) : 0;
  zero_hash_last_ = HashBytes(zeros.data(), last);
  zeros_ = std::make_shared<const DecodedChunk>(std::move(zeros), chunk_bytes);
  // Enough idle buffers to refill the cache and the read-ahead without new mappings.
  buffers_ = std::make_shared<BufferPool>(index_.meta.chunk_bytes,
                                          options_.cache_chunks + options_.readahead_chunks + 2);
}

ImageRandomReader::~ImageRandomReader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  readahead_work_.notify_all();
  for (std::thread& t : readahead_threads_) t.join();
}

RandomReaderStats ImageRandomReader::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  RandomReaderStats stats = stats_;
  stats.frames_read_direct = direct_frames_.load(std::memory_order_relaxed);
  return stats;
}

Result<size_t> ImageRandomReader::Read(uint64_t offset, size_t length, void* dst) {
  PinnedBytes pinned;
  HOTSNAP_RETURN_IF_ERROR(Pin(offset, length, &pinned));
  auto* out = static_cast<uint8_t*>(dst);
  for (const iovec& piece : pinned.pieces) {
    std::memcpy(out, piece.iov_base, piece.iov_len);
    out += piece.iov_len;
  }
  return pinned.bytes;
}

Status ImageRandomReader::Pin(uint64_t offset, size_t length, PinnedBytes* out) {
  *out = PinnedBytes();
  const uint64_t end_of_device = device_bytes();
  if (offset >= end_of_device || length == 0) return Status::Ok();
  uint64_t end = std::min<uint64_t>(end_of_device, offset + length);
  const uint64_t chunk_bytes = index_.meta.chunk_bytes;
  uint64_t pos = offset;
  while (pos < end) {
    uint64_t chunk = pos / chunk_bytes;
    uint64_t in_chunk = pos - chunk * chunk_bytes;
    uint64_t n = std::min<uint64_t>(end - pos, index_.meta.ChunkLength(chunk) - in_chunk);
    auto data = GetChunk(chunk);
    if (!data.ok()) {
      *out = PinnedBytes();
      return data.status();
    }
    out->pieces.push_back({const_cast<uint8_t*>((*data)->data() + in_chunk), static_cast<size_t>(n)});
    out->chunks.push_back(std::move(data.value()));
    pos += n;
  }
  out->bytes = static_cast<size_t>(end - offset);
  return Status::Ok();
}

bool ImageRandomReader::IsZeroChunk(uint64_t chunk) const {
  bool last = chunk + 1 == index_.meta.chunk_count();
  return index_.trailer.chunk_hashes[chunk] == (last ? zero_hash_last_ : zero_hash_full_);
}

Result<ImageRandomReader::ChunkData> ImageRandomReader::GetChunk(uint64_t chunk) {
  std::unique_lock<std::mutex> lock(mu_);
  NoteAccessLocked(chunk);
  if (IsZeroChunk(chunk)) {
    ++stats_.zero_chunks_served;
    return zeros_;
  }
  // Wait while another thread (a reader or the read-ahead) decodes this chunk, then take
  // its result from the cache.
  decoded_.wait(lock, [&] { return decoding_.count(chunk) == 0; });
  auto it = cached_.find(chunk);
  if (it != cached_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second);
    ++stats_.cache_hits;
    return it->second->second;
  }
  decoding_.insert(chunk);
  lock.unlock();
  Result<ChunkData> data = DecodeChunk(chunk);
  lock.lock();
  decoding_.erase(chunk);
  if (data.ok()) {
    ++stats_.chunks_decoded;
    InsertLocked(chunk, *data);
  } else if (data.status().code() == Code::kIntegrity) {
    ++stats_.integrity_failures;
  }
  lock.unlock();
  decoded_.notify_all();
  return data;
}

void ImageRandomReader::InsertLocked(uint64_t chunk, ChunkData data) {
  lru_.emplace_front(chunk, std::move(data));
  cached_[chunk] = lru_.begin();
  while (lru_.size() > options_.cache_chunks) {
    cached_.erase(lru_.back().first);
    lru_.pop_back();
  }
}

void ImageRandomReader::NoteAccessLocked(uint64_t chunk) {
  if (chunk == last_chunk_) return;
  // The kernel sends the parts of a sequential read slightly out of order (several FUSE
  // threads), so "came from the chunk before" is the whole test; re-entering a chunk
  // whose successors are cached or in flight queues nothing.
  bool sequential = last_chunk_ != UINT64_MAX && chunk == last_chunk_ + 1;
  last_chunk_ = chunk;
  if (!sequential || options_.readahead_chunks == 0 || stopping_) return;
  readahead_queue_.clear();  // what is still queued is behind this reader now
  const uint64_t count = index_.meta.chunk_count();
  for (uint64_t next = chunk + 1; next <= chunk + options_.readahead_chunks && next < count; ++next) {
    if (IsZeroChunk(next) || cached_.count(next) != 0 || decoding_.count(next) != 0) continue;
    readahead_queue_.push_back(next);
    ++stats_.readahead_queued;
  }
  if (readahead_queue_.empty()) return;
  while (readahead_threads_.size() < options_.readahead_threads) {
    readahead_threads_.emplace_back([this] { ReadAheadLoop(); });
  }
  readahead_work_.notify_all();
}

void ImageRandomReader::ReadAheadLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    readahead_work_.wait(lock, [&] { return stopping_ || !readahead_queue_.empty(); });
    if (stopping_) return;
    uint64_t chunk = readahead_queue_.front();
    readahead_queue_.pop_front();
    if (cached_.count(chunk) != 0 || decoding_.count(chunk) != 0) continue;
    decoding_.insert(chunk);
    lock.unlock();
    Result<ChunkData> data = DecodeChunk(chunk);
    lock.lock();
    decoding_.erase(chunk);
    // A failed chunk is not cached: the reader that wants it decodes it and gets the error.
    if (data.ok()) {
      ++stats_.chunks_decoded;
      ++stats_.readahead_decoded;
      InsertLocked(chunk, std::move(data.value()));
    }
    decoded_.notify_all();
  }
}

Status ImageRandomReader::ReadFrame(size_t link, uint64_t offset, uint32_t bytes,
                                    const AlignedBuffer& buffer, const uint8_t** frame) {
  const UniqueFd& direct_fd = direct_fds_[link];
  if (direct_fd.valid() && direct_reads_work_.load(std::memory_order_relaxed)) {
    // The aligned blocks around the frame (the last one may be cut short by the end of the
    // file); the frame starts `offset - start` bytes into them.
    const uint64_t start = offset / kDirectAlign * kDirectAlign;
    const uint64_t end = (offset + bytes + kDirectAlign - 1) / kDirectAlign * kDirectAlign;
    uint64_t got = 0;
    int err = 0;
    while (start + got < offset + bytes) {
      ssize_t n = ::pread(direct_fd.get(), buffer.data() + got, end - start - got,
                          static_cast<off_t>(start + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) err = errno;
      // An error, the end of the file, or a short read that leaves the next read unaligned:
      // the page cache read below handles (and reports) all of those.
      if (n <= 0 || (n % kDirectAlign != 0 && start + got + n < offset + bytes)) break;
      got += static_cast<uint64_t>(n);
    }
    if (start + got >= offset + bytes) {
      direct_frames_.fetch_add(1, std::memory_order_relaxed);
      *frame = buffer.data() + (offset - start);
      return Status::Ok();
    }
    if (err == EINVAL) direct_reads_work_.store(false, std::memory_order_relaxed);  // alignment not enough
  }
  *frame = buffer.data();
  const ChainLink& l = chain_.links()[link];
  return ReadExactAt(l.fd.get(), l.path, offset, buffer.data(), bytes);
}

Result<ImageRandomReader::ChunkData> ImageRandomReader::DecodeChunk(uint64_t chunk) {
  const size_t link = chain_.LinkOf(chunk);
  const ImageIndex& holder = chain_.links()[link].index;
  const uint64_t frame_offset = holder.chunk_offsets[chunk];
  const uint32_t frame_bytes = holder.ChunkFrameBytes(chunk);
  const uint32_t length = index_.meta.ChunkLength(chunk);
  auto where = [&] {
    const uint64_t device_offset = chunk * index_.meta.chunk_bytes;
    return "image " + chain_.links()[link].path + ": chunk " + std::to_string(chunk) + " (device bytes " +
           std::to_string(device_offset) + ".." + std::to_string(device_offset + length) +
           ", frame at image offset " + std::to_string(frame_offset) + ")";
  };
  if (frame_bytes > MaxFrameBytes(index_.meta.chunk_bytes)) {
    return Status(Code::kIntegrity, where() + ": frame of " + std::to_string(frame_bytes) +
                                        " bytes is larger than any chunk frame can be");
  }
  auto buffer = buffers_->Take();
  if (!buffer.ok()) return buffer.status();
  auto decoder = TakeDecoder();
  if (!decoder.ok()) return decoder.status();
  Decoder& d = **decoder;
  const uint8_t* frame = nullptr;
  Status s = ReadFrame(link, frame_offset, frame_bytes, d.frame, &frame);
  if (s.ok()) {
    s = d.zstd->Decompress({frame, frame_bytes}, buffer->span(), length);
    if (!s.ok()) s = Status(Code::kIntegrity, where() + ": " + s.message());
  }
  ReturnDecoder(std::move(decoder.value()));
  if (s.ok() && !(HashBytes(buffer->data(), length) == index_.trailer.chunk_hashes[chunk])) {
    s = Status(Code::kIntegrity, where() + ": decoded bytes do not match the chunk's XXH3-128 in the trailer");
  }
  if (!s.ok()) {
    buffers_->Give(std::move(buffer.value()));
    return s;
  }
  std::shared_ptr<BufferPool> pool = buffers_;
  return ChunkData(new DecodedChunk(std::move(buffer.value()), length), [pool](DecodedChunk* c) {
    pool->Give(c->TakeBuffer());
    delete c;
  });
}

Result<std::unique_ptr<ImageRandomReader::Decoder>> ImageRandomReader::TakeDecoder() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_decoders_.empty()) {
      std::unique_ptr<Decoder> d = std::move(idle_decoders_.back());
      idle_decoders_.pop_back();
      return d;
    }
  }
  auto zstd = ChunkDecompressor::Create(WindowLogFor(index_.meta.chunk_bytes));
  if (!zstd.ok()) return zstd.status();
  auto frame = AlignedBuffer::AllocateHuge(MaxFrameBytes(index_.meta.chunk_bytes) + 2 * kDirectAlign);
  if (!frame.ok()) return frame.status();
  return std::make_unique<Decoder>(Decoder{std::move(zstd.value()), std::move(frame.value())});
}

void ImageRandomReader::ReturnDecoder(std::unique_ptr<Decoder> d) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_decoders_.push_back(std::move(d));
}

}  // namespace hotsnap
