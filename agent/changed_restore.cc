#include "agent/changed_restore.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "agent/events.h"
#include "agent/image_used_map.h"
#include "agent/progress.h"
#include "agent/restore_target.h"
#include "base/crash_point.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "io/aligned_buffer.h"
#include "io/block_reader.h"
#include "io/block_writer.h"
#include "io/image_random_reader.h"
#include "io/partition_table.h"
#include "io/source_device.h"
#include "io/ssh_remote.h"

namespace hotsnap {

Status CheckTargetHoldsImageSource(const std::string& path, const ImageMetadata& meta) {
  const std::string purpose =
      "; --changed-only is for rolling a device back to an earlier image of itself (restore "
      "without it to write the whole image)";
  auto uuid_or_none = [](const std::string& uuid) { return uuid.empty() ? std::string("none") : uuid; };
  const std::string origin = " on " + meta.source_path + (meta.host.empty() ? "" : " of host " + meta.host);
  if (!meta.partition_table.empty()) {
    const ImagePartitionTable& want = meta.partition_table;
    if (want.uuid.empty()) {
      return Status(Code::kUnsupported, "image of " + meta.source_path + " records no partition "
                                        "table UUID, so --changed-only cannot tell whether " + path +
                                        " is that disk; restore it without --changed-only");
    }
    auto held = ProbePartitionTable(path, Code::kTarget);  // with the partitions' filesystems, for the message
    if (!held.ok()) return held.status();
    if (held->type == want.type && held->uuid == want.uuid) return Status::Ok();
    std::string holds = held->none() ? std::string("no partition table") : DescribePartitionTable(*held);
    return Status(Code::kTarget, "target " + path + " holds " + holds + " (PTUUID " +
                                     uuid_or_none(held->uuid) + "), not the disk this image was taken "
                                     "from (" + want.type + " partition table, PTUUID " + want.uuid +
                                     origin + ")" + purpose);
  }
  if (meta.fs_uuid.empty()) {
    return Status(Code::kUnsupported,
                  "image of " + meta.source_path + " records no filesystem UUID (" +
                      (meta.fs_type.empty() ? std::string("no filesystem was recognised") : meta.fs_type) +
                      "), so --changed-only cannot tell whether " + path +
                      " holds that filesystem; restore it without --changed-only");
  }
  FilesystemProbe held = ProbeFilesystem(path);
  if (!held.ambiguous && held.uuid == meta.fs_uuid) return Status::Ok();
  std::string holds = held.type.empty() && !held.ambiguous ? std::string("nothing libblkid recognises")
                                                           : DescribeFilesystem(held);
  if (held.uuid.empty()) holds += " (no UUID)";  // DescribeFilesystem names a UUID when there is one
  return Status(Code::kTarget, "target " + path + " holds " + holds +
                                   ", not the filesystem this image was taken from (" +
                                   (meta.fs_type.empty() ? std::string("?") : meta.fs_type) + " UUID " +
                                   meta.fs_uuid + origin + ")" + purpose);
}

namespace {

// Reads in flight at once (requests, a chunk may need several), and chunks being read.
constexpr unsigned kReadsInFlight = 8;
constexpr unsigned kChunksReading = 4;
// A free gap of at most this many bytes between two used extents is read through (and zeroed
// afterwards, like every free byte): one longer read costs less than two requests.
constexpr uint64_t kReadThroughGapBytes = 64 << 10;
// Reads start and end on this many bytes (past the chunk's end never): a map of 1 KiB blocks
// must not make an O_DIRECT read on a device of 4 KiB sectors fail. The bytes read beyond the
// used extents are zeroed like every free byte.
constexpr uint64_t kReadAlignBytes = 4096;
// In a chunk that differs, only the blocks of this size that differ are written: a few
// rewritten pages of a 4 MiB chunk cost their own bytes, not the chunk's.
constexpr uint32_t kWriteUnitBytes = 4096;

// One read of a chunk: bytes [at, at + length) from the chunk's start.
struct ChunkRead {
  uint32_t at = 0;
  uint32_t length = 0;
  uint32_t done = 0;  // bytes read so far
};

// One chunk of the target on its way through the compare: its used bytes read into `buffer`,
// the free ones zeroed, hashed, and if it differs from the image, the image's bytes of it
// pinned for the write.
struct Slot {
  int id = 0;
  AlignedBuffer buffer;  // chunk_bytes
  uint64_t chunk = 0;
  uint64_t offset = 0;  // bytes
  uint32_t length = 0;  // bytes
  // The bytes the image's filesystem uses, in bytes from the chunk's start, ascending.
  std::vector<ByteExtent> used;
  std::vector<ChunkRead> reads;  // covering `used`
  size_t reads_left = 0;
  // Set by the hashing thread.
  Status status;
  bool differs = false;
  PinnedBytes image;  // the image's bytes of the chunk, when it differs
  // The runs of kWriteUnitBytes blocks in which the target and the image differ (offsets
  // and lengths in bytes from the chunk's start), when the chunk differs.
  std::vector<std::pair<uint32_t, uint32_t>> runs;
};

// Fills `runs` with the runs of `unit`-byte blocks in which `a` and `b` (`length` bytes each)
// differ; the last block may be short.
void DifferingRuns(const uint8_t* a, const uint8_t* b, uint32_t length, uint32_t unit,
                   std::vector<std::pair<uint32_t, uint32_t>>* runs) {
  runs->clear();
  for (uint32_t at = 0; at < length; at += unit) {
    uint32_t n = std::min(unit, length - at);
    if (std::memcmp(a + at, b + at, n) == 0) continue;
    if (!runs->empty() && runs->back().first + runs->back().second == at) {
      runs->back().second += n;
    } else {
      runs->emplace_back(at, n);
    }
  }
}

// Zeroes the bytes of `slot`'s buffer outside its used extents: the image holds zeros there.
void ZeroFreeBytes(Slot* slot) {
  uint64_t at = 0;
  uint8_t* data = slot->buffer.data();
  for (const ByteExtent& e : slot->used) {
    if (e.offset_bytes > at) std::memset(data + at, 0, e.offset_bytes - at);
    at = e.end_bytes();
  }
  if (at < slot->length) std::memset(data + at, 0, slot->length - at);
}

// Hashes target chunks and compares them with the image's hashes; for a chunk that differs,
// decodes (pins) the image's bytes of it, so decoding runs on these threads too. Each finished
// slot is handed back through TakeFinished() and `wake_fd` (an eventfd) is signalled. The
// destructor stops the threads after their current slot. Submit/TakeFinished from one thread.
class HashPool {
 public:
  HashPool(unsigned threads, ImageRandomReader* image, int wake_fd) : image_(image), wake_fd_(wake_fd) {
    for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~HashPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    work_.notify_all();
    for (std::thread& t : threads_) t.join();
  }
  void Submit(Slot* slot) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(slot);
      ++pending_;
    }
    work_.notify_one();
  }
  void TakeFinished(std::vector<Slot*>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    out->insert(out->end(), finished_.begin(), finished_.end());
    pending_ -= finished_.size();
    finished_.clear();
  }
  // Slots submitted and not yet taken back.
  size_t pending() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pending_;
  }

 private:
  void Loop() {
    const std::vector<Hash128>& hashes = image_->index().trailer.chunk_hashes;
    for (;;) {
      Slot* slot;
      {
        std::unique_lock<std::mutex> lock(mu_);
        work_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        slot = queue_.front();
        queue_.pop_front();
      }
      ZeroFreeBytes(slot);
      slot->differs = !(HashBytes(slot->buffer.data(), slot->length) == hashes[slot->chunk]);
      if (slot->differs) {
        slot->status = image_->Pin(slot->offset, slot->length, &slot->image);
        if (slot->status.ok() && (slot->image.pieces.size() != 1 || slot->image.bytes != slot->length)) {
          slot->status = Status(Code::kInternal, "chunk " + std::to_string(slot->chunk) + " was not read whole");
        }
        if (slot->status.ok()) {
          // Free blocks are zeros on both sides (unless the image holds other bytes there,
          // which are then written: never wrong, only more).
          DifferingRuns(slot->buffer.data(), static_cast<const uint8_t*>(slot->image.pieces[0].iov_base),
                        slot->length, kWriteUnitBytes, &slot->runs);
        }
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        finished_.push_back(slot);
      }
      uint64_t one = 1;
      ssize_t n = ::write(wake_fd_, &one, sizeof(one));  // fails only when the counter is full
      (void)n;
    }
  }

  ImageRandomReader* const image_;
  const int wake_fd_;
  mutable std::mutex mu_;
  std::condition_variable work_;
  std::deque<Slot*> queue_;
  std::vector<Slot*> finished_;
  size_t pending_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Pass 3: reads, compares and writes every chunk, reading only the bytes `used` marks. One
