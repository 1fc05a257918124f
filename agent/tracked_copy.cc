#include "agent/tracked_copy.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "agent/events.h"
#include "agent/progress.h"
#include "agent/used_map.h"
#include "base/log.h"
#include "fsmap/used_block_map.h"
#include "io/aligned_buffer.h"
#include "io/block_reader.h"
#include "io/chunk_codec.h"
#include "io/image_random_reader.h"
#include "snapshot/freeze_view.h"
#include "snapshot/hooks.h"
#include "snapshot/write_tracker.h"

namespace hotsnap {
namespace {

// Writes are remembered per granule: a chunk is split into 64 granules (64 KiB for 4 MiB
// chunks) and its written granules are one 64-bit mask.
constexpr uint32_t kGranulesPerChunk = 64;
// The pre-copy is cut in this many parts; the freezes between them are optional.
constexpr uint32_t kPreCopySegments = 4;

uint64_t AlignDown(uint64_t v, uint64_t a) { return v / a * a; }
uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Device bytes read under the final freeze: whole chunks (`whole`), or the byte ranges that
// changed since the chunk's newest frame in the image (`patches`, laid over that frame).
// The bytes live in the final freeze's capture buffer.
struct Captured {
  bool whole = false;
  std::vector<std::pair<ByteExtent, const uint8_t*>> patches;  // or the whole chunk, if `whole`
};

// Serves the final pass's reads from what the final freeze captured: a chunk captured whole
// from memory; any other chunk rebuilt from its newest frame in the image written so far
// (read back from the sink, decompressed, hash-checked) with the captured ranges laid over.
// So the freeze lasts as long as reading what changed, not compressing whole chunks.
class CapturedReader : public BlockReader {
 public:
  CapturedReader(const std::map<uint64_t, Captured>* captured, const ImageWriter* writer,
                 int image_fd, const ImageMetadata& meta, const ReaderOptions& options,
                 ImageRandomReader* base)
      : captured_(captured), writer_(writer), image_fd_(image_fd), meta_(meta), options_(options),
        base_(base) {
    // The frames to rebuild from were written long ago and their pages dropped: have the
    // kernel read them all now, in parallel, rather than one by one as chunks come up.
    for (const auto& [index, c] : *captured_) {
      if (c.whole) continue;
      auto at = writer_->LatestFrame(index);
      if (at.ok()) {
        ::posix_fadvise(image_fd_, static_cast<off_t>(at->offset_bytes),
                        static_cast<off_t>(at->frame_bytes), POSIX_FADV_WILLNEED);
      }
    }
  }
  const char* name() const override { return "memory"; }
  unsigned in_flight() const override { return static_cast<unsigned>(done_.size()); }
  Status SetWakeFd(int) override { return Status::Ok(); }
  Status Queue(const ReadRequest& r) override {
    uint64_t index = r.offset_bytes / meta_.chunk_bytes;
    auto it = captured_->find(index);
    if (it == captured_->end())
      return Status(Code::kInternal, "read of a chunk that was not captured");
    uint64_t chunk_offset = index * meta_.chunk_bytes;
    uint32_t chunk_length = meta_.ChunkLength(index);
    if (r.offset_bytes + r.length_bytes > chunk_offset + chunk_length) {
      return Status(Code::kInternal, "captured read crosses its chunk");
    }
    std::span<uint8_t> slot = options_.buffers[r.buffer_index];
    if (r.buffer_offset != r.offset_bytes - chunk_offset || slot.size() < chunk_length) {
      return Status(Code::kInternal, "captured read into a buffer that does not hold its chunk");
    }
    if (it->second.whole) {
      if (it->second.patches.empty()) return Status(Code::kInternal, "read of an unused chunk");
      const uint8_t* whole = it->second.patches.front().second;
      std::memcpy(slot.data() + r.buffer_offset, whole + (r.offset_bytes - chunk_offset),
                  r.length_bytes);
    } else {
      // The whole chunk is rebuilt in its slot, in place: the pipeline zeroes what lies
      // outside the used ranges afterwards.
      HOTSNAP_RETURN_IF_ERROR(Rebuild(index, it->second, slot.first(chunk_length)));
    }
    done_.push_back(ReadCompletion{r.tag, static_cast<int32_t>(r.length_bytes)});
    return Status::Ok();
  }
  Status Reap(std::vector<ReadCompletion>* out, bool) override {
    out->insert(out->end(), done_.begin(), done_.end());
    done_.clear();
    return Status::Ok();
  }

