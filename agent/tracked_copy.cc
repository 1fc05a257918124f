#include "agent/tracked_copy.h"
#include "agent/used_map.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "base/log.h"
#include "fsmap/used_block_map.h"
#include "io/aligned_buffer.h"
#include "io/block_reader.h"
#include "snapshot/freeze_view.h"
#include "snapshot/write_tracker.h"

namespace hotsnap {
namespace {

// Serves reads from chunks captured in memory during the final freeze, so the freeze lasts
// only as long as reading them, not compressing them.
class CapturedReader : public BlockReader {
 public:
  CapturedReader(const std::map<uint64_t, AlignedBuffer>* chunks, uint32_t chunk_bytes,
                 const ReaderOptions& options)
      : chunks_(chunks), chunk_bytes_(chunk_bytes), options_(options) {}
  const char* name() const override { return "memory"; }
  unsigned in_flight() const override { return static_cast<unsigned>(done_.size()); }
  Status SetWakeFd(int) override { return Status::Ok(); }
  Status Queue(const ReadRequest& r) override {
    auto it = chunks_->find(r.offset_bytes / chunk_bytes_);
    if (it == chunks_->end()) return Status(Code::kInternal, "read of a chunk that was not captured");
    uint64_t within = r.offset_bytes % chunk_bytes_;
    size_t n = std::min<uint64_t>(r.length_bytes, it->second.size() - within);
    std::memcpy(options_.buffers[r.buffer_index].data() + r.buffer_offset, it->second.data() + within, n);
    done_.push_back(ReadCompletion{r.tag, static_cast<int32_t>(n)});
    return Status::Ok();
  }
  Status Reap(std::vector<ReadCompletion>* out, bool) override {
    out->insert(out->end(), done_.begin(), done_.end());
    done_.clear();
    return Status::Ok();
  }

 private:
  const std::map<uint64_t, AlignedBuffer>* chunks_;
  uint32_t chunk_bytes_;
  ReaderOptions options_;
  std::vector<ReadCompletion> done_;
};

class TrackedCopy {
 public:
  TrackedCopy(const TrackedOptions& options, const SourceDevice& source, ImageMetadata* meta,
              ImageWriter* writer)
      : options_(options), source_(source), meta_(meta), writer_(writer) {}
  Result<TrackedResult> Run();

 private:
  Result<UsedBlockMap> MapNow();
  Result<std::unique_ptr<FreezeView>> Freeze(bool final_freeze);
  Status EndFreeze(std::unique_ptr<FreezeView> view);
  // Drains the tracker into dirty_; a loss marks every chunk dirty (or fails, if `final`).
  Status CollectWrites(bool final_freeze);
  // The chunks to copy again: written ones, plus those whose used blocks changed.
  std::vector<uint64_t> TakeDirty(const UsedBlockMap& before, const UsedBlockMap& after);
  Status Copy(const std::vector<uint64_t>& chunks, const UsedBlockMap& map, uint32_t round,
              const PipelineOptions& base);
  Status Capture(const std::vector<uint64_t>& chunks);
  uint64_t BytesOf(const std::vector<uint64_t>& chunks) const;

