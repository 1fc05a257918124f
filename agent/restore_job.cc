// The restore job: image → checks on the target → chunks written in order → fsync →
// (for a file target) publish under the final name.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>

#include "agent/events.h"
#include "agent/image_jobs.h"
#include "agent/privileges.h"
#include "agent/progress.h"
#include "base/crash_point.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "io/block_writer.h"
#include "io/gpt_backup.h"
#include "io/image_random_reader.h"
#include "io/image_scanner.h"
#include "io/partition_table.h"
#include "io/sink.h"
#include "io/source_device.h"
#include "snapshot/device_use.h"
#include "snapshot/source_lock.h"

namespace hotsnap {
namespace {

// Where restored bytes go. A block device is locked against other hotsnap runs (a backup of
// it, another restore: SourceLock) and opened exclusively; a regular file is built under a
// temporary name (sparse: zero chunks stay holes) and renamed on Commit().
class RestoreTarget {
 public:
  ~RestoreTarget() {
    if (!temp_.empty() && !committed_) ::unlink(temp_.c_str());
  }
  static Result<std::unique_ptr<RestoreTarget>> Open(const std::string& path, const ImageMetadata& meta,
                                                     bool overwrite, bool force);
  int fd() const { return fd_.get(); }
  bool is_file() const { return is_file_; }
  Status Commit();

