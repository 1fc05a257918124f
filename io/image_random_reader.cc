#include "io/image_random_reader.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace hotsnap {

Result<std::unique_ptr<ImageRandomReader>> ImageRandomReader::Open(const std::string& path,
                                                                   const RandomReaderOptions& options) {
  if (path == "-" || path.rfind("ssh://", 0) == 0) {
    return Status(Code::kUnsupported, "image " + path + ": random access needs an image file; a stream (- or "
                                      "ssh://) can only be restored in full (hotsnap restore)");
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(Code::kSource, errno, "opening image " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno(Code::kSource, errno, "stat " + path);
  if (!S_ISREG(st.st_mode)) {
    return Status(Code::kUnsupported, "image " + path + " is not a regular file; random access needs a "
                                      "file with a seek table (a pipe can only be restored in full)");
  }
  auto index = LoadImageIndex(fd.get(), path);
  if (!index.ok()) return index.status();
  RandomReaderOptions opts = options;
  opts.cache_chunks = std::max<size_t>(1, opts.cache_chunks);
  return std::unique_ptr<ImageRandomReader>(
      new ImageRandomReader(path, std::move(fd), std::move(index.value()), opts));
}

ImageRandomReader::ImageRandomReader(std::string name, UniqueFd fd, ImageIndex index,
                                     const RandomReaderOptions& options)
    : name_(std::move(name)), fd_(std::move(fd)), index_(std::move(index)), options_(options) {
  auto zeros = std::make_shared<std::vector<uint8_t>>(index_.meta.chunk_bytes, 0);
  zero_hash_full_ = HashBytes(zeros->data(), zeros->size());
  uint64_t chunks = index_.meta.chunk_count();
  uint32_t last = chunks ? index_.meta.ChunkLength(chunks - 1) : 0;
  zero_hash_last_ = HashBytes(zeros->data(), last);
  zeros_ = std::move(zeros);
}

ImageRandomReader::~ImageRandomReader() = default;

RandomReaderStats ImageRandomReader::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

Result<size_t> ImageRandomReader::Read(uint64_t offset, size_t length, void* dst) {
  const uint64_t end_of_device = device_bytes();
  if (offset >= end_of_device || length == 0) return size_t{0};
  uint64_t end = std::min<uint64_t>(end_of_device, offset + length);
  const uint64_t chunk_bytes = index_.meta.chunk_bytes;
  auto* out = static_cast<uint8_t*>(dst);
  uint64_t pos = offset;
  while (pos < end) {
    uint64_t chunk = pos / chunk_bytes;
    uint64_t in_chunk = pos - chunk * chunk_bytes;
    uint64_t n = std::min<uint64_t>(end - pos, index_.meta.ChunkLength(chunk) - in_chunk);
    auto data = GetChunk(chunk);
    if (!data.ok()) return data.status();
    std::memcpy(out, (*data)->data() + in_chunk, n);
    out += n;
    pos += n;
  }
  return static_cast<size_t>(end - offset);
}

Result<ImageRandomReader::ChunkData> ImageRandomReader::GetChunk(uint64_t chunk) {
  const Hash128& expected = index_.trailer.chunk_hashes[chunk];
  bool last = chunk + 1 == index_.meta.chunk_count();
  if (expected == (last ? zero_hash_last_ : zero_hash_full_)) {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.zero_chunks_served;
    return zeros_;
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    // Wait while another thread decodes this chunk, then take its result from the cache.
    decoded_.wait(lock, [&] { return decoding_.count(chunk) == 0; });
    auto it = cached_.find(chunk);
    if (it != cached_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      ++stats_.cache_hits;
      return it->second->second;
    }
    decoding_.insert(chunk);
  }
  Result<ChunkData> data = DecodeChunk(chunk);
  {
    std::lock_guard<std::mutex> lock(mu_);
    decoding_.erase(chunk);
    if (data.ok()) {
      ++stats_.chunks_decoded;
      InsertLocked(chunk, *data);
    } else if (data.status().code() == Code::kIntegrity) {
      ++stats_.integrity_failures;
    }
  }
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

Result<ImageRandomReader::ChunkData> ImageRandomReader::DecodeChunk(uint64_t chunk) {
  const uint64_t frame_offset = index_.chunk_offsets[chunk];
  const uint32_t frame_bytes = index_.ChunkFrameBytes(chunk);
  const uint32_t length = index_.meta.ChunkLength(chunk);
  const uint64_t device_offset = chunk * index_.meta.chunk_bytes;
  const std::string where = "image " + name_ + ": chunk " + std::to_string(chunk) + " (device bytes " +
                            std::to_string(device_offset) + ".." + std::to_string(device_offset + length) +
                            ", frame at image offset " + std::to_string(frame_offset) + ")";
  if (frame_bytes > MaxFrameBytes(index_.meta.chunk_bytes)) {
    return Status(Code::kIntegrity, where + ": frame of " + std::to_string(frame_bytes) +
                                        " bytes is larger than any chunk frame can be");
  }
  std::vector<uint8_t> frame(frame_bytes);
  HOTSNAP_RETURN_IF_ERROR(ReadExactAt(fd_.get(), name_, frame_offset, frame.data(), frame.size()));
  auto decompressor = TakeDecompressor();
  if (!decompressor.ok()) return decompressor.status();
  auto data = std::make_shared<std::vector<uint8_t>>(length);
  Status s = (*decompressor)->Decompress(frame, *data, length);
  ReturnDecompressor(std::move(decompressor.value()));
  if (!s.ok()) return Status(Code::kIntegrity, where + ": " + s.message());
  if (!(HashBytes(data->data(), data->size()) == index_.trailer.chunk_hashes[chunk])) {
    return Status(Code::kIntegrity, where + ": decoded bytes do not match the chunk's XXH3-128 in the trailer");
  }
  return ChunkData(std::move(data));
}

Result<std::unique_ptr<ChunkDecompressor>> ImageRandomReader::TakeDecompressor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_decompressors_.empty()) {
      std::unique_ptr<ChunkDecompressor> d = std::move(idle_decompressors_.back());
      idle_decompressors_.pop_back();
      return d;
    }
  }
  return ChunkDecompressor::Create(WindowLogFor(index_.meta.chunk_bytes));
}

void ImageRandomReader::ReturnDecompressor(std::unique_ptr<ChunkDecompressor> d) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_decompressors_.push_back(std::move(d));
}

}  // namespace hotsnap
