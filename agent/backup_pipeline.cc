#include "agent/backup_pipeline.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include "agent/throttle.h"
#include "base/crash_point.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "io/aligned_buffer.h"
#include "io/block_reader.h"
#include "io/compress_pool.h"

namespace hotsnap {
namespace {

// One chunk's worth of memory and bookkeeping, reused for chunk after chunk.
struct Slot {
  int id = 0;
  std::span<uint8_t> input;   // registered read buffer, chunk_bytes
  std::span<uint8_t> output;  // MaxFrameBytes
  CompressJob job;
  uint64_t sequence = 0;           // position in the run's chunk list
  uint64_t chunk_offset = 0;       // bytes
  uint32_t chunk_length = 0;       // bytes
  std::vector<ByteExtent> ranges;  // used ranges; empty means the whole chunk
  uint64_t read_begin = 0;         // device byte offset of the pending read window
  uint64_t read_end = 0;
  uint64_t read_done = 0;  // bytes of the window already read
};

uint64_t AlignDown(uint64_t v, uint64_t a) { return v / a * a; }
uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace

// The slots, the zero frames, the wake-up eventfd and the compression workers live as long
// as the pipeline; a run's reader, options and order bookkeeping live for one Run.
class ChunkPipeline::Impl {
 public:
  Impl(const SourceDevice& source, const ImageMetadata& meta, const PipelineOptions& base)
      : source_(source), meta_(meta), base_(base) {}

  Status Setup();
  Result<PipelineStats> Run(const PipelineOptions& options, const ChunkEmitter& emit);

 private:
  Result<PipelineStats> RunChunks();
  Status StartChunk(Slot* slot, uint64_t sequence, uint64_t index);
  Status QueueRead(Slot* slot);
  Status OnReadDone(Slot* slot, int32_t result);
  void ZeroGaps(Slot* slot);
  Status WriteReady(bool* progressed);
  Status WaitForEvent();
  Result<const ZeroChunk*> ZeroFor(uint32_t length);

  const SourceDevice& source_;
  const ImageMetadata& meta_;
  const PipelineOptions base_;  // level, workers, queue depth: fixed for every run

  AlignedBuffer arena_;   // the slots' chunks
  AlignedBuffer frames_;  // the slots' compressed frames
  std::vector<Slot> slots_;
  ZeroChunk zero_;
  std::optional<ZeroChunk> short_zero_;  // for a short last chunk
  UniqueFd wake_fd_;
  std::unique_ptr<CompressPool> pool_;
  unsigned queue_depth_ = 4;
  bool broken_ = false;  // a run failed with work in flight: no further runs

