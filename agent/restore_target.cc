#include "agent/restore_target.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "io/gpt_backup.h"
#include "io/partition_table.h"
#include "io/sink.h"
#include "io/source_device.h"
#include "snapshot/device_use.h"

namespace hotsnap {
namespace {

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

}  // namespace

RestoreTarget::~RestoreTarget() {
  if (!temp_.empty() && !committed_) ::unlink(temp_.c_str());
}

Result<std::unique_ptr<RestoreTarget>> RestoreTarget::OpenDevice(const std::string& path,
                                                                 const ImageMetadata& meta,
                                                                 int extra_flags,
                                                                 const TargetContentCheck& check) {
  std::unique_ptr<RestoreTarget> t(new RestoreTarget());
  t->path_ = path;
  // O_DIRECT only when every write can be sector-aligned.
  t->direct_ = meta.device_bytes % meta.logical_sector_bytes == 0;
  auto lock = SourceLock::Acquire(path, "restore");
  if (!lock.ok()) return lock.status();
  t->lock_.emplace(std::move(lock.value()));
  auto fd = OpenExclusiveForWrite(path, extra_flags | (t->direct_ ? O_DIRECT : 0));
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
  HOTSNAP_RETURN_IF_ERROR(check(path));
  t->fd_ = std::move(fd.value());
  return t;
}

Result<std::unique_ptr<RestoreTarget>> RestoreTarget::OpenForReplace(const std::string& path,
                                                                     const ImageMetadata& meta,
                                                                     bool overwrite, bool force) {
  struct stat st;
  bool exists = ::stat(path.c_str(), &st) == 0;
  if (exists && S_ISBLK(st.st_mode)) {
    return OpenDevice(path, meta, 0, [&meta, force](const std::string& p) {
      return CheckTargetHoldsNothingElse(p, meta, force);
    });
  }
  if (exists && !S_ISREG(st.st_mode)) {
    return Status(Code::kTarget, "target " + path + " is neither a block device nor a regular file");
  }
  if (exists && !overwrite) {
    return Status(Code::kTarget, "target file " + path + " already exists; refusing to replace it (use --overwrite)");
  }
  std::unique_ptr<RestoreTarget> t(new RestoreTarget());
  t->path_ = path;
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

Result<std::unique_ptr<RestoreTarget>> RestoreTarget::OpenInPlace(const std::string& path,
                                                                  const ImageMetadata& meta,
                                                                  const TargetContentCheck& check) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Status::FromErrno(Code::kTarget, errno,
                             "target " + path + " must already exist (a device or file to roll back)");
  }
  if (S_ISBLK(st.st_mode)) return OpenDevice(path, meta, O_RDWR, check);
  if (!S_ISREG(st.st_mode)) {
    return Status(Code::kTarget, "target " + path + " is neither a block device nor a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) < meta.device_bytes) {
    return Status(Code::kTarget, "target file " + path + " holds " + std::to_string(st.st_size) +
                                     " bytes; the image needs " + std::to_string(meta.device_bytes));
  }
  std::unique_ptr<RestoreTarget> t(new RestoreTarget());
  t->path_ = path;
  t->is_file_ = true;
  t->fd_.Reset(::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!t->fd_.valid()) return Status::FromErrno(Code::kTarget, errno, "opening " + path);
  HOTSNAP_RETURN_IF_ERROR(check(path));
  return t;
}

Status RestoreTarget::Commit() {
  if (temp_.empty()) return Status::Ok();
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    return Status::FromErrno(Code::kTarget, errno, "renaming " + temp_ + " to " + path_);
  }
  committed_ = true;
  std::string dir = path_.find('/') == std::string::npos ? "." : path_.substr(0, path_.rfind('/'));
  UniqueFd dfd(::open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.valid()) ::fsync(dfd.get());
  return Status::Ok();
}

Status NotePartialRestore(Status failed, const RestoreTarget* target, const std::string& path,
                          uint64_t bytes_written) {
  if (target == nullptr || target->replaces_file() || bytes_written == 0) return failed;
  return failed.Wrap("restore stopped after writing " + std::to_string(bytes_written) + " bytes to " +
                     path + ", which now holds a partial image");
}

Status FinishWholeDiskTarget(const ImageMetadata& meta, const RestoreTarget& target,
                             const std::string& path) {
  if (meta.partition_table.type != "gpt" || target.is_file()) return Status::Ok();
  auto moved = MoveGptBackupToEnd(path);
  if (!moved.ok()) return moved.status();
  if (*moved) {
    Notice("moved the GPT backup header and entries of " + path +
           " to the end of the larger target (as sgdisk -e does)");
  }
  return Status::Ok();
}

Result<std::unique_ptr<BlockWriter>> MakeRestoreWriter(const RestoreTarget& target,
                                                       const std::string& path,
                                                       const RestoreOptions& options,
                                                       const ImageMetadata& meta) {
  BlockWriterOptions writer_options;
  writer_options.chunk_bytes = meta.chunk_bytes;
  writer_options.queue_depth = options.queue_depth;
  writer_options.flush_every_bytes = options.flush_every_bytes;
  writer_options.wrap = options.wrap_write_queue;
  writer_options.flush = options.flush;
  std::string fallback;
  auto writer = MakeBlockWriter(target.fd(), path, writer_options, &fallback);
  if (!writer.ok()) return writer.status();
  if (!fallback.empty()) Notice(fallback + "; writing " + path + " with pwrite instead");
  return writer;
}

}  // namespace hotsnap
