#include "io/image_writer.h"

namespace hotsnap {

ImageWriter::ImageWriter(Sink* sink) : sink_(sink), hash_state_(XXH3_createState()) {
  XXH3_128bits_reset(hash_state_);
}

ImageWriter::~ImageWriter() { XXH3_freeState(hash_state_); }

Status ImageWriter::Put(const void* data, size_t bytes, bool hashed) {
  if (hashed) XXH3_128bits_update(hash_state_, data, bytes);
  HOTSNAP_RETURN_IF_ERROR(sink_->Write(data, bytes));
  bytes_written_ += bytes;
  return Status::Ok();
}

Status ImageWriter::Begin(const ImageMetadata& meta) {
  meta_ = meta;
  trailer_.chunk_bytes = meta.chunk_bytes;
  trailer_.device_bytes = meta.device_bytes;
  trailer_.chunk_hashes.reserve(meta.chunk_count());
  entries_.reserve(meta.chunk_count() + 2);
  std::string frame = EncodeMetadataFrame(meta);
  entries_.push_back(SeekEntry{static_cast<uint32_t>(frame.size()), 0});
  return Put(frame.data(), frame.size(), true);
}

Status ImageWriter::AppendChunk(std::span<const uint8_t> frame, uint32_t decompressed_bytes,
                                const Hash128& hash) {
  uint64_t index = trailer_.chunk_hashes.size();
  if (index >= meta_.chunk_count() || decompressed_bytes != meta_.ChunkLength(index)) {
    return Status(Code::kInternal, "chunk " + std::to_string(index) + " does not fit the device layout");
  }
  entries_.push_back(SeekEntry{static_cast<uint32_t>(frame.size()), decompressed_bytes});
  trailer_.chunk_hashes.push_back(hash);
  return Put(frame.data(), frame.size(), true);
}

Status ImageWriter::Finish() {
  if (trailer_.chunk_hashes.size() != meta_.chunk_count()) {
    return Status(Code::kInternal, "image has " + std::to_string(trailer_.chunk_hashes.size()) +
                                       " chunks, expected " + std::to_string(meta_.chunk_count()));
  }
  XXH128_hash_t h = XXH3_128bits_digest(hash_state_);
  trailer_.image_hash = Hash128{h.low64, h.high64};
  std::string trailer = EncodeTrailerFrame(trailer_);
  entries_.push_back(SeekEntry{static_cast<uint32_t>(trailer.size()), 0});
  HOTSNAP_RETURN_IF_ERROR(Put(trailer.data(), trailer.size(), false));
  std::string table = EncodeSeekTableFrame(entries_);
  return Put(table.data(), table.size(), false);
}

}  // namespace hotsnap
