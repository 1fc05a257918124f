// RestoreTarget: where a restore writes, opened after every check that it may be written.
//
// Shared by the full restore (agent/restore_job.cc) and the changed-only restore
// (agent/changed_restore.h), which differ only in what the target must already hold:
// - Replace: a block device, or a regular file built under a temporary name (sparse: zero
//   chunks stay holes) and renamed on Commit(); an existing file only with `overwrite`.
// - In place: an existing block device, or an existing regular file of at least the image's
//   size written where it is (never created, truncated or renamed).
// A block device is, in both, locked against other hotsnap runs (a backup of it, another
// restore: SourceLock), refused while mounted or in use and opened exclusively (O_EXCL),
// checked to be at least the image's size with the image's logical sector size, and opened
// O_DIRECT when every chunk is sector-aligned. Then its contents are checked by the caller's
// TargetContentCheck, before the descriptor is handed out.
//
// Not thread-safe; fd() stays valid for the object's lifetime (the lock is released after
// the descriptor is closed).
#ifndef HOTSNAP_AGENT_RESTORE_TARGET_H_
#define HOTSNAP_AGENT_RESTORE_TARGET_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agent/image_jobs.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "io/block_writer.h"
#include "io/image_format.h"
#include "snapshot/source_lock.h"

namespace hotsnap {

// Decides whether the target at `path` (already locked and opened) may be written; an error
// (kTarget) refuses it before any byte is written.
using TargetContentCheck = std::function<Status(const std::string& path)>;

class RestoreTarget {
 public:
  ~RestoreTarget();
  RestoreTarget(const RestoreTarget&) = delete;
  RestoreTarget& operator=(const RestoreTarget&) = delete;

  // A full restore. A device holding something else than the image's filesystem is refused
  // unless `force` (CheckTargetHoldsNothingElse in restore_target.cc).
  static Result<std::unique_ptr<RestoreTarget>> OpenForReplace(const std::string& path,
                                                               const ImageMetadata& meta,
                                                               bool overwrite, bool force);
  // Rewriting the target where it is: TARGET must exist (see above); `check` runs on a device
  // and on a file alike. The descriptor is open read-write.
  static Result<std::unique_ptr<RestoreTarget>> OpenInPlace(const std::string& path,
                                                            const ImageMetadata& meta,
                                                            const TargetContentCheck& check);

  int fd() const { return fd_.get(); }
  bool is_file() const { return is_file_; }
  // A replaced file, written under its temporary name: removed if the restore fails.
  bool replaces_file() const { return !temp_.empty(); }
  // Whether fd() was opened O_DIRECT (then offsets and lengths must be sector-aligned).
  bool direct() const { return direct_; }
  // A replaced file: renames it to its final name. Otherwise nothing.
  Status Commit();

 private:
  RestoreTarget() = default;
  // The device part, shared by both modes; `extra_flags` adds O_RDWR for in place.
  static Result<std::unique_ptr<RestoreTarget>> OpenDevice(const std::string& path,
                                                           const ImageMetadata& meta, int extra_flags,
                                                           const TargetContentCheck& check);

  std::string path_;
  std::string temp_;                // a replaced file: its temporary name until Commit()
  std::optional<SourceLock> lock_;  // block devices only; released after the fd is closed
  UniqueFd fd_;
  bool is_file_ = false;
  bool direct_ = false;
  bool committed_ = false;
};

// `failed` as returned by a restore that had written `bytes_written` bytes to `target` when
// it stopped: wrapped to say that the target now holds a partial image.
// Unchanged when nothing was written, or the target is a replaced file (removed then).
Status NotePartialRestore(Status failed, const RestoreTarget* target, const std::string& path,
                          uint64_t bytes_written);

// After the last write: a whole-disk GPT image on a larger disk gets its backup table moved
// to the disk's new end (as sgdisk -e does), with a notice. Nothing for other images or files.
Status FinishWholeDiskTarget(const ImageMetadata& meta, const RestoreTarget& target,
                             const std::string& path);

// The writer of `target` (named `path` in messages) for `meta`'s chunks, with the options'
// queue depth, background flushes and test hooks; a notice when io_uring is unavailable.
Result<std::unique_ptr<BlockWriter>> MakeRestoreWriter(const RestoreTarget& target,
                                                       const std::string& path,
                                                       const RestoreOptions& options,
                                                       const ImageMetadata& meta);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_RESTORE_TARGET_H_