  // Per run:
  const PipelineOptions* options_ = nullptr;
  const ChunkEmitter* emit_ = nullptr;
  uint64_t output_bytes_ = 0;
  uint64_t reported_read_ = 0;  // stats_.bytes_read at the last progress report
  std::vector<Slot*> free_;
  std::map<uint64_t, Slot*> ready_;  // by sequence: compressed, waiting for their turn
  std::unique_ptr<BlockReader> reader_;
  unsigned in_pool_ = 0;
  std::optional<RateLimiter> limiter_;  // paces read submissions (--rate-limit)
  PipelineStats stats_;
};

Status ChunkPipeline::Impl::Setup() {
  unsigned workers = base_.workers;
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  queue_depth_ = std::max(1u, base_.queue_depth);
  size_t slot_count = queue_depth_ + workers + 2;
  // Chunks and frames in huge pages: cheap to touch the first time.
  const size_t frame_bytes = MaxFrameBytes(meta_.chunk_bytes);
  auto arena = AlignedBuffer::AllocateHuge(slot_count * size_t{meta_.chunk_bytes});
  if (!arena.ok()) return arena.status();
  arena_ = std::move(arena.value());
  auto frames = AlignedBuffer::AllocateHuge(slot_count * frame_bytes);
  if (!frames.ok()) return frames.status();
  frames_ = std::move(frames.value());
  slots_.resize(slot_count);
  for (size_t i = 0; i < slot_count; ++i) {
    Slot& s = slots_[i];
    s.id = static_cast<int>(i);
    s.input = arena_.span().subspan(i * meta_.chunk_bytes, meta_.chunk_bytes);
    s.output = frames_.span().subspan(i * frame_bytes, frame_bytes);
  }
  auto zero = MakeZeroChunk(base_.level, meta_.chunk_bytes);
  if (!zero.ok()) return zero.status();
  zero_ = std::move(zero.value());

  wake_fd_.Reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_fd_.valid()) return Status::FromErrno(Code::kInternal, errno, "eventfd");
  pool_ = std::make_unique<CompressPool>(workers, base_.level, meta_.chunk_bytes, &zero_,
                                         wake_fd_.get());
  return pool_->Start();
}

Result<PipelineStats> ChunkPipeline::Impl::Run(const PipelineOptions& options,
                                               const ChunkEmitter& emit) {
  if (broken_) return Status(Code::kInternal, "chunk pipeline reused after a failed run");
  if (options.level != base_.level || options.workers != base_.workers ||
      options.queue_depth != base_.queue_depth) {
    return Status(Code::kInternal, "chunk pipeline run with another level, workers or queue depth");
  }
  options_ = &options;
  emit_ = &emit;
  output_bytes_ = 0;
  reported_read_ = 0;
  stats_ = PipelineStats{};
  in_pool_ = 0;
  ready_.clear();
  free_.clear();
  limiter_.emplace(options.rate_limit_bytes_per_s, meta_.chunk_bytes);
  ReaderOptions ropts;
  ropts.queue_depth = queue_depth_;
  ropts.allow_io_uring = options.allow_io_uring;
  for (Slot& s : slots_) {
    ropts.buffers.push_back(s.input);
    free_.push_back(&s);
  }
  std::string fallback;
  auto reader = options.make_reader ? options.make_reader(ropts, &fallback)
                                    : MakeBlockReader(source_.fd.get(), ropts, &fallback);
  if (!reader.ok()) return reader.status();
  reader_ = std::move(reader.value());
  if (!fallback.empty()) Notice(fallback + "; reading " + source_.path + " with pread instead");
  HOTSNAP_RETURN_IF_ERROR(reader_->SetWakeFd(wake_fd_.get()));
  stats_.reader = reader_->name();

  auto result = RunChunks();
  // A failed run may leave reads or compressions in flight on the slots: the pipeline is
  // only good for being destroyed then.
  if (!result.ok()) broken_ = true;
  reader_.reset();
  return result;
}

Result<const ZeroChunk*> ChunkPipeline::Impl::ZeroFor(uint32_t length) {
  if (length == meta_.chunk_bytes) return &zero_;
  if (!short_zero_) {
    auto z = MakeZeroChunk(base_.level, length);
    if (!z.ok()) return z.status();
    short_zero_ = std::move(z.value());
  }
  return &*short_zero_;
}

Status ChunkPipeline::Impl::StartChunk(Slot* slot, uint64_t sequence, uint64_t index) {
  slot->sequence = sequence;
  slot->chunk_offset = index * meta_.chunk_bytes;
  slot->chunk_length = meta_.ChunkLength(index);
  slot->job = CompressJob{};
  slot->job.index = index;
  slot->job.owner = slot->id;
  slot->job.input = slot->input.first(slot->chunk_length);
  slot->job.output = slot->output;
  slot->job.base_hash = options_->base_hashes ? &(*options_->base_hashes)[index] : nullptr;
  slot->ranges.clear();
  if (options_->unchanged != nullptr && options_->base_hashes != nullptr && (*options_->unchanged)[index]) {
    // The parent's, by a trusted change log: nothing to read.
    slot->job.unchanged = true;
    slot->job.zero = false;
    slot->job.hash = (*options_->base_hashes)[index];
    slot->job.frame = {};
    ++stats_.skipped_chunks;
    ready_[sequence] = slot;
    return Status::Ok();
  }
  if (options_->planner) {
    options_->planner(index, slot->chunk_offset, slot->chunk_length, &slot->ranges);
    if (slot->ranges.empty()) {
      // Nothing used here: the zero frame, with neither a read nor a compression.
      auto z = ZeroFor(slot->chunk_length);
      if (!z.ok()) return z.status();
      slot->job.zero = true;
      slot->job.hash = (*z)->hash;
      slot->job.frame = std::span<const uint8_t>(
          reinterpret_cast<const uint8_t*>((*z)->frame.data()), (*z)->frame.size());
      ready_[sequence] = slot;
      return Status::Ok();
    }
  }
  uint64_t begin = slot->chunk_offset;
  uint64_t end = slot->chunk_offset + slot->chunk_length;
  if (!slot->ranges.empty()) {
    begin = slot->ranges.front().offset_bytes;
    end = slot->ranges.back().offset_bytes + slot->ranges.back().length_bytes;
  }
  // O_DIRECT wants aligned offsets and lengths; the window stays inside the chunk because
  // chunks are aligned and the device size is a multiple of the sector size (a regular
  // file's unaligned tail is read as a short read at end of file).
  uint64_t align = source_.direct_io ? source_.dio_alignment_bytes : 1;
  slot->read_begin = std::max(AlignDown(begin, align), slot->chunk_offset);
  slot->read_end = std::min(AlignUp(end, align), slot->chunk_offset + slot->input.size());
  slot->read_done = 0;
  limiter_->Charge(slot->read_end - slot->read_begin, RateLimiter::Clock::now());
  return QueueRead(slot);
}

Status ChunkPipeline::Impl::QueueRead(Slot* slot) {
  ReadRequest r;
  r.tag = static_cast<uint64_t>(slot->id);
  r.buffer_index = slot->id;
  r.offset_bytes = slot->read_begin + slot->read_done;
  r.buffer_offset = static_cast<uint32_t>(r.offset_bytes - slot->chunk_offset);
  r.length_bytes = static_cast<uint32_t>(slot->read_end - r.offset_bytes);
  return reader_->Queue(r);
}

void ChunkPipeline::Impl::ZeroGaps(Slot* slot) {
  uint8_t* base = slot->input.data();
  uint64_t cursor = slot->chunk_offset;
  auto zero_to = [&](uint64_t until) {
    if (until > cursor) std::memset(base + (cursor - slot->chunk_offset), 0, until - cursor);
  };
  for (const ByteExtent& r : slot->ranges) {
    zero_to(r.offset_bytes);
    cursor = std::max(cursor, r.offset_bytes + r.length_bytes);
  }
  zero_to(slot->chunk_offset + slot->chunk_length);
}

Status ChunkPipeline::Impl::OnReadDone(Slot* slot, int32_t result) {
  uint64_t at = slot->read_begin + slot->read_done;
  if (result == -EAGAIN || result == -EINTR) return QueueRead(slot);  // try again, same range
  if (result < 0) {
    return Status::FromErrno(Code::kSource, -result,
                             "reading " + source_.path + " at byte offset " + std::to_string(at) +
                                 " (" + std::to_string(slot->read_end - at) + " bytes)");
  }
  slot->read_done += static_cast<uint64_t>(result);
  stats_.bytes_read += static_cast<uint64_t>(result);
  uint64_t needed_end = std::min(slot->read_end, meta_.device_bytes);
  if (slot->read_begin + slot->read_done < needed_end) {
    if (result == 0) {
      return Status(Code::kSource,
                    "reading " + source_.path + " at byte offset " + std::to_string(at) +
                        ": unexpected end of device (did it shrink during the backup?)");
    }
    return QueueRead(slot);  // short read: ask for the rest
  }
  CrashPoint("mid-read");
  if (!slot->ranges.empty()) ZeroGaps(slot);
  pool_->Submit(&slot->job);
  CrashPoint("mid-compress");
  ++in_pool_;
  return Status::Ok();
}

Status ChunkPipeline::Impl::WriteReady(bool* progressed) {
  for (auto it = ready_.begin(); it != ready_.end() && it->first == stats_.chunks;
       it = ready_.begin()) {
    Slot* slot = it->second;
    ready_.erase(it);
    HOTSNAP_RETURN_IF_ERROR(slot->job.status);
    HOTSNAP_RETURN_IF_ERROR(
        (*emit_)(slot->job.index, slot->job.frame, slot->chunk_length, slot->job.hash));
    output_bytes_ += slot->job.frame.size();
    if (slot->job.zero) ++stats_.zero_chunks;
    if (slot->job.unchanged) ++stats_.unchanged_chunks;
    ++stats_.chunks;
    free_.push_back(slot);
    *progressed = true;
    if (options_->progress) {
      options_->progress->Advance(stats_.bytes_read - reported_read_, slot->job.frame.size());
      reported_read_ = stats_.bytes_read;
    }
  }
  return Status::Ok();
}

Status ChunkPipeline::Impl::WaitForEvent() {
  // Held back by --rate-limit: wake up when the next read may start.
  int throttled_ms = limiter_->MillisecondsUntilReady(RateLimiter::Clock::now());
  if (reader_->in_flight() == 0 && in_pool_ == 0 && throttled_ms == 0) {
    return Status(Code::kInternal, "backup pipeline stalled with nothing in flight");
  }
  pollfd pfd{wake_fd_.get(), POLLIN, 0};
  int rc = ::poll(&pfd, 1, throttled_ms > 0 ? throttled_ms : -1);
  if (rc < 0 && errno != EINTR) return Status::FromErrno(Code::kInternal, errno, "poll");
  uint64_t count;
  ssize_t n = ::read(wake_fd_.get(), &count, sizeof(count));  // reset; EAGAIN is fine
  (void)n;
  return Status::Ok();
}

Result<PipelineStats> ChunkPipeline::Impl::RunChunks() {
  const uint64_t total = options_->chunks.empty() ? meta_.chunk_count() : options_->chunks.size();
  uint64_t next_chunk = 0;
  std::vector<ReadCompletion> completions;
  std::vector<CompressJob*> finished;
  while (stats_.chunks < total) {
    if (Interrupted()) return Status(Code::kInterrupted, "interrupted during the backup");
    if (options_->stop) HOTSNAP_RETURN_IF_ERROR(options_->stop());
    bool progressed = false;
    // Start chunks while there is memory and queue room.
    while (!free_.empty() && next_chunk < total && reader_->in_flight() < queue_depth_ &&
           limiter_->Ready(RateLimiter::Clock::now())) {
      if (options_->check) HOTSNAP_RETURN_IF_ERROR(options_->check());
      Slot* slot = free_.back();
      free_.pop_back();
      uint64_t index = options_->chunks.empty() ? next_chunk : options_->chunks[next_chunk];
      HOTSNAP_RETURN_IF_ERROR(StartChunk(slot, next_chunk++, index));
      progressed = true;
    }
    completions.clear();
    HOTSNAP_RETURN_IF_ERROR(reader_->Reap(&completions, false));
    for (const ReadCompletion& c : completions) {
      HOTSNAP_RETURN_IF_ERROR(OnReadDone(&slots_[c.tag], c.result));
      progressed = true;
    }
    finished.clear();
    pool_->TakeFinished(&finished);
    for (CompressJob* job : finished) {
      --in_pool_;
      ready_[slots_[job->owner].sequence] = &slots_[job->owner];
      progressed = true;
    }
    HOTSNAP_RETURN_IF_ERROR(WriteReady(&progressed));
    if (!progressed) HOTSNAP_RETURN_IF_ERROR(WaitForEvent());
  }
  return stats_;
}

ChunkPipeline::ChunkPipeline() = default;
ChunkPipeline::~ChunkPipeline() = default;

Result<std::unique_ptr<ChunkPipeline>> ChunkPipeline::Create(const SourceDevice& source,
                                                             const ImageMetadata& meta,
                                                             const PipelineOptions& options) {
  std::unique_ptr<ChunkPipeline> pipeline(new ChunkPipeline());
  pipeline->impl_ = std::make_unique<Impl>(source, meta, options);
  HOTSNAP_RETURN_IF_ERROR(pipeline->impl_->Setup());
  return pipeline;
}

Result<PipelineStats> ChunkPipeline::Run(const PipelineOptions& options, const ChunkEmitter& emit) {
  return impl_->Run(options, emit);
}

Result<PipelineStats> RunChunkPipeline(const SourceDevice& source, const ImageMetadata& meta,
                                       const PipelineOptions& options, const ChunkEmitter& emit) {
  auto pipeline = ChunkPipeline::Create(source, meta, options);
  if (!pipeline.ok()) return pipeline.status();
  return (*pipeline)->Run(options, emit);
}

Result<PipelineStats> RunBackupPipeline(const SourceDevice& source, const ImageMetadata& meta,
                                        const PipelineOptions& options, ImageWriter* writer) {
  ChunkEmitter emit = [writer](uint64_t, std::span<const uint8_t> frame, uint32_t length,
                               const Hash128& hash) {
    return writer->AppendChunk(frame, length, hash);
  };
  return RunChunkPipeline(source, meta, options, emit);
}

}  // namespace hotsnap