// thread drives the reads and the writes; the HashPool zeroes, hashes and decodes.
class ChangedChunkCopier {
 public:
  ChangedChunkCopier(const RestoreOptions& options, ImageRandomReader* image, const RestoreTarget& target,
                     const UsedBlockMap& used, BlockWriter* writer, RestoreReport* report)
      : options_(options), image_(image), meta_(image->meta()), target_(target), used_(used),
        writer_(writer), report_(report) {}

  Status Run() {
    wake_fd_.Reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_fd_.valid()) return Status::FromErrno(Code::kInternal, errno, "eventfd");
    const unsigned threads = std::clamp(std::thread::hardware_concurrency(), 1u, 4u);
    slots_.resize(kChunksReading + threads + 2);
    ReaderOptions ropts;
    ropts.queue_depth = kReadsInFlight;
    for (size_t i = 0; i < slots_.size(); ++i) {
      auto buffer = AlignedBuffer::AllocateHuge(meta_.chunk_bytes);
      if (!buffer.ok()) return buffer.status();
      slots_[i].id = static_cast<int>(i);
      slots_[i].buffer = std::move(buffer.value());
      ropts.buffers.push_back(slots_[i].buffer.span());
      free_.push_back(&slots_[i]);
    }
    zero_hash_full_ = HashZeros(meta_.chunk_bytes);
    zero_hash_last_ = HashZeros(meta_.ChunkLength(meta_.chunk_count() - 1));
    std::string fallback;
    auto reader = MakeBlockReader(target_.fd(), ropts, &fallback);
    if (!reader.ok()) return reader.status();
    reader_ = std::move(reader.value());
    if (!fallback.empty()) Notice(fallback + "; reading " + options_.target + " with pread instead");
    HOTSNAP_RETURN_IF_ERROR(reader_->SetWakeFd(wake_fd_.get()));
    pool_.emplace(threads, image_, wake_fd_.get());
    progress_.emplace("compare", meta_.device_bytes, options_.progress);
    Status s = Loop();
    // Nothing may still write into the slots when they go: the threads first, then the reads.
    pool_.reset();
    reader_.reset();
    if (s.ok()) progress_->Done();
    return s;
  }

 private:
  Status Loop() {
    const uint64_t count = meta_.chunk_count();
    std::vector<ReadCompletion> completions;
    std::vector<Slot*> finished;
    while (report_->chunks_compared < count) {
      if (Interrupted()) return Status(Code::kInterrupted, "interrupted during the changed-only restore");
      bool progressed = false;
      while (!free_.empty() && next_chunk_ < count && chunks_reading_ < kChunksReading &&
             reader_->in_flight() < kReadsInFlight) {
        HOTSNAP_RETURN_IF_ERROR(StartChunk(next_chunk_++));
        progressed = true;
      }
      completions.clear();
      HOTSNAP_RETURN_IF_ERROR(reader_->Reap(&completions, false));
      for (const ReadCompletion& c : completions) {
        HOTSNAP_RETURN_IF_ERROR(OnReadDone(&slots_[c.tag >> 32], static_cast<uint32_t>(c.tag), c.result));
        progressed = true;
      }
      finished.clear();
      pool_->TakeFinished(&finished);
      for (Slot* slot : finished) {
        HOTSNAP_RETURN_IF_ERROR(OnCompared(slot));
        progressed = true;
      }
      if (!progressed) HOTSNAP_RETURN_IF_ERROR(WaitForEvent());
    }
    return Status::Ok();
  }

  // Queues the reads of chunk `chunk`'s used bytes; a chunk with none whose image hash is that
  // of zeros is equal already, without a read.
  Status StartChunk(uint64_t chunk) {
    Slot* slot = free_.back();
    slot->chunk = chunk;
    slot->offset = chunk * meta_.chunk_bytes;
    slot->length = meta_.ChunkLength(chunk);
    slot->used.clear();
    used_.UsedIn(slot->offset, slot->length, &slot->used);
    if (slot->used.empty()) {
      const Hash128& zeros = chunk + 1 == meta_.chunk_count() ? zero_hash_last_ : zero_hash_full_;
      if (image_->index().trailer.chunk_hashes[chunk] == zeros) return CountCompared(slot->length);
    }
    free_.pop_back();
    slot->reads.clear();
    for (ByteExtent& e : slot->used) {
      e.offset_bytes -= slot->offset;  // from the chunk's start
      const uint64_t begin = e.offset_bytes / kReadAlignBytes * kReadAlignBytes;
      const uint64_t end = std::min<uint64_t>(
          (e.end_bytes() + kReadAlignBytes - 1) / kReadAlignBytes * kReadAlignBytes, slot->length);
      if (!slot->reads.empty() &&
          begin <= slot->reads.back().at + slot->reads.back().length + kReadThroughGapBytes) {
        slot->reads.back().length = static_cast<uint32_t>(end - slot->reads.back().at);
      } else {
        slot->reads.push_back(ChunkRead{static_cast<uint32_t>(begin), static_cast<uint32_t>(end - begin), 0});
      }
    }
    slot->reads_left = slot->reads.size();
    slot->status = Status::Ok();
    slot->differs = false;
    if (slot->reads.empty()) {  // nothing used, yet the image holds more than zeros here
      pool_->Submit(slot);
      return Status::Ok();
    }
    ++chunks_reading_;
    for (uint32_t i = 0; i < slot->reads.size(); ++i) HOTSNAP_RETURN_IF_ERROR(QueueRead(slot, i));
    return Status::Ok();
  }

  Status QueueRead(Slot* slot, uint32_t index) {
    const ChunkRead& piece = slot->reads[index];
    ReadRequest r;
    r.tag = static_cast<uint64_t>(slot->id) << 32 | index;
    r.buffer_index = slot->id;
    r.buffer_offset = piece.at + piece.done;
    r.offset_bytes = slot->offset + piece.at + piece.done;
    r.length_bytes = piece.length - piece.done;
    return reader_->Queue(r);
  }

  Status OnReadDone(Slot* slot, uint32_t index, int32_t result) {
    ChunkRead& piece = slot->reads[index];
    const uint64_t at = slot->offset + piece.at + piece.done;
    if (result == -EAGAIN || result == -EINTR) return QueueRead(slot, index);
    if (result < 0) {
      return Status::FromErrno(Code::kTarget, -result,
                               "reading target " + options_.target + " at byte offset " + std::to_string(at));
    }
    if (result == 0) {
      return Status(Code::kTarget, "reading target " + options_.target + " at byte offset " +
                                       std::to_string(at) + ": unexpected end (did it shrink?)");
    }
    piece.done += static_cast<uint32_t>(result);
    report_->target_bytes_read += static_cast<uint64_t>(result);
    if (piece.done < piece.length) return QueueRead(slot, index);  // short read: the rest
    if (--slot->reads_left > 0) return Status::Ok();
    --chunks_reading_;
    pool_->Submit(slot);
    return Status::Ok();
  }

  // A compared chunk: written if it differs; its slot is free again either way.
  Status OnCompared(Slot* slot) {
    HOTSNAP_RETURN_IF_ERROR(slot->status);
    if (slot->differs) {
      const auto* image = static_cast<const uint8_t*>(slot->image.pieces[0].iov_base);
      for (const auto& [at, n] : slot->runs) {
        auto buffer = writer_->Acquire();
        if (!buffer.ok()) return buffer.status();
        std::memcpy(buffer->data(), image + at, n);
        HOTSNAP_RETURN_IF_ERROR(writer_->Write(buffer->first(n), slot->offset + at));
        report_->bytes_written += n;
      }
      slot->image = PinnedBytes{};
      ++report_->chunks_written;
      CrashPoint("during-restore");
    }
    free_.push_back(slot);
    return CountCompared(slot->length);
  }

  Status CountCompared(uint32_t length) {
    ++report_->chunks_compared;
    compared_bytes_ += length;
    progress_->Update(compared_bytes_, 0);  // as restore's: no ratio to show
    return Status::Ok();
  }

  Status WaitForEvent() {
    if (reader_->in_flight() == 0 && pool_->pending() == 0) {
      return Status(Code::kInternal, "changed-only restore stalled with nothing in flight");
    }
    pollfd pfd{wake_fd_.get(), POLLIN, 0};
    int rc = ::poll(&pfd, 1, -1);
    if (rc < 0 && errno != EINTR) return Status::FromErrno(Code::kInternal, errno, "poll");
    uint64_t counter;
    ssize_t n = ::read(wake_fd_.get(), &counter, sizeof(counter));  // reset; EAGAIN is fine
    (void)n;
    return Status::Ok();
  }

  const RestoreOptions& options_;
  ImageRandomReader* const image_;
  const ImageMetadata& meta_;
  const RestoreTarget& target_;
  const UsedBlockMap& used_;
  BlockWriter* const writer_;
  RestoreReport* const report_;
  UniqueFd wake_fd_;
  // Declared before the reader and the pool, so both are gone before the buffers.
  std::vector<Slot> slots_;
  std::vector<Slot*> free_;
  std::unique_ptr<BlockReader> reader_;
  std::optional<HashPool> pool_;
  std::optional<ProgressLine> progress_;
  Hash128 zero_hash_full_;
  Hash128 zero_hash_last_;
  uint64_t next_chunk_ = 0;
  unsigned chunks_reading_ = 0;
  uint64_t compared_bytes_ = 0;
};

}  // namespace

