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

Status ImageWriter::Begin(const ImageMetadata& meta, std::vector<Hash128> base_hashes) {
  if ((meta.layout == Layout::kDelta) != (base_hashes.size() == meta.chunk_count() && meta.base)) {
    return Status(Code::kInternal, "a delta image needs its parent's hash of every chunk, and only it");
  }
  meta_ = meta;
  base_hashes_ = std::move(base_hashes);
  trailer_.chunk_bytes = meta.chunk_bytes;
  trailer_.device_bytes = meta.device_bytes;
  trailer_.layout = meta.layout;
  trailer_.chunk_hashes.reserve(meta.chunk_count());
  latest_offsets_.reserve(meta.chunk_count());
  entries_.reserve(meta.chunk_count() + 4);
  if (HasFrameMap(meta.layout)) {
    trailer_.final_frames.reserve(meta.chunk_count());
    entries_.push_back(SeekEntry{sizeof(kPoisonFrame), 0});
    HOTSNAP_RETURN_IF_ERROR(Put(kPoisonFrame, sizeof(kPoisonFrame), true));
  }
  std::string frame = EncodeMetadataFrame(meta);
  entries_.push_back(SeekEntry{static_cast<uint32_t>(frame.size()), 0});
  return Put(frame.data(), frame.size(), true);
}

Status ImageWriter::AppendChunk(std::span<const uint8_t> frame, uint32_t decompressed_bytes,
                                const Hash128& hash) {
  uint64_t index = initial_chunks_;
  if (index >= meta_.chunk_count() || decompressed_bytes != meta_.ChunkLength(index)) {
    return Status(Code::kInternal, "chunk " + std::to_string(index) + " does not fit the device layout");
  }
  if (meta_.layout == Layout::kDelta) {
    trailer_.chunk_hashes.push_back(hash);
    ++initial_chunks_;
    if (hash == base_hashes_[index]) {  // the parent's: no frame here
      trailer_.final_frames.push_back(kFrameInBase);
      latest_offsets_.push_back(UINT64_MAX);
      ++unchanged_chunks_;
      return Status::Ok();
    }
    if (frame.empty()) {
      return Status(Code::kInternal, "chunk " + std::to_string(index) + " differs from the parent but has no frame");
    }
    ++changed_chunks_;
    std::string header = EncodeRoundFrame(RoundHeader{0, {static_cast<uint32_t>(index)}});
    entries_.push_back(SeekEntry{static_cast<uint32_t>(header.size()), 0});
    HOTSNAP_RETURN_IF_ERROR(Put(header.data(), header.size(), true));
    trailer_.final_frames.push_back(static_cast<uint32_t>(entries_.size()));
    entries_.push_back(SeekEntry{static_cast<uint32_t>(frame.size()), decompressed_bytes});
    latest_offsets_.push_back(bytes_written_);
    return Put(frame.data(), frame.size(), true);
  }
  if (meta_.layout == Layout::kTracked) trailer_.final_frames.push_back(static_cast<uint32_t>(entries_.size()));
  entries_.push_back(SeekEntry{static_cast<uint32_t>(frame.size()), decompressed_bytes});
  trailer_.chunk_hashes.push_back(hash);
  latest_offsets_.push_back(bytes_written_);
  ++initial_chunks_;
  return Put(frame.data(), frame.size(), true);
}

Status ImageWriter::BeginRound(const RoundHeader& round) {
  if (!HasFrameMap(meta_.layout) || initial_chunks_ != meta_.chunk_count() ||
      round_next_ != round_.chunks.size()) {
    return Status(Code::kInternal, "a round may only start after a complete pass of a tracked image");
  }
  round_ = round;
  round_next_ = 0;
  std::string frame = EncodeRoundFrame(round);
  entries_.push_back(SeekEntry{static_cast<uint32_t>(frame.size()), 0});
  return Put(frame.data(), frame.size(), true);
}

Status ImageWriter::AppendRecopy(uint64_t index, std::span<const uint8_t> frame,
                                 uint32_t decompressed_bytes, const Hash128& hash) {
  if (round_next_ >= round_.chunks.size() || round_.chunks[round_next_] != index ||
      decompressed_bytes != meta_.ChunkLength(index)) {
    return Status(Code::kInternal, "re-copied chunk " + std::to_string(index) +
                                       " is not the next one its round announced");
  }
  ++round_next_;
  if (meta_.layout == Layout::kDelta && trailer_.final_frames[index] == kFrameInBase) {
    --unchanged_chunks_;
    ++changed_chunks_;
  }
  trailer_.final_frames[index] = static_cast<uint32_t>(entries_.size());
  trailer_.chunk_hashes[index] = hash;
  latest_offsets_[index] = bytes_written_;
  entries_.push_back(SeekEntry{static_cast<uint32_t>(frame.size()), decompressed_bytes});
  return Put(frame.data(), frame.size(), true);
}

Result<ImageWriter::FrameLocation> ImageWriter::LatestFrame(uint64_t index) const {
  if (index >= initial_chunks_) {
    return Status(Code::kInternal, "chunk " + std::to_string(index) + " has not been written yet");
  }
  FrameLocation at;
  at.offset_bytes = latest_offsets_[index];
  if (HasFrameMap(meta_.layout) && trailer_.final_frames[index] == kFrameInBase) {
    return Status(Code::kUnsupported, "chunk " + std::to_string(index) + " is the parent image's");
  }
  uint32_t entry = HasFrameMap(meta_.layout) ? trailer_.final_frames[index]
                                                     : static_cast<uint32_t>(index + 1);
  at.frame_bytes = entries_[entry].compressed_bytes;
  at.decompressed_bytes = entries_[entry].decompressed_bytes;
  at.hash = trailer_.chunk_hashes[index];
  return at;
}

Status ImageWriter::Finish(const RunReport& report) {
  if (initial_chunks_ != meta_.chunk_count() || round_next_ != round_.chunks.size()) {
    return Status(Code::kInternal, "image has " + std::to_string(initial_chunks_) +
                                       " chunks, expected " + std::to_string(meta_.chunk_count()));
  }
  RunReport final_report = report;
  if (meta_.layout == Layout::kDelta) {
    final_report.changed_chunks = changed_chunks_;
    final_report.unchanged_chunks = unchanged_chunks_;
  }
  std::string report_frame = EncodeReportFrame(final_report);
  entries_.push_back(SeekEntry{static_cast<uint32_t>(report_frame.size()), 0});
  HOTSNAP_RETURN_IF_ERROR(Put(report_frame.data(), report_frame.size(), true));
  XXH128_hash_t h = XXH3_128bits_digest(hash_state_);
  trailer_.image_hash = Hash128{h.low64, h.high64};
  std::string trailer = EncodeTrailerFrame(trailer_);
  entries_.push_back(SeekEntry{static_cast<uint32_t>(trailer.size()), 0});
  HOTSNAP_RETURN_IF_ERROR(Put(trailer.data(), trailer.size(), false));
  std::string table = EncodeSeekTableFrame(
      entries_, HasFrameMap(meta_.layout) ? kSeekDescriptorTracked : kSeekDescriptorPlain);
  return Put(table.data(), table.size(), false);
}

}  // namespace hotsnap
