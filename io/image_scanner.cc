#include "io/image_scanner.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "io/chunk_codec.h"
#include "io/frame_reader.h"
#include "io/parallel_decoder.h"

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
  Status ReadChunksInParallel(uint64_t chunks);
  Status DecodeChunk(uint64_t index, const Frame& frame);
  Status UseChunk(uint64_t index, uint64_t frame_offset, std::span<const uint8_t> frame_bytes,
                  const Status& decoded, const uint8_t* data, const Hash128& hash, bool zero);
  Status ReadRounds();
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
  std::vector<Hash128> hashes_;       // latest hash of each chunk
  std::vector<uint32_t> last_frame_;  // seek entry index of each chunk's latest frame
  // Delta layout: the same for the chunks it holds (few, anywhere on the device).
  std::map<uint64_t, Hash128> delta_hashes_;
  std::map<uint64_t, uint32_t> delta_frames_;
  std::unique_ptr<ChunkDecompressor> decompressor_;
  // Decoded chunk, allocated at the first chunk frame and left uninitialised: its pages cost
  // memory only as a decoder writes them, not because the metadata declared a chunk size.
  std::unique_ptr<uint8_t[]> chunk_;
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
  bool poisoned = frame->poison;
  if (poisoned) {
    // The tracked layout's guard frame: part of the image hash and the seek table.
    XXH3_128bits_update(&hash_state_, frame->bytes.data(), frame->bytes.size());
    seen_.push_back(SeekEntry{static_cast<uint32_t>(frame->bytes.size()), 0});
    frame = NextFrame("the metadata frame");
    if (!frame.ok()) return frame.status();
  }
  if (!frame->skippable || frame->magic != kMetadataMagic) {
    return Corrupt("does not start with a hotsnap metadata frame (not a hotsnap image?)");
  }
  auto meta = DecodeMetadataPayload(frame->payload);
  if (!meta.ok()) return meta.status().Wrap("image " + name_);
  result_.meta = std::move(meta.value());
  XXH3_128bits_update(&hash_state_, frame->bytes.data(), frame->bytes.size());
  seen_.push_back(SeekEntry{static_cast<uint32_t>(frame->bytes.size()), 0});
  const ImageMetadata& m = result_.meta;
  if (poisoned != HasFrameMap(m.layout)) {
    return Corrupt(poisoned ? "a leading guard frame, but the metadata says the plain layout"
                            : std::string(LayoutName(m.layout)) + " layout without its leading guard frame");
  }
  if (expected_ != nullptr && expected_->layout != m.layout) {
    return Corrupt("metadata and trailer disagree on the layout");
  }
  if (expected_ != nullptr &&
      (expected_->device_bytes != m.device_bytes || expected_->chunk_bytes != m.chunk_bytes)) {
    return Corrupt("metadata and trailer disagree on the device geometry");
  }
  // Every later frame is bounded by what this geometry can need (checked from its header;
  // the reader buffers only bytes that arrive).
  uint64_t chunks = m.chunk_count();
  reader_.set_max_zstd_frame_bytes(MaxFrameBytes(m.chunk_bytes));
  reader_.set_skippable_bounds(BoundsFor(m));
  auto d = ChunkDecompressor::Create(WindowLogFor(m.chunk_bytes));
  if (!d.ok()) return d.status();
  decompressor_ = std::move(d.value());
  zero_hash_ = HashZeros(m.chunk_bytes);
  // Per-chunk state grows with the chunks actually read (ReadChunk), not with what the
  // metadata declares: a 512 TiB declaration in a few-KiB image must not allocate 3.5 GiB.
  hashes_.reserve(std::min<uint64_t>(chunks, 1u << 16));
  last_frame_.reserve(std::min<uint64_t>(chunks, 1u << 16));
  return visitor_ != nullptr ? visitor_->OnMetadata(m) : Status::Ok();
}

Status Scanner::ReadChunk(uint64_t index) {
  const ImageMetadata& m = result_.meta;
  auto frame = NextFrame(ChunkWhere(m, index, reader_.offset()));
  if (!frame.ok()) return frame.status();
  if (frame->skippable || frame->poison) {
    return Corrupt("found a skippable frame where " + ChunkWhere(m, index, frame->offset) +
                   " should be");
  }
  hashes_.emplace_back();  // the first pass reads chunk `index` == hashes_.size()
  last_frame_.push_back(0);
  return DecodeChunk(index, *frame);
}

Status Scanner::DecodeChunk(uint64_t index, const Frame& frame) {
  const ImageMetadata& m = result_.meta;
  uint32_t length = m.ChunkLength(index);
  if (chunk_ == nullptr) chunk_.reset(new uint8_t[m.chunk_bytes]);
  Status s = decompressor_->Decompress(frame.bytes, std::span<uint8_t>(chunk_.get(), m.chunk_bytes),
                                       length);
  Hash128 h;
  bool zero = false;
  if (s.ok()) {
    h = HashBytes(chunk_.get(), length);
    zero = length == m.chunk_bytes ? h == zero_hash_ && IsAllZero(chunk_.get(), length)
                                   : IsAllZero(chunk_.get(), length);
  }
  return UseChunk(index, frame.offset, frame.bytes, s, chunk_.get(), h, zero);
}