 private:
  std::string path_;
  std::string temp_;
  std::optional<SourceLock> lock_;  // block devices only; released after the fd is closed
  UniqueFd fd_;
  bool is_file_ = false;
  bool committed_ = false;
};

// A restore destroys what the target device holds. Onto a blank device, or back onto the
// filesystem the image was taken from (same UUID: restoring a server's own disk), it goes
// ahead; a device holding anything else libblkid recognises (another filesystem, swap, a
// RAID or LVM member, a partition table of any kind, a protective MBR) is refused unless
// --force, because that is what a restore over the wrong disk looks like. A partition table
// is never "the same filesystem", whatever the partitions or the whole device hold, and a
// probe libblkid calls ambiguous (signatures it cannot rank) counts as occupied.
Status CheckTargetHoldsNothingElse(const std::string& path, const ImageMetadata& meta, bool force) {
  if (force) return Status::Ok();
  const std::string advice =
      ". Check that it is the right device, then pass --force to restore anyway (wipefs -a "
      "clears it too)";
  auto table = ProbePartitionTable(path, Code::kTarget);
  if (!table.ok()) {
    return Status(Code::kTarget, "cannot tell what target " + path + " holds (" +
                                     table.status().message() + "), so it may hold data" + advice);
  }
  if (!table->none()) {
    return Status(Code::kTarget, "target " + path + " holds " + DescribePartitionTable(*table) +
                                     "; restoring over it destroys " +
                                     (table->partitions.size() > 1 ? "them" : "it") + advice);
  }
  FilesystemProbe held = ProbeFilesystem(path);
  if (held.ambiguous) {
    return Status(Code::kTarget, "target " + path + " holds " + DescribeFilesystem(held) +
                                     "; restoring over it may destroy a live one" + advice);
  }
  if (held.type.empty()) return Status::Ok();
  if (!held.uuid.empty() && held.uuid == meta.fs_uuid) return Status::Ok();
  std::string from = meta.fs_type.empty() ? "a device without a recognised filesystem"
                                          : meta.fs_type + (meta.fs_uuid.empty() ? "" : " UUID " + meta.fs_uuid);
  return Status(Code::kTarget, "target " + path + " holds " + DescribeFilesystem(held) +
                                   ", not the filesystem this image was taken from (" + from +
                                   " on " + meta.source_path +
                                   (meta.host.empty() ? "" : " of host " + meta.host) +
                                   "); restoring would destroy it" + advice);
}

Result<std::unique_ptr<RestoreTarget>> RestoreTarget::Open(const std::string& path,
                                                           const ImageMetadata& meta, bool overwrite,
                                                           bool force) {
  auto t = std::make_unique<RestoreTarget>();
  t->path_ = path;
  struct stat st;
  bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && S_ISBLK(st.st_mode)) {
    // O_DIRECT only when every write can be sector-aligned.
    int flags = meta.device_bytes % meta.logical_sector_bytes == 0 ? O_DIRECT : 0;
    auto lock = SourceLock::Acquire(path, "restore");
    if (!lock.ok()) return lock.status();
    t->lock_.emplace(std::move(lock.value()));
    auto fd = OpenExclusiveForWrite(path, flags);
    if (!fd.ok()) return fd.status();
    bool is_block = false;
    uint64_t size = 0;
    uint32_t sector = 0;
    HOTSNAP_RETURN_IF_ERROR(QueryGeometry(fd->get(), path, &is_block, &size, &sector));
    if (size < meta.device_bytes) {
      return Status(Code::kTarget, "target " + path + " holds " + std::to_string(size) +
                                       " bytes; the image needs " + std::to_string(meta.device_bytes));
    }
    if (sector != meta.logical_sector_bytes) {
      return Status(Code::kTarget, "target " + path + " has " + std::to_string(sector) +
                                       "-byte logical sectors; the image was taken from a device "
                                       "with " + std::to_string(meta.logical_sector_bytes) +
                                       "-byte sectors, and a filesystem does not survive the change");
    }
    if (size > meta.device_bytes) {
      Notice("target " + path + " is larger than the image (" + std::to_string(size) + " > " +
             std::to_string(meta.device_bytes) + " bytes); bytes past the image are left as they are");
    }
    HOTSNAP_RETURN_IF_ERROR(CheckTargetHoldsNothingElse(path, meta, force));
    t->fd_ = std::move(fd.value());
    return t;
  }
  if (exists && !S_ISREG(st.st_mode)) {
    return Status(Code::kTarget, "target " + path + " is neither a block device nor a regular file");
  }
  if (exists && !overwrite) {
    return Status(Code::kTarget, "target file " + path + " already exists; refusing to replace it (use --overwrite)");
  }
  t->is_file_ = true;
  t->temp_ = TemporaryNameFor(path, static_cast<int>(::getpid()));
  t->fd_.Reset(::open(t->temp_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!t->fd_.valid()) {
    int err = errno;
    t->temp_.clear();  // not ours to remove
    return Status::FromErrno(Code::kTarget, err, "creating temporary file for " + path);
  }
  if (::ftruncate(t->fd_.get(), static_cast<off_t>(meta.device_bytes)) != 0) {
    return Status::FromErrno(Code::kTarget, errno, "sizing " + path);
  }
  return t;
}

Status RestoreTarget::Commit() {
  if (!is_file_) return Status::Ok();
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    return Status::FromErrno(Code::kTarget, errno, "renaming " + temp_ + " to " + path_);
  }
  committed_ = true;
  std::string dir = path_.find('/') == std::string::npos ? "." : path_.substr(0, path_.rfind('/'));
  UniqueFd dfd(::open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.valid()) ::fsync(dfd.get());
  return Status::Ok();
}

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
    auto target = RestoreTarget::Open(options_.target, meta, options_.overwrite, options_.force);
    if (!target.ok()) return target.status();
    target_ = std::move(target.value());
    std::string fallback;
    BlockWriterOptions writer_options;
    writer_options.chunk_bytes = meta.chunk_bytes;
    writer_options.queue_depth = options_.queue_depth;
    writer_options.flush_every_bytes = options_.flush_every_bytes;
    writer_options.wrap = options_.wrap_write_queue;
    writer_options.flush = options_.flush;
    auto writer = MakeBlockWriter(target_->fd(), options_.target, writer_options, &fallback);
    if (!writer.ok()) return writer.status();
    writer_ = std::move(writer.value());
    if (!fallback.empty()) Notice(fallback + "; writing " + options_.target + " with pwrite instead");
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
  bool target_opened() const { return target_ != nullptr; }
  void set_from_chain() { from_chain_ = true; }
  bool target_is_file() const { return target_ != nullptr && target_->is_file(); }

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
  auto image = OpenImage(options.image, options.ssh_options);
  if (!image.ok()) return image.status();
  EmitPhase("write");
  RestoreReport report;
  RestoreVisitor visitor(options, &report);
  const Trailer* expected = image->index ? &image->index->trailer : nullptr;
  // A device that got some of the image's bytes says so (a file target is removed).
  auto failed = [&](Status s) {
    if (visitor.target_opened() && !visitor.target_is_file() && report.bytes_written > 0) {
      s = s.Wrap("restore stopped after writing " + std::to_string(report.bytes_written) +
                 " bytes to " + options.target + ", which now holds a partial image");
    }
    return s;
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
  if (report.meta.partition_table.type == "gpt" && !visitor.target_is_file()) {
    auto moved = MoveGptBackupToEnd(options.target);
    if (!moved.ok()) return failed(moved.status());
    if (*moved) {
      Notice("moved the GPT backup header and entries of " + options.target +
             " to the end of the larger target (as sgdisk -e does)");
    }
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

}  // namespace hotsnap
