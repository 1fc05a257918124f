#include "io/image_scanner.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <memory>
#include <vector>

#include "io/chunk_codec.h"
#include "io/frame_reader.h"

namespace hotsnap {
namespace {

std::string ChunkWhere(const ImageMetadata& meta, uint64_t index, uint64_t image_offset) {
  uint64_t begin = index * meta.chunk_bytes;
  return "chunk " + std::to_string(index) + " (device bytes " + std::to_string(begin) + ".." +
         std::to_string(begin + meta.ChunkLength(index) - 1) + ", image offset " +
         std::to_string(image_offset) + ")";
}

class Scanner {
 public:
  Scanner(int fd, const std::string& name, const Trailer* expected, ScanVisitor* visitor)
      : reader_(fd, name, MaxFrameBytes(kDefaultChunkBytes)),
        name_(name),
        expected_(expected),
        visitor_(visitor) {
    XXH3_128bits_reset(&hash_state_);
  }
  Result<ScanResult> Run();

 private:
  Status Corrupt(const std::string& what) const {
    return Status(Code::kIntegrity, "image " + name_ + ": " + what);
  }
  Status ReadMetadata();
  Status ReadChunk(uint64_t index);
  Status ReadTrailer();
  Status ReadSeekTable();
  Result<Frame> NextFrame(const std::string& expecting);