  const TrackedOptions& options_;
  const SourceDevice& source_;
  ImageMetadata* meta_;
  ImageWriter* writer_;
  std::unique_ptr<WriteTracker> tracker_;
  std::vector<bool> dirty_;
  std::map<uint64_t, AlignedBuffer> captured_;
  TrackedResult result_;
};

Result<UsedBlockMap> TrackedCopy::MapNow() {
  // Announce a fallback only at the first map, not at every round.
  return MapUsedBlocks(source_, options_.all_blocks, result_.report.freeze_ms.empty());
}

Result<std::unique_ptr<FreezeView>> TrackedCopy::Freeze(bool final_freeze) {
  FreezeViewOptions f;
  f.source = source_.path;
  f.mount_point = options_.mount_point;
  f.max_freeze = options_.max_freeze;
  if (final_freeze) f.hooks = options_.hooks;  // the consistency point is the final freeze
  return FreezeView::Open(f);
}

Status TrackedCopy::EndFreeze(std::unique_ptr<FreezeView> view) {
  Status s = view->Release();
  result_.report.freeze_ms.push_back(view->frozen_for().count());
  return s;
}

Status TrackedCopy::CollectWrites(bool final_freeze) {
  const uint64_t chunk = meta_->chunk_bytes;
  auto lost = tracker_->Drain([&](uint64_t offset, uint64_t length) {
    for (uint64_t c = offset / chunk; c <= (offset + length - 1) / chunk && c < dirty_.size(); ++c) {
      dirty_[c] = true;
    }
  });
  if (!lost.ok()) return lost.status();
  if (*lost == 0) return Status::Ok();
  result_.report.lost_events += *lost;
  if (final_freeze) {
    return Status(Code::kSource, "the kernel dropped " + std::to_string(*lost) +
                                     " write records during the last round, so the written set "
                                     "is unknown; nothing is published. Retry, ideally when the "
                                     "write load is lower");
  }
  Notice("the kernel dropped " + std::to_string(*lost) +
         " write records; treating the whole device as written this round");
  std::fill(dirty_.begin(), dirty_.end(), true);
  return Status::Ok();
}

std::vector<uint64_t> TrackedCopy::TakeDirty(const UsedBlockMap& before, const UsedBlockMap& after) {
  std::vector<uint64_t> chunks;
  std::vector<ByteExtent> a, b;
  for (uint64_t c = 0; c < dirty_.size(); ++c) {
    bool take = dirty_[c];
    if (!take) {
      a.clear();
      b.clear();
      before.UsedIn(c * meta_->chunk_bytes, meta_->ChunkLength(c), &a);
      after.UsedIn(c * meta_->chunk_bytes, meta_->ChunkLength(c), &b);
      take = a != b;
    }
    if (take) chunks.push_back(c);
    dirty_[c] = false;
  }
  return chunks;
}

uint64_t TrackedCopy::BytesOf(const std::vector<uint64_t>& chunks) const {
  uint64_t bytes = 0;
  for (uint64_t c : chunks) bytes += meta_->ChunkLength(c);
  return bytes;
}

Status TrackedCopy::Copy(const std::vector<uint64_t>& chunks, const UsedBlockMap& map,
                         uint32_t round, const PipelineOptions& base) {
  PipelineOptions p = base;
  p.chunks = chunks;
  if (!map.all_blocks()) {
    p.planner = [&map](uint64_t, uint64_t offset, uint32_t length, std::vector<ByteExtent>* out) {
      map.UsedIn(offset, length, out);
    };
  }
  ChunkEmitter emit;
  if (round == 0) {
    emit = [this](uint64_t, std::span<const uint8_t> frame, uint32_t length, const Hash128& hash) {
      return writer_->AppendChunk(frame, length, hash);
    };
  } else {
    RoundHeader header;
    header.round = round;
    for (uint64_t c : chunks) header.chunks.push_back(static_cast<uint32_t>(c));
    HOTSNAP_RETURN_IF_ERROR(writer_->BeginRound(header));
    emit = [this](uint64_t index, std::span<const uint8_t> frame, uint32_t length, const Hash128& hash) {
      return writer_->AppendRecopy(index, frame, length, hash);
    };
    result_.report.recopied_bytes += BytesOf(chunks);
  }
  auto stats = RunChunkPipeline(source_, *meta_, p, emit);
  if (!stats.ok()) return stats.status();
  result_.bytes_read += stats->bytes_read;
  result_.zero_chunks += stats->zero_chunks;
  if (result_.reader.empty()) result_.reader = stats->reader;
  return Status::Ok();
}

Status TrackedCopy::Capture(const std::vector<uint64_t>& chunks) {
  for (uint64_t c : chunks) {
    uint32_t length = meta_->ChunkLength(c);
    auto buffer = AlignedBuffer::Allocate(length);
    if (!buffer.ok()) return buffer.status();
    uint64_t done = 0;
    while (done < length) {
      ssize_t n = ::pread(source_.fd.get(), buffer->data() + done, length - done,
                          static_cast<off_t>(c * meta_->chunk_bytes + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return Status::FromErrno(Code::kSource, n < 0 ? errno : EIO,
                                 "reading " + source_.path + " at byte offset " +
                                     std::to_string(c * meta_->chunk_bytes + done));
      }
      done += static_cast<uint64_t>(n);
    }
    result_.bytes_read += length;
    captured_.emplace(c, std::move(buffer.value()));
  }
  return Status::Ok();
}

Result<TrackedResult> TrackedCopy::Run() {
  dirty_.assign(meta_->chunk_count(), false);
  auto tracker = WriteTracker::Start(source_.path, source_.size_bytes);
  if (!tracker.ok()) return tracker.status().Wrap("--snapshot tracked");
  tracker_ = std::move(tracker.value());

  // The clean starting point: every write recorded so far finished before the freeze
  // returned, so the pre-copy will read its result.
  auto view = Freeze(false);
  if (!view.ok()) return view.status();
  HOTSNAP_RETURN_IF_ERROR(tracker_->Drain([](uint64_t, uint64_t) {}).status());
  auto first_map = MapNow();
  if (!first_map.ok()) return first_map.status();
  HOTSNAP_RETURN_IF_ERROR(EndFreeze(std::move(view.value())));
  UsedBlockMap map = std::move(first_map.value());

  meta_->used_bytes = map.used_bytes();
  meta_->used_map = DescribeMap(map);
  meta_->layout = Layout::kTracked;
  HOTSNAP_RETURN_IF_ERROR(writer_->Begin(*meta_));
  HOTSNAP_RETURN_IF_ERROR(Copy({}, map, 0, options_.pipeline));

  // Rounds while the system runs, until one is small enough to end under a freeze.
  uint32_t round = 0;
  uint64_t last_round_bytes = UINT64_MAX;
  while (round < options_.max_rounds && last_round_bytes > options_.final_round_bytes) {
    auto v = Freeze(false);
    if (!v.ok()) return v.status();
    HOTSNAP_RETURN_IF_ERROR(CollectWrites(false));
    auto next = MapNow();
    if (!next.ok()) return next.status();
    HOTSNAP_RETURN_IF_ERROR(EndFreeze(std::move(v.value())));
    std::vector<uint64_t> chunks = TakeDirty(map, *next);
    map = std::move(next.value());
    last_round_bytes = BytesOf(chunks);
    if (chunks.empty()) break;
    HOTSNAP_RETURN_IF_ERROR(Copy(chunks, map, ++round, options_.pipeline));
  }

  // The final freeze: the image's point in time.
  auto final_view = Freeze(true);
  if (!final_view.ok()) return final_view.status();
  std::unique_ptr<FreezeView> frozen = std::move(final_view.value());
  HOTSNAP_RETURN_IF_ERROR(CollectWrites(true));
  auto final_map = MapNow();
  if (!final_map.ok()) return final_map.status();
  std::vector<uint64_t> last = TakeDirty(map, *final_map);
  map = std::move(final_map.value());
  bool in_memory = BytesOf(last) <= options_.final_round_bytes;
  if (in_memory) {
    HOTSNAP_RETURN_IF_ERROR(Capture(last));
    HOTSNAP_RETURN_IF_ERROR(EndFreeze(std::move(frozen)));
  }
  PipelineOptions p = options_.pipeline;
  if (in_memory) {
    uint32_t chunk_bytes = meta_->chunk_bytes;
    p.make_reader = [this, chunk_bytes](const ReaderOptions& r, std::string*)
        -> Result<std::unique_ptr<BlockReader>> {
      return std::unique_ptr<BlockReader>(new CapturedReader(&captured_, chunk_bytes, r));
    };
  } else {
    // Too much was written in the last round to hold in memory: copy it under the freeze,
    // bounded by --max-freeze.
    FreezeView* f = frozen.get();
    p.check = [f] { return f->Check(); };
    p.rate_limit_bytes_per_s = 0;
  }
  if (!last.empty()) HOTSNAP_RETURN_IF_ERROR(Copy(last, map, ++round, p));
  if (!in_memory) HOTSNAP_RETURN_IF_ERROR(EndFreeze(std::move(frozen)));
  captured_.clear();

  result_.report.rounds = round;
  result_.report.used_bytes = map.used_bytes();
  return result_;
}

}  // namespace

Result<TrackedResult> RunTrackedCopy(const TrackedOptions& options, const SourceDevice& source,
                                     ImageMetadata* meta, ImageWriter* writer) {
  TrackedCopy copy(options, source, meta, writer);
  return copy.Run();
}

}  // namespace hotsnap
