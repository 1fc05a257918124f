// The restore job: image → checks on the target → chunks written in order → fsync →
// (for a file target) publish under the final name.
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>

#include "agent/changed_restore.h"
#include "agent/events.h"
#include "agent/image_jobs.h"
#include "agent/privileges.h"
#include "agent/progress.h"
#include "agent/restore_target.h"
#include "base/crash_point.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "io/block_writer.h"
#include "io/image_random_reader.h"
#include "io/image_scanner.h"

namespace hotsnap {
namespace {

class RestoreVisitor : public ScanVisitor {
 public:
  RestoreVisitor(const RestoreOptions& options, RestoreReport* report)
      : options_(options), report_(report) {}

  Status OnMetadata(const ImageMetadata& meta) override {
    if (meta.layout == Layout::kDelta && !from_chain_) {
      return Status(Code::kUnsupported,
                    "image " + options_.image + " is a delta image (of " +
                        (meta.base ? meta.base->image : std::string("?")) +
                        "): a stream holds only its changed chunks; restore it from its file, with "
                        "its parents beside it (or in --chain DIR)");
    }
    Notice("restoring " + DescribeSource(meta));
    auto target = RestoreTarget::OpenForReplace(options_.target, meta, options_.overwrite, options_.force);
    if (!target.ok()) return target.status();
    target_ = std::move(target.value());
    auto writer = MakeRestoreWriter(*target_, options_.target, options_, meta);
    if (!writer.ok()) return writer.status();
    writer_ = std::move(writer.value());
    report_->meta = meta;
    report_->writer = writer_->name();
    progress_.emplace("restore", meta.device_bytes, options_.progress);
    return Status::Ok();
  }

  Status OnChunk(uint64_t index, uint64_t offset, std::span<const uint8_t> data, bool zero) override {
    progress_->Update(offset + data.size(), 0);
    // A hole already reads as zeros, unless an earlier version of this chunk (a tracked
    // image read from a stream) was written there.
    if (written_.size() <= index) written_.resize(index + 1, false);
    if (zero && target_->is_file() && !written_[index]) {
      ++report_->zero_chunks_skipped;
      return Status::Ok();
    }
    written_[index] = true;
    auto buffer = writer_->Acquire();
    if (!buffer.ok()) return buffer.status();
    std::memcpy(buffer->data(), data.data(), data.size());
    HOTSNAP_RETURN_IF_ERROR(writer_->Write(buffer->first(data.size()), offset));
    report_->bytes_written += data.size();
    CrashPoint("during-restore");
    return Status::Ok();
  }

  Status Finish() {
    progress_->Done();
    Status finished = writer_->Finish();
    report_->background_flushes = writer_->flushes();
    HOTSNAP_RETURN_IF_ERROR(finished);
    writer_.reset();
    return target_->Commit();
  }
  const RestoreTarget* target() const { return target_.get(); }
  void set_from_chain() { from_chain_ = true; }

 private:
  const RestoreOptions& options_;
  RestoreReport* report_;
  std::unique_ptr<RestoreTarget> target_;
  std::unique_ptr<BlockWriter> writer_;
  std::optional<ProgressLine> progress_;
  std::vector<bool> written_;  // chunks written so far
  bool from_chain_ = false;    // chunks come from a delta's chain (RestoreFromChain)
};

// A delta image: every chunk read through its chain (from the newest image holding it,
// checked against the newest image's hash) and handed to the visitor in order.
Status RestoreFromChain(const RestoreOptions& options, RestoreVisitor* visitor) {
  RandomReaderOptions ro;
  ro.cache_chunks = 8;
  ro.readahead_chunks = 4;
  ro.readahead_threads = 2;
  ro.chain = options.chain;
  auto reader = ImageRandomReader::Open(options.image, ro);
  if (!reader.ok()) return reader.status();
  const ImageMetadata& meta = (*reader)->meta();
  visitor->set_from_chain();
  HOTSNAP_RETURN_IF_ERROR(visitor->OnMetadata(meta));
  const Trailer& trailer = (*reader)->index().trailer;
  const Hash128 zero_full = HashZeros(meta.chunk_bytes);
  for (uint64_t i = 0; i < meta.chunk_count(); ++i) {
    if (Interrupted()) return Status(Code::kInterrupted, "interrupted during the restore");
    const uint32_t length = meta.ChunkLength(i);
    const bool zero = trailer.chunk_hashes[i] == (length == meta.chunk_bytes ? zero_full : HashZeros(length));
    PinnedBytes pinned;
    HOTSNAP_RETURN_IF_ERROR((*reader)->Pin(i * meta.chunk_bytes, length, &pinned));
    if (pinned.pieces.size() != 1 || pinned.bytes != length) {
      return Status(Code::kInternal, "chunk " + std::to_string(i) + " was not read whole");
    }
    HOTSNAP_RETURN_IF_ERROR(visitor->OnChunk(
        i, i * meta.chunk_bytes,
        std::span<const uint8_t>(static_cast<const uint8_t*>(pinned.pieces[0].iov_base), length), zero));
  }
  return Status::Ok();
}

}  // namespace

Result<RestoreReport> RunRestore(const RestoreOptions& options) {
  auto started = std::chrono::steady_clock::now();
  EmitPhase("open");
  HOTSNAP_RETURN_IF_ERROR(CheckRootForDevice(options.target, "restore onto", Code::kTarget));
  if (options.changed_only) return RunChangedRestore(options);
  auto image = OpenImage(options.image, options.ssh_options);
  if (!image.ok()) return image.status();
  EmitPhase("write");
  RestoreReport report;
  RestoreVisitor visitor(options, &report);
  const Trailer* expected = image->index ? &image->index->trailer : nullptr;
  // A device that got some of the image's bytes says so (a file target is removed).
  auto failed = [&](Status s) {
    return NotePartialRestore(std::move(s), visitor.target(), options.target, report.bytes_written);
  };
  if (image->index && image->index->meta.layout == Layout::kDelta) {
    Status restored = RestoreFromChain(options, &visitor);
    if (!restored.ok()) return failed(restored);
  } else {
    auto scan = ScanImage(image->fd, image->name, expected, &visitor);
    if (!scan.ok()) return failed(ExplainImageReadFailure(image.value(), scan.status()));
  }
  EmitPhase("publish");
  // The last writes can fail here, after every chunk was queued.
  if (Status s = visitor.Finish(); !s.ok()) return failed(s);
  // A whole-disk GPT image on a larger disk: its backup table goes to the disk's new end.
  if (Status s = FinishWholeDiskTarget(report.meta, *visitor.target(), options.target); !s.ok()) {
    return failed(s);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

}  // namespace hotsnap