  FrameReader reader_;
  std::string name_;
  const Trailer* expected_;
  ScanVisitor* visitor_;
  XXH3_state_t hash_state_;
  ScanResult result_;
  std::vector<SeekEntry> seen_;
  std::vector<Hash128> hashes_;
  std::unique_ptr<ChunkDecompressor> decompressor_;
  std::vector<uint8_t> chunk_;
  Hash128 zero_hash_;
};

Result<Frame> Scanner::NextFrame(const std::string& expecting) {
  Frame frame;
  auto got = reader_.Next(&frame);
  if (!got.ok()) return got.status();
  if (!*got) {
    return Corrupt("is truncated: it ends at offset " + std::to_string(reader_.offset()) +
                   " where " + expecting + " should follow");
  }
  return frame;
}

Status Scanner::ReadMetadata() {
  auto frame = NextFrame("the metadata frame");
  if (!frame.ok()) return frame.status();
  if (!frame->skippable || frame->magic != kMetadataMagic) {
    return Corrupt("does not start with a hotsnap metadata frame (not a hotsnap image?)");
  }
  auto meta = DecodeMetadataPayload(frame->payload);
  if (!meta.ok()) return meta.status().Wrap("image " + name_);
  result_.meta = std::move(meta.value());
  XXH3_128bits_update(&hash_state_, frame->bytes.data(), frame->bytes.size());
  seen_.push_back(SeekEntry{static_cast<uint32_t>(frame->bytes.size()), 0});
  const ImageMetadata& m = result_.meta;
  if (expected_ != nullptr &&
      (expected_->device_bytes != m.device_bytes || expected_->chunk_bytes != m.chunk_bytes)) {
    return Corrupt("metadata and trailer disagree on the device geometry");
  }
  // Every later frame is bounded by what this geometry can need.
  uint64_t chunks = m.chunk_count();
  reader_.set_max_zstd_frame_bytes(MaxFrameBytes(m.chunk_bytes));
  reader_.set_max_skippable_bytes(std::max<uint64_t>(80 + chunks * 16, (chunks + 2) * 8 + 9));
  auto d = ChunkDecompressor::Create(WindowLogFor(m.chunk_bytes));
  if (!d.ok()) return d.status();
  decompressor_ = std::move(d.value());
  chunk_.resize(m.chunk_bytes);
  std::vector<uint8_t> zeros(m.chunk_bytes, 0);
  zero_hash_ = HashBytes(zeros.data(), zeros.size());
  hashes_.reserve(chunks);
  seen_.reserve(chunks + 2);
  return visitor_ != nullptr ? visitor_->OnMetadata(m) : Status::Ok();
}

Status Scanner::ReadChunk(uint64_t index) {
  const ImageMetadata& m = result_.meta;
  auto frame = NextFrame(ChunkWhere(m, index, reader_.offset()));
  if (!frame.ok()) return frame.status();
  std::string where = ChunkWhere(m, index, frame->offset);
  if (frame->skippable) {
    return Corrupt("found a skippable frame where " + where + " should be (image has " +
                   std::to_string(index) + " of " + std::to_string(m.chunk_count()) + " chunks)");
  }
  uint32_t length = m.ChunkLength(index);
  Status s = decompressor_->Decompress(frame->bytes, chunk_, length);
  if (!s.ok()) return Corrupt(where + ": " + s.message());
  Hash128 h = HashBytes(chunk_.data(), length);
  if (expected_ != nullptr && !(h == expected_->chunk_hashes[index])) {
    return Corrupt(where + ": hash does not match the trailer");
  }
  XXH3_128bits_update(&hash_state_, frame->bytes.data(), frame->bytes.size());
  seen_.push_back(SeekEntry{static_cast<uint32_t>(frame->bytes.size()), length});
  hashes_.push_back(h);
  bool zero = length == m.chunk_bytes ? h == zero_hash_ && IsAllZero(chunk_.data(), length)
                                      : IsAllZero(chunk_.data(), length);
  if (zero) ++result_.zero_chunks;
  if (visitor_ == nullptr) return Status::Ok();
  return visitor_->OnChunk(index, index * m.chunk_bytes,
                           std::span<const uint8_t>(chunk_.data(), length), zero);
}

Status Scanner::ReadTrailer() {
  auto frame = NextFrame("the trailer");
  if (!frame.ok()) return frame.status();
  if (!frame->skippable || frame->magic != kTrailerMagic) {
    return Corrupt("expected the trailer at offset " + std::to_string(frame->offset) +
                   " after the last chunk, found another frame");
  }
  auto t = DecodeTrailerPayload(frame->payload);
  if (!t.ok()) return t.status().Wrap("image " + name_);
  result_.trailer = std::move(t.value());
  const Trailer& trailer = result_.trailer;
  const ImageMetadata& m = result_.meta;
  if (trailer.device_bytes != m.device_bytes || trailer.chunk_bytes != m.chunk_bytes) {
    return Corrupt("trailer and metadata disagree on the device geometry");
  }
  for (uint64_t i = 0; i < hashes_.size(); ++i) {
    if (!(hashes_[i] == trailer.chunk_hashes[i])) {
      return Corrupt("chunk " + std::to_string(i) + " (device byte offset " +
                     std::to_string(i * m.chunk_bytes) + "): hash does not match the trailer");
    }
  }
  XXH128_hash_t h = XXH3_128bits_digest(&hash_state_);
  if (!(Hash128{h.low64, h.high64} == trailer.image_hash)) {
    return Corrupt("the hash of the image's first " + std::to_string(frame->offset) +
                   " bytes does not match the trailer");
  }
  if (expected_ != nullptr && !(expected_->image_hash == trailer.image_hash)) {
    return Corrupt("the trailer read from the end of the file differs from the one in the stream");
  }
  seen_.push_back(SeekEntry{static_cast<uint32_t>(frame->bytes.size()), 0});
  return Status::Ok();
}

Status Scanner::ReadSeekTable() {
  auto frame = NextFrame("the seek table");
  if (!frame.ok()) return frame.status();
  if (!frame->skippable || frame->magic != kSeekTableMagic) {
    return Corrupt("expected the seek table at offset " + std::to_string(frame->offset));
  }
  auto entries = DecodeSeekTableFrame(frame->bytes);
  if (!entries.ok()) return entries.status().Wrap("image " + name_);
  if (entries->size() != seen_.size()) {
    return Corrupt("seek table lists " + std::to_string(entries->size()) + " frames; the image has " +
                   std::to_string(seen_.size()));
  }
  for (size_t i = 0; i < seen_.size(); ++i) {
    if (!((*entries)[i] == seen_[i])) {
      return Corrupt("seek table entry " + std::to_string(i) + " does not match frame " +
                     std::to_string(i) + " of the image");
    }
  }
  Frame extra;
  auto more = reader_.Next(&extra);
  if (!more.ok()) return Corrupt("unexpected bytes after the seek table: " + more.status().message());
  if (*more) return Corrupt("unexpected data after the seek table at offset " + std::to_string(extra.offset));
  result_.image_bytes = reader_.offset();
  return Status::Ok();
}

Result<ScanResult> Scanner::Run() {
  HOTSNAP_RETURN_IF_ERROR(ReadMetadata());
  uint64_t chunks = result_.meta.chunk_count();
  for (uint64_t i = 0; i < chunks; ++i) HOTSNAP_RETURN_IF_ERROR(ReadChunk(i));
  HOTSNAP_RETURN_IF_ERROR(ReadTrailer());
  HOTSNAP_RETURN_IF_ERROR(ReadSeekTable());
  result_.verified_before_use = expected_ != nullptr;
  return result_;
}

}  // namespace

Result<ScanResult> ScanImage(int fd, const std::string& name, const Trailer* expected,
                             ScanVisitor* visitor) {
  Scanner scanner(fd, name, expected, visitor);
  return scanner.Run();
}

}  // namespace hotsnap