 private:
  // Fills `chunk` (the chunk's bytes, from its start) with its newest frame and the patches.
  Status Rebuild(uint64_t index, const Captured& captured, std::span<uint8_t> chunk) {
    auto at = writer_->LatestFrame(index);
    if (!at.ok() && at.status().code() == Code::kUnsupported && base_ != nullptr) {
      // A delta's chunk that is still the parent's: its bytes are the parent's (the reader
      // checks them against the parent's hash, which is the one this image records).
      auto n = base_->Read(index * meta_.chunk_bytes, chunk.size(), chunk.data());
      if (!n.ok()) return n.status().Wrap("reading chunk " + std::to_string(index) + " of the parent");
      if (*n != chunk.size()) return Status(Code::kIntegrity, "the parent image ends inside chunk " + std::to_string(index));
      return LayPatches(index, captured, chunk);
    }
    if (!at.ok()) return at.status();
    std::string where = "chunk " + std::to_string(index) + " of the image being written (byte " +
                        std::to_string(at->offset_bytes) + ")";
    frame_.resize(at->frame_bytes);
    size_t done = 0;
    while (done < frame_.size()) {
      ssize_t n = ::pread(image_fd_, frame_.data() + done, frame_.size() - done,
                          static_cast<off_t>(at->offset_bytes + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        return Status::FromErrno(Code::kTarget, n < 0 ? errno : EIO, "reading back " + where);
      done += static_cast<size_t>(n);
    }
    if (!decompressor_) {
      auto d = ChunkDecompressor::Create(WindowLogFor(meta_.chunk_bytes));
      if (!d.ok()) return d.status();
      decompressor_ = std::move(d.value());
    }
    if (at->decompressed_bytes != chunk.size()) {
      return Status(Code::kTarget, "reading back " + where + ": its frame holds " +
                                       std::to_string(at->decompressed_bytes) + " bytes, not " +
                                       std::to_string(chunk.size()));
    }
    std::span<uint8_t> out = chunk;
    Status s = decompressor_->Decompress(frame_, out, at->decompressed_bytes);
    if (!s.ok()) return s.Wrap("reading back " + where);
    if (HashBytes(out.data(), out.size()) != at->hash) {
      return Status(Code::kTarget, "reading back " + where +
                                       ": its bytes no longer match their hash; the output "
                                       "storage returned different data than was written");
    }
    return LayPatches(index, captured, chunk);
  }

  // Copies the captured ranges over the chunk with process_vm_readv on this very process:
  // the kernel copies through its own mapping of the pages. The capture buffer's pages
  // were filled by the kernel (O_DIRECT) and never touched from user space; under shadow
  // paging (some VMs) user space's first touch of each 4 KiB page costs a fault, which made
  // a plain memcpy take ~6 ms per chunk. Falls back to memcpy where the call is refused.
  Status LayPatches(uint64_t index, const Captured& captured, std::span<uint8_t> chunk) {
    const uint64_t chunk_offset = index * meta_.chunk_bytes;
    std::vector<iovec> local, remote;
    size_t total = 0;
    for (const auto& [range, bytes] : captured.patches) {
      local.push_back(
          iovec{chunk.data() + (range.offset_bytes - chunk_offset), range.length_bytes});
      remote.push_back(iovec{const_cast<uint8_t*>(bytes), range.length_bytes});
      total += range.length_bytes;
    }
    size_t done = 0;
    if (kernel_copy_) {
      for (size_t i = 0; i < local.size(); i += IOV_MAX) {
        size_t n = std::min<size_t>(IOV_MAX, local.size() - i);
        ssize_t copied = ::process_vm_readv(::getpid(), &local[i], n, &remote[i], n, 0);
        size_t want = 0;
        for (size_t k = i; k < i + n; ++k) want += local[k].iov_len;
        if (copied != static_cast<ssize_t>(want)) {  // refused (seccomp, ptrace policy): memcpy
          kernel_copy_ = false;
          break;
        }
        done += want;
      }
    }
    if (done == total) return Status::Ok();
    for (const auto& [range, bytes] : captured.patches) {
      std::memcpy(chunk.data() + (range.offset_bytes - chunk_offset), bytes, range.length_bytes);
    }
    return Status::Ok();
  }

  const std::map<uint64_t, Captured>* captured_;
  const ImageWriter* writer_;
  int image_fd_;
  const ImageMetadata& meta_;
  ReaderOptions options_;
  std::vector<ReadCompletion> done_;
  std::vector<uint8_t> frame_;
  std::unique_ptr<ChunkDecompressor> decompressor_;
  bool kernel_copy_ = true;  // LayPatches may use process_vm_readv
  ImageRandomReader* base_;  // a delta's parent, or null
};

class TrackedCopy {
 public:
  TrackedCopy(const TrackedOptions& options, const SourceDevice& source, ImageMetadata* meta,
              ImageWriter* writer, int image_fd, std::unique_ptr<WriteTracker> tracker)
      : options_(options),
        source_(source),
        meta_(meta),
        writer_(writer),
        image_fd_(image_fd),
        tracker_(std::move(tracker)) {}
  Result<TrackedResult> Run();

 private:
  Result<UsedBlockMap> MapNow();
  static constexpr std::chrono::milliseconds kMaxRendezvousWait{16000};
  std::chrono::milliseconds rendezvous_wait_{0};  // set by Run()
  std::set<std::string> announced_;  // the maps' notices printed so far
  // Freezes the group; a final freeze of a copy in a rendezvous joins the other sources'
  // instead, and is nullptr when they are not all at their consistency point yet.
  Result<std::unique_ptr<HeldFreeze>> Freeze(bool final_freeze);
  Status EndFreeze(std::unique_ptr<HeldFreeze> view);
  // Drains the tracker into written_; a loss marks everything written (or fails, if final).
  Status CollectWrites(bool final_freeze);
  uint64_t GranuleBytes() const { return meta_->chunk_bytes / kGranulesPerChunk; }
  // Fills *a and *b with the used ranges of chunk `c` in `before` and `after`; true if they
  // differ.
  bool UsedChanged(const UsedBlockMap& before, const UsedBlockMap& after, uint64_t c,
                   std::vector<ByteExtent>* a, std::vector<ByteExtent>* b) const {
    a->clear();
    b->clear();
    before.UsedIn(c * meta_->chunk_bytes, meta_->ChunkLength(c), a);
    after.UsedIn(c * meta_->chunk_bytes, meta_->ChunkLength(c), b);
    return *a != *b;
  }
  // The chunks to copy again (written ones, plus those whose used blocks changed) and the
  // bytes of the granules written; clears written_.
  std::vector<uint64_t> TakeDirty(const UsedBlockMap& before, const UsedBlockMap& after,
                                  uint64_t* written_bytes);
  // For the final freeze: what to read of each chunk in `chunks` so it can be rebuilt from
  // its newest frame (`written` holds their granule masks); the byte total in *bytes.
  std::map<uint64_t, std::vector<ByteExtent>> PlanCapture(const std::vector<uint64_t>& chunks,
                                                          const std::vector<uint64_t>& written,
                                                          const UsedBlockMap& before,
                                                          const UsedBlockMap& after,
                                                          uint64_t* bytes);
  // Reads the plan into captured_; false if `deadline` passed first (captured_ is then
  // incomplete and must be dropped).
  Result<bool> Capture(const std::map<uint64_t, std::vector<ByteExtent>>& plan,
                       std::chrono::steady_clock::time_point deadline);
  // The pre-copy, in kPreCopySegments parts of about equal used bytes; between two, a
  // MidFreeze when it pays.
  Status PreCopy(UsedBlockMap* map);
  // At the boundary before chunk `next`: when the writes collected so far touch at least
  // options_.mid_freeze_chunks chunks not copied yet, a brief freeze makes a clean point. Those
  // chunks are read after it, so the writes to them so far need no copying again; the map is
  // renewed, and a copied chunk whose used blocks changed is treated as written whole.
  Status MidFreeze(uint64_t next, UsedBlockMap* map);
  Status Copy(const std::vector<uint64_t>& chunks, const UsedBlockMap& map, uint32_t round,
              const PipelineOptions& base);
  uint64_t BytesOf(const std::vector<uint64_t>& chunks) const;
  // The bytes of `chunks` in use in `map`: what the pipeline reads of them.
  uint64_t UsedBytesOf(const std::vector<uint64_t>& chunks, const UsedBlockMap& map) const;

  const TrackedOptions& options_;
  const SourceDevice& source_;
  ImageMetadata* meta_;
  ImageWriter* writer_;
  int image_fd_;
  std::unique_ptr<WriteTracker> tracker_;
  std::unique_ptr<ImageRandomReader> base_reader_;  // a delta's parent (options_.base_path)
  std::vector<uint64_t> written_;  // per chunk: granules written since the last freeze
  std::map<uint64_t, Captured> captured_;
  AlignedBuffer capture_buffer_;  // holds captured_'s bytes
  std::unique_ptr<ChunkPipeline> pipeline_;
  TrackedResult result_;
};

Result<UsedBlockMap> TrackedCopy::MapNow() {
  // Each fallback is announced once, at the first map that finds it, not at every round.
  return MapUsedBlocks(source_, options_.all_blocks, true, &announced_);
}

Result<std::unique_ptr<HeldFreeze>> TrackedCopy::Freeze(bool final_freeze) {
  EmitPhase(final_freeze ? "final-freeze" : "freeze");
  if (final_freeze && options_.rendezvous != nullptr) {
    auto share = options_.rendezvous->Join(rendezvous_wait_);
    if (!share.ok()) return share.status();
    // The others are still far from theirs: wait longer next time, so that waiting costs
    // fewer freezes of this source (each timeout is followed by a round and its freeze).
    if (*share == nullptr) rendezvous_wait_ = std::min(rendezvous_wait_ * 2, kMaxRendezvousWait);
    return std::unique_ptr<HeldFreeze>(std::move(share.value()));
  }
  FreezeViewOptions f;
  f.source = source_.path;
  f.mount_points = options_.mount_points;
  f.max_freeze = options_.max_freeze;
  if (final_freeze) f.hooks = options_.hooks;  // the consistency point is the final freeze
  auto view = FreezeView::Open(f);
  if (!view.ok()) return view.status();
  return std::unique_ptr<HeldFreeze>(std::move(view.value()));
}

Status TrackedCopy::EndFreeze(std::unique_ptr<HeldFreeze> view) {
  Status s = view->Release();
  result_.report.freeze_ms.push_back(view->frozen_for().count());
  EmitFreezeWindow(JoinMountPoints(options_.mount_points), view->frozen_for().count() / 1000.0);
  return s;
}

Status TrackedCopy::CollectWrites(bool final_freeze) {
  const uint64_t chunk = meta_->chunk_bytes;
  const uint64_t granule = GranuleBytes();
  auto lost = tracker_->Drain([&](uint64_t offset, uint64_t length) {
    uint64_t end = std::min(offset + length, meta_->device_bytes);
    for (uint64_t g = offset / granule; g * granule < end; ++g) {
      uint64_t c = g * granule / chunk;
      uint64_t bit = g % kGranulesPerChunk;
      if (bit == 0 && (g + kGranulesPerChunk) * granule <= end) {
        written_[c] = ~uint64_t{0};  // the whole chunk at once (large discards)
        g += kGranulesPerChunk - 1;
      } else {
        written_[c] |= uint64_t{1} << bit;
      }
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
  std::fill(written_.begin(), written_.end(), ~uint64_t{0});
  return Status::Ok();
}

std::vector<uint64_t> TrackedCopy::TakeDirty(const UsedBlockMap& before, const UsedBlockMap& after,
                                             uint64_t* written_bytes) {
  std::vector<uint64_t> chunks;
  std::vector<ByteExtent> a, b;
  *written_bytes = 0;
  for (uint64_t c = 0; c < written_.size(); ++c) {
    bool take = written_[c] != 0;
    *written_bytes += static_cast<uint64_t>(std::popcount(written_[c])) * GranuleBytes();
    if (!take) {
      take = UsedChanged(before, after, c, &a, &b);
    }
    if (take) chunks.push_back(c);
    written_[c] = 0;
  }
  return chunks;
}

std::map<uint64_t, std::vector<ByteExtent>> TrackedCopy::PlanCapture(
    const std::vector<uint64_t>& chunks, const std::vector<uint64_t>& written,
    const UsedBlockMap& before, const UsedBlockMap& after, uint64_t* bytes) {
  std::map<uint64_t, std::vector<ByteExtent>> plan;
  const uint64_t granule = GranuleBytes();
  const uint64_t align = source_.direct_io ? source_.dio_alignment_bytes : 1;
  std::vector<ByteExtent> a, b;
  *bytes = 0;
  for (uint64_t c : chunks) {
    const uint64_t begin = c * meta_->chunk_bytes;
    const uint64_t end = begin + meta_->ChunkLength(c);
    std::vector<ByteExtent> want;
    if (UsedChanged(before, after, c, &a, &b) || image_fd_ < 0) {
      // No frame to rebuild from (the output cannot be read back), or blocks became used
      // that the newest frame holds as zeros: read all that is used now.
      want = b;
    } else {
      // The newest frame is right except where the device was written since: read those
      // granules (only their used part matters; the pipeline zeroes the rest).
      for (uint32_t bit = 0; bit < kGranulesPerChunk; ++bit) {
        if ((written[c] >> bit & 1) == 0) continue;
        uint64_t from = begin + bit * granule;
        if (from >= end) break;
        uint64_t to = std::min(from + granule, end);
        if (!want.empty() && want.back().end_bytes() == from) {
          want.back().length_bytes += to - from;
        } else {
          want.push_back(ByteExtent{from, to - from});
        }
      }
    }
    // O_DIRECT wants aligned reads; widening stays inside the chunk (chunks are aligned).
    for (ByteExtent& e : want) {
      uint64_t from = std::max(AlignDown(e.offset_bytes, align), begin);
      uint64_t to = std::min(AlignUp(e.end_bytes(), align), end);
      e = ByteExtent{from, to - from};
      *bytes += e.length_bytes;
    }
    plan[c] = std::move(want);
  }
  return plan;
}

Result<bool> TrackedCopy::Capture(const std::map<uint64_t, std::vector<ByteExtent>>& plan,
                                  std::chrono::steady_clock::time_point deadline) {
  // One buffer for all of it, kept for the next attempt. Plain pages: huge ones would
  // have to be zeroed first, under the freeze.
  const bool whole = image_fd_ < 0;
  uint64_t total = 0;
  for (const auto& [c, ranges] : plan) {
    if (whole) {
      if (!ranges.empty()) total += meta_->ChunkLength(c);
    } else {
      for (const ByteExtent& e : ranges) total += e.length_bytes;
    }
  }
  if (capture_buffer_.size() < total) {
    capture_buffer_ = AlignedBuffer();
    auto buffer = AlignedBuffer::Allocate(total);
    if (!buffer.ok()) return buffer.status();
    capture_buffer_ = std::move(buffer.value());
  }
  uint8_t* next = capture_buffer_.data();
  for (const auto& [c, ranges] : plan) {
    Captured& captured = captured_[c];
    captured.whole = whole;
    if (ranges.empty()) continue;  // nothing used now: the pipeline writes the zero frame
    if (whole) {
      // The whole chunk; the bytes between the ranges are never read (the pipeline zeroes
      // unused ranges anyway).
      captured.patches.emplace_back(ByteExtent{c * meta_->chunk_bytes, meta_->ChunkLength(c)},
                                    next);
      next += meta_->ChunkLength(c);
    }
    for (const ByteExtent& e : ranges) {
      uint8_t* into = nullptr;
      if (whole) {
        into = const_cast<uint8_t*>(captured.patches.front().second) +
               (e.offset_bytes - c * meta_->chunk_bytes);
      } else {
        into = next;
        next += e.length_bytes;
      }
      uint64_t done = 0;
      while (done < e.length_bytes) {
        ssize_t n = ::pread(source_.fd.get(), into + done, e.length_bytes - done,
                            static_cast<off_t>(e.offset_bytes + done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
          return Status::FromErrno(Code::kSource, n < 0 ? errno : EIO,
                                   "reading " + source_.path + " at byte offset " +
                                       std::to_string(e.offset_bytes + done));
        }
        done += static_cast<uint64_t>(n);
      }
      result_.bytes_read += e.length_bytes;
      if (!whole) captured.patches.emplace_back(e, into);
      if (std::chrono::steady_clock::now() > deadline) return false;
    }
  }
  return true;
}

Status TrackedCopy::PreCopy(UsedBlockMap* map) {
  // Segment ends: the first chunk past each kPreCopySegments-th of the used bytes.
  std::vector<ByteExtent> used;
  map->UsedIn(0, meta_->device_bytes, &used);
  uint64_t total = 0;
  for (const ByteExtent& e : used) total += e.length_bytes;
  std::vector<uint64_t> ends;
  uint64_t seen = 0;
  size_t i = 0;
  for (uint32_t k = 1; k < kPreCopySegments; ++k) {
    const uint64_t target = total / kPreCopySegments * k;
    while (i < used.size() && seen + used[i].length_bytes < target) seen += used[i++].length_bytes;
    if (i == used.size()) break;
    uint64_t at = used[i].offset_bytes + (target - seen);
    uint64_t end =
        std::min(AlignUp(at, meta_->chunk_bytes) / meta_->chunk_bytes, meta_->chunk_count());
    if (ends.empty() || end > ends.back()) ends.push_back(end);
  }
  if (ends.empty() || ends.back() < meta_->chunk_count()) ends.push_back(meta_->chunk_count());
  uint64_t begin = 0;
  for (uint64_t end : ends) {
    if (begin > 0) HOTSNAP_RETURN_IF_ERROR(MidFreeze(begin, map));
    std::vector<uint64_t> chunks;
    chunks.reserve(end - begin);
    for (uint64_t c = begin; c < end; ++c) chunks.push_back(c);
    HOTSNAP_RETURN_IF_ERROR(Copy(chunks, *map, 0, options_.pipeline));
    begin = end;
  }
  return Status::Ok();
}

Status TrackedCopy::MidFreeze(uint64_t next, UsedBlockMap* map) {
  HOTSNAP_RETURN_IF_ERROR(CollectWrites(false));
  uint64_t ahead = 0;
  for (uint64_t c = next; c < written_.size(); ++c) ahead += written_[c] != 0;
  // Such a freeze costs a few tens of milliseconds in all (sync, freeze, map, the pipeline
  // draining); it pays when it spares copying several chunks again.
  if (ahead == 0 || ahead < options_.mid_freeze_chunks) return Status::Ok();
  auto view = Freeze(false);
  if (!view.ok()) return view.status();
  HOTSNAP_RETURN_IF_ERROR(CollectWrites(false));
  auto renewed = MapNow();
  if (!renewed.ok()) return renewed.status().WithCleanup(EndFreeze(std::move(view.value())));
  HOTSNAP_RETURN_IF_ERROR(EndFreeze(std::move(view.value())));
  // written_ holds what was collected under the freeze; nothing drains it until the next
  // CollectWrites, so it can be sorted out after the thaw.
  std::vector<ByteExtent> a, b;
  for (uint64_t c = 0; c < next; ++c) {
    if (written_[c] == ~uint64_t{0}) continue;
    if (UsedChanged(*map, *renewed, c, &a, &b)) written_[c] = ~uint64_t{0};
  }
  std::fill(written_.begin() + static_cast<std::ptrdiff_t>(next), written_.end(), 0);
  *map = std::move(renewed.value());
  return Status::Ok();
}

uint64_t TrackedCopy::UsedBytesOf(const std::vector<uint64_t>& chunks,
                                  const UsedBlockMap& map) const {
  if (map.all_blocks()) return BytesOf(chunks);
  std::vector<ByteExtent> used;
  uint64_t bytes = 0;
  for (uint64_t c : chunks) {
    used.clear();
    map.UsedIn(c * meta_->chunk_bytes, meta_->ChunkLength(c), &used);
    for (const ByteExtent& e : used) bytes += e.length_bytes;
  }
  return bytes;
}

uint64_t TrackedCopy::BytesOf(const std::vector<uint64_t>& chunks) const {
  uint64_t bytes = 0;
  for (uint64_t c : chunks) bytes += meta_->ChunkLength(c);
  return bytes;
}

Status TrackedCopy::Copy(const std::vector<uint64_t>& chunks, const UsedBlockMap& map,
                         uint32_t round, const PipelineOptions& base) {
  EmitPhase(round == 0 ? "precopy" : "recopy");
  PipelineOptions p = base;
  p.chunks = chunks;
  // The pre-copy skips compressing chunks equal to the parent's; a round announces its
  // chunks before they are read, so each one gets a frame.
  p.base_hashes = round == 0 && !options_.base_hashes.empty() ? &options_.base_hashes : nullptr;
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
    if (p.progress != nullptr) p.progress->AddWork(UsedBytesOf(chunks, map));
    emit = [this](uint64_t index, std::span<const uint8_t> frame, uint32_t length,
                  const Hash128& hash) {
      return writer_->AppendRecopy(index, frame, length, hash);
    };
    result_.report.recopied_bytes += BytesOf(chunks);
  }
  if (!pipeline_) {
    // One pipeline for every round: later rounds find their buffers and zstd contexts warm.
    auto created = ChunkPipeline::Create(source_, *meta_, p);
    if (!created.ok()) return created.status();
    pipeline_ = std::move(created.value());
  }
  auto stats = pipeline_->Run(p, emit);
  if (!stats.ok()) return stats.status();
  result_.bytes_read += stats->bytes_read;
  result_.zero_chunks += stats->zero_chunks;
  if (result_.reader.empty()) result_.reader = stats->reader;
  return Status::Ok();
}

Result<TrackedResult> TrackedCopy::Run() {
  written_.assign(meta_->chunk_count(), 0);
  rendezvous_wait_ = options_.rendezvous_wait;

  // The clean starting point: every write recorded so far finished before the freeze
  // returned, so the pre-copy will read its result.
  auto view = Freeze(false);
  if (!view.ok()) return view.status();
  HOTSNAP_RETURN_IF_ERROR(tracker_->Drain([](uint64_t, uint64_t) {}).status());
  auto first_map = MapNow();
  if (!first_map.ok()) return first_map.status();
  HOTSNAP_RETURN_IF_ERROR(EndFreeze(std::move(view.value())));
  UsedBlockMap map = std::move(first_map.value());
  if (options_.pipeline.progress != nullptr) {
    options_.pipeline.progress->SetTotal(map.used_bytes());
  }

  RecordMap(map, meta_);
  meta_->layout = options_.base_hashes.empty() ? Layout::kTracked : Layout::kDelta;
  if (!options_.base_path.empty()) {
    auto base = ImageRandomReader::Open(options_.base_path, RandomReaderOptions{.cache_chunks = 2});
    if (!base.ok()) return base.status().Wrap("--base " + options_.base_path);
    base_reader_ = std::move(base.value());
  }
  HOTSNAP_RETURN_IF_ERROR(writer_->Begin(*meta_, options_.base_hashes));
  HOTSNAP_RETURN_IF_ERROR(PreCopy(&map));

  // Rounds while the system runs, until the writes of one are few enough to read under a
  // freeze. With pre-freeze or post-thaw hooks the final freeze is chosen before freezing
  // (they run around it alone): the one after a round whose writes were few. Otherwise any
  // freeze becomes the final one as soon as it finds few writes, which saves a round; a
  // while-frozen hook then runs once that is known.
  // So is a final freeze shared with other sources (a rendezvous): they all freeze at once.
  const HookSet& hooks = options_.hooks;
  const bool has_hooks = !hooks.pre_freeze.empty() || !hooks.post_thaw.empty();
  const bool choose_final_first = has_hooks || options_.rendezvous != nullptr;
  uint32_t round = 0;
  uint64_t last_written = UINT64_MAX;
  std::unique_ptr<HeldFreeze> frozen;
  std::vector<uint64_t> last;
  bool in_memory = false;
  for (;;) {
    bool planned_final = round >= options_.max_rounds ||
                         (choose_final_first && last_written <= options_.final_round_bytes);
    // Most of the round's writes are collected before freezing: less to do under it.
    uint64_t lost_before = result_.report.lost_events;
    HOTSNAP_RETURN_IF_ERROR(CollectWrites(planned_final));
    auto v = Freeze(planned_final);
    if (!v.ok()) return v.status();
    if (*v == nullptr) {
      // The other sources are still copying: another round of this one meanwhile.
      planned_final = false;
      v = Freeze(false);
      if (!v.ok()) return v.status();
    }
    frozen = std::move(v.value());
    HOTSNAP_RETURN_IF_ERROR(CollectWrites(planned_final));
    auto next = MapNow();
    if (!next.ok()) return next.status();
    std::vector<uint64_t> written = written_;
    std::vector<uint64_t> chunks = TakeDirty(map, *next, &last_written);
    // What this freeze would have to read to be the final one: the written granules, or
    // whole chunks when the image cannot be read back.
    uint64_t capture_bytes = 0;
    auto plan = PlanCapture(chunks, written, map, *next, &capture_bytes);
    bool final_freeze = planned_final || (!choose_final_first &&
                                          result_.report.lost_events == lost_before &&
                                          capture_bytes <= options_.final_round_bytes);
    if (final_freeze) {
      in_memory = capture_bytes <= options_.capture_limit_bytes &&
                  (image_fd_ >= 0 || BytesOf(chunks) <= options_.capture_limit_bytes);
      // An unplanned final freeze gives up if reading would take it past its budget (a slow
      // or busy disk, a big last round): it thaws and copies another round instead, so no
      // freeze outlasts the budget by much.
      auto deadline = planned_final ? std::chrono::steady_clock::time_point::max()
                                    : std::chrono::steady_clock::now() +
                                          options_.final_freeze_budget - frozen->frozen_for();
      bool captured = true;
      if (in_memory) {
        auto done = Capture(plan, deadline);
        if (!done.ok()) return done.status();
        captured = *done;
      }
      if (captured) {
        if (!planned_final) {
          Status during = RunHook("while-frozen", hooks.while_frozen, hooks, source_.path,
                                  HookMountPoints(options_.mount_points));
          if (!during.ok()) return during.WithCleanup(EndFreeze(std::move(frozen)));
        }
        result_.report.final_capture_bytes = in_memory ? capture_bytes : BytesOf(chunks);
        last = std::move(chunks);
        map = std::move(next.value());
        break;
      }
      captured_.clear();
    }
    HOTSNAP_RETURN_IF_ERROR(EndFreeze(std::move(frozen)));
    map = std::move(next.value());
    if (!chunks.empty()) HOTSNAP_RETURN_IF_ERROR(Copy(chunks, map, ++round, options_.pipeline));
  }

  // Still frozen, at the image's point in time, with what changed since each chunk's newest
  // frame read: thaw, then rebuild those chunks from the image and compress them.
  PipelineOptions p = options_.pipeline;
  if (in_memory) {
    HOTSNAP_RETURN_IF_ERROR(EndFreeze(std::move(frozen)));
    p.make_reader = [this](const ReaderOptions& r,
                           std::string*) -> Result<std::unique_ptr<BlockReader>> {
      return std::unique_ptr<BlockReader>(
          new CapturedReader(&captured_, writer_, image_fd_, *meta_, r, base_reader_.get()));
    };
  } else {
    // Too much was written in the last round to hold in memory: copy it under the freeze,
    // bounded by --max-freeze.
    Notice("the last round's writes touch " + HumanBytes(BytesOf(last)) +
           ", more than the final freeze holds in memory; copying them while frozen "
           "(at most --max-freeze)");
    HeldFreeze* f = frozen.get();
    p.check = [f] { return f->Check(); };
    p.rate_limit_bytes_per_s = 0;
  }
  if (!last.empty()) HOTSNAP_RETURN_IF_ERROR(Copy(last, map, ++round, p));
  if (!in_memory) HOTSNAP_RETURN_IF_ERROR(EndFreeze(std::move(frozen)));
  captured_.clear();

  result_.report.rounds = round;
  result_.report.used_bytes = map.used_bytes();
  if (std::string final_map = DescribeMap(map); final_map != meta_->used_map) {
    result_.report.used_map = final_map;
  }
  return result_;
}

}  // namespace

Result<TrackedResult> RunTrackedCopy(const TrackedOptions& options, const SourceDevice& source,
                                     ImageMetadata* meta, ImageWriter* writer, int image_fd,
                                     std::unique_ptr<WriteTracker> tracker) {
  if (meta->chunk_bytes % kGranulesPerChunk != 0) {
    return Status(Code::kInternal, "chunk size is not a multiple of " +
                                       std::to_string(kGranulesPerChunk) + " bytes");
  }
  if (!tracker) return Status(Code::kInternal, "tracked copy without a write tracker");
  TrackedCopy copy(options, source, meta, writer, image_fd, std::move(tracker));
  return copy.Run();
}

}  // namespace hotsnap