// Everything about a decoded chunk that must happen in stream order.
Status Scanner::UseChunk(uint64_t index, uint64_t frame_offset,
                         std::span<const uint8_t> frame_bytes, const Status& decoded,
                         const uint8_t* data, const Hash128& h, bool zero) {
  const ImageMetadata& m = result_.meta;
  std::string where = ChunkWhere(m, index, frame_offset);
  uint32_t length = m.ChunkLength(index);
  if (!decoded.ok()) return Corrupt(where + ": " + decoded.message());
  uint32_t entry = static_cast<uint32_t>(seen_.size());
  // With the trailer known, only a chunk's final frame is checked against it and used.
  bool final_frame =
      expected_ == nullptr || m.layout == Layout::kPlain || expected_->final_frames[index] == entry;
  if (expected_ != nullptr && final_frame && !(h == expected_->chunk_hashes[index])) {
    return Corrupt(where + ": hash does not match the trailer");
  }
  XXH3_128bits_update(&hash_state_, frame_bytes.data(), frame_bytes.size());
  seen_.push_back(SeekEntry{static_cast<uint32_t>(frame_bytes.size()), length});
  uint32_t& last = m.layout == Layout::kDelta ? delta_frames_[index] : last_frame_[index];
  if (last != 0) ++result_.superseded_frames;
  if (m.layout == Layout::kDelta) {
    delta_hashes_[index] = h;
  } else {
    hashes_[index] = h;
  }
  last = entry;
  if (zero && final_frame) ++result_.zero_chunks;
  if (visitor_ == nullptr || !final_frame) return Status::Ok();
  return visitor_->OnChunk(index, index * m.chunk_bytes, std::span<const uint8_t>(data, length),
                           zero);
}

// The first pass over the chunks, decoded by worker threads a few chunks ahead of their use
// (decoding is most of a restore's or verify's CPU time). A frame that cannot be read is
// reported after every chunk before it was used, as in the one-thread order.
Status Scanner::ReadChunksInParallel(uint64_t chunks) {
  const ImageMetadata& m = result_.meta;
  unsigned workers = std::clamp(std::thread::hardware_concurrency(), 2u, 4u);
  auto created =
      ParallelDecoder::Create(workers, workers + 2, WindowLogFor(m.chunk_bytes), m.chunk_bytes);
  if (!created.ok()) return created.status();
  ParallelDecoder& decoder = *created.value();
  uint64_t submitted = 0;
  Status read_error = Status::Ok();  // why frame `submitted` could not be read
  for (uint64_t next = 0; next < chunks; ++next) {
    while (read_error.ok() && submitted < chunks && decoder.outstanding() < decoder.depth()) {
      auto frame = NextFrame(ChunkWhere(m, submitted, reader_.offset()));
      if (!frame.ok()) {
        read_error = frame.status();
      } else if (frame->skippable || frame->poison) {
        read_error = Corrupt("found a skippable frame where " +
                             ChunkWhere(m, submitted, frame->offset) + " should be");
      } else {
        std::unique_ptr<DecodeJob> job = decoder.NewJob();
        job->index = submitted;
        job->frame_offset = frame->offset;
        job->length = m.ChunkLength(submitted);
        job->frame.assign(frame->bytes.begin(), frame->bytes.end());
        decoder.Submit(std::move(job));
        ++submitted;
      }
    }
    std::unique_ptr<DecodeJob> job = decoder.TakeNext();
    if (job == nullptr) return read_error;  // nothing ahead: frame `next` was unreadable
    hashes_.emplace_back();                 // the first pass reads chunk `index` == hashes_.size()
    last_frame_.push_back(0);
    HOTSNAP_RETURN_IF_ERROR(UseChunk(job->index, job->frame_offset, job->frame, job->status,
                                     job->chunk.get(), job->hash, job->zero));
    decoder.Recycle(std::move(job));
  }
  return Status::Ok();
}