Result<RestoreReport> RunChangedRestore(const RestoreOptions& options) {
  auto started = std::chrono::steady_clock::now();
  if (options.image == "-" || IsSshUrl(options.image)) {
    return Status(Code::kUsage, "--changed-only needs IMAGE as a file: it reads the image's chunks "
                                "out of order, which " + std::string(options.image == "-" ? "stdin" : "an ssh:// stream") +
                                " cannot do; copy the image to a file first, or restore without --changed-only");
  }
  if (options.force || options.overwrite) {
    return Status(Code::kUsage, std::string(options.force ? "--force" : "--overwrite") +
                                    " does not apply to --changed-only, which rewrites TARGET in place and "
                                    "only when it holds the filesystem the image was taken from");
  }
  // Pass 1: the image, for random access (a delta through its chain).
  RandomReaderOptions ro;
  ro.cache_chunks = 4;  // chunks are decoded once each, on the hashing threads
  ro.chain = options.chain;
  // Through the page cache: only the chunks that differ are decoded, few and scattered, and
  // an image rolled back to is often cached (just written, copied or verified); O_DIRECT
  // would read each from the disk again (bench/bench_changed_restore.sh, 40 chunks of 4 MiB
  // decoded: 0.35 s against 0.39-0.48 s with O_DIRECT, on a busy machine).
  ro.direct_reads = false;
  auto image = ImageRandomReader::Open(options.image, ro);
  if (!image.ok()) return image.status();
  const ImageMetadata& meta = (*image)->meta();
  Notice("rolling " + options.target + " back to " + DescribeSource(meta) + ", writing only the chunks that differ");
  // Pass 2: the target, checked before anything is written.
  auto target = RestoreTarget::OpenInPlace(options.target, meta, [&meta](const std::string& path) {
    return CheckTargetHoldsImageSource(path, meta);
  });
  if (!target.ok()) return target.status();
  // Pass 3: which blocks to compare, those the image's own filesystem uses (image_used_map.h).
  std::string why_all;
  const UsedBlockMap used = MapImageUsedBlocks(**image, &why_all);
  if (why_all.empty()) {
    Notice("comparing the " + HumanBytes(used.used_bytes()) + " the image's " + meta.fs_type +
           " uses (" + meta.used_map + ", read from the image); its free blocks are left as they are");
  } else {
    Notice("comparing every block (" + why_all + ")");
  }
  auto writer = MakeRestoreWriter(**target, options.target, options, meta);
  if (!writer.ok()) return writer.status();
  RestoreReport report;
  report.meta = meta;
  report.writer = (*writer)->name();
  report.changed_only = true;
  auto failed = [&](Status s) {
    return NotePartialRestore(std::move(s), target->get(), options.target, report.bytes_written);
  };
  // Pass 4: compare every chunk's used bytes, write the blocks that differ.
  EmitPhase("write");
  ChangedChunkCopier copier(options, image->get(), **target, used, writer->get(), &report);
  if (Status s = copier.Run(); !s.ok()) return failed(s);
  // Pass 5: durable.
  EmitPhase("publish");
  Status finished = (*writer)->Finish();
  report.background_flushes = (*writer)->flushes();
  if (!finished.ok()) return failed(finished);
  writer->reset();
  if (Status s = FinishWholeDiskTarget(meta, **target, options.target); !s.ok()) return failed(s);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

}  // namespace hotsnap