Status Scanner::ReadRounds() {
  const ImageMetadata& m = result_.meta;
  for (;;) {
    auto frame = NextFrame("the report");
    if (!frame.ok()) return frame.status();
    if (frame->skippable && frame->magic == kReportMagic) {
      auto report = DecodeReportPayload(frame->payload);
      if (!report.ok()) return report.status().Wrap("image " + name_);
      result_.report = std::move(report.value());
      XXH3_128bits_update(&hash_state_, frame->bytes.data(), frame->bytes.size());
      seen_.push_back(SeekEntry{static_cast<uint32_t>(frame->bytes.size()), 0});
      return Status::Ok();
    }
    if (!frame->skippable || frame->magic != kRoundMagic || !HasFrameMap(m.layout)) {
      return Corrupt("expected the report at offset " + std::to_string(frame->offset) +
                     " after the last chunk, found another frame");
    }
    auto round = DecodeRoundPayload(frame->payload, m.chunk_count());
    if (!round.ok()) return round.status().Wrap("image " + name_);
    XXH3_128bits_update(&hash_state_, frame->bytes.data(), frame->bytes.size());
    seen_.push_back(SeekEntry{static_cast<uint32_t>(frame->bytes.size()), 0});
    for (uint32_t index : round->chunks) {
      auto chunk = NextFrame(ChunkWhere(m, index, reader_.offset()));
      if (!chunk.ok()) return chunk.status();
      if (chunk->skippable || chunk->poison) {
        return Corrupt("round " + std::to_string(round->round) + " is missing " +
                       ChunkWhere(m, index, chunk->offset));
      }
      HOTSNAP_RETURN_IF_ERROR(DecodeChunk(index, *chunk));
    }
  }
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
  if (trailer.device_bytes != m.device_bytes || trailer.chunk_bytes != m.chunk_bytes ||
      trailer.layout != m.layout) {
    return Corrupt("trailer and metadata disagree on the device geometry or layout");
  }
  if (m.layout == Layout::kTracked) {
    for (uint64_t i = 0; i < hashes_.size(); ++i) {
      if (trailer.final_frames[i] != last_frame_[i]) {
        return Corrupt("trailer's frame map does not point chunk " + std::to_string(i) +
                       " at its last frame");
      }
    }
  }
  if (m.layout == Layout::kDelta) {
    // Every chunk with a frame here is mapped to its last one; every other is the parent's.
    for (uint64_t i = 0; i < trailer.final_frames.size(); ++i) {
      auto it = delta_frames_.find(i);
      uint32_t want = it == delta_frames_.end() ? kFrameInBase : it->second;
      if (trailer.final_frames[i] != want) {
        return Corrupt("trailer's frame map does not point chunk " + std::to_string(i) +
                       (want == kFrameInBase ? " at its parent, though the image holds no frame of it"
                                             : " at its last frame"));
      }
    }
    for (const auto& [i, h] : delta_hashes_) {
      if (!(h == trailer.chunk_hashes[i])) {
        return Corrupt("chunk " + std::to_string(i) + " (device byte offset " +
                       std::to_string(i * m.chunk_bytes) + "): hash does not match the trailer");
      }
    }
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
  // It lists exactly the frames seen, whatever the geometry allowed.
  SkippableBounds bounds = BoundsFor(result_.meta);
  bounds.seek_table = SeekTablePayloadBytes(seen_.size());
  reader_.set_skippable_bounds(bounds);
  auto frame = NextFrame("the seek table");
  if (!frame.ok()) return frame.status();
  if (!frame->skippable || frame->magic != kSeekTableMagic) {
    return Corrupt("expected the seek table at offset " + std::to_string(frame->offset));
  }
  uint8_t descriptor = 0;
  auto entries = DecodeSeekTableFrame(frame->bytes, &descriptor);
  if (!entries.ok()) return entries.status().Wrap("image " + name_);
  if ((descriptor == kSeekDescriptorTracked) != HasFrameMap(result_.meta.layout)) {
    return Corrupt("seek table descriptor does not match the layout");
  }
  if (entries->size() != seen_.size()) {
    return Corrupt("seek table lists " + std::to_string(entries->size()) +
                   " frames; the image has " + std::to_string(seen_.size()));
  }
  for (size_t i = 0; i < seen_.size(); ++i) {
    if (!((*entries)[i] == seen_[i])) {
      return Corrupt("seek table entry " + std::to_string(i) + " does not match frame " +
                     std::to_string(i) + " of the image");
    }
  }
  Frame extra;
  auto more = reader_.Next(&extra);
  if (!more.ok())
    return Corrupt("unexpected bytes after the seek table: " + more.status().message());
  if (*more)
    return Corrupt("unexpected data after the seek table at offset " +
                   std::to_string(extra.offset));
  result_.image_bytes = reader_.offset();
  return Status::Ok();
}

Result<ScanResult> Scanner::Run() {
  HOTSNAP_RETURN_IF_ERROR(ReadMetadata());
  // A delta image has no first pass: each of its frames follows a round header naming it.
  uint64_t chunks = result_.meta.layout == Layout::kDelta ? 0 : result_.meta.chunk_count();
  if (chunks > 1) {
    HOTSNAP_RETURN_IF_ERROR(ReadChunksInParallel(chunks));
  } else {
    for (uint64_t i = 0; i < chunks; ++i) HOTSNAP_RETURN_IF_ERROR(ReadChunk(i));
  }
  HOTSNAP_RETURN_IF_ERROR(ReadRounds());
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
