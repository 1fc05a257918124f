// SourceLock: at most one hotsnap run per device at a time.
//
// A backup holds the lock on its source for the whole run, a restore the lock on its block
// device target, so a second run on the same device fails at once with Code::kBusy (exit 7)
// naming the run that holds it, instead of failing half-way (e.g. FIFREEZE's EBUSY) or
// writing under a running backup. The run that holds the lock is never disturbed.
//
//   - Key: the device number of a block device (dev-MAJOR-MINOR.lock), or st_dev and the
//     inode of a regular file (file-MAJOR-MINOR-INODE.lock), in `lock_dir` (default
//     /run/hotsnap/locks, created 0700; /run is emptied at boot). Two names of one device
//     (/dev/loop3, /dev/disk/by-...) share a key; a partition and its whole disk do not.
//   - Held with flock(LOCK_EX) on a descriptor kept open for the run: the kernel drops it
//     when the process ends in any way, so a crash never leaves the source locked.
//   - The file says who holds it, as JSON: the holder's ProcessIdentity (pid, start time,
//     boot id), run id, purpose ("backup", "restore"), the path it was given, and the UTC
//     start time. A file left by a run that died (unlocked; its holder gone by identity) is
//     taken over. A locked file is never taken, whatever it says.
//   - A regular file is locked only if the lock dir can be written: an unprivileged run (which
//     may back up or restore image files, not devices) goes unlocked (held() is false).
//   - Release (or the destructor) removes the file, then closes the descriptor. Acquire
//     re-checks after locking that the file it locked is still the one under the name.
//
// Scope: one host. Not thread-safe per object; move-only.
#ifndef HOTSNAP_SNAPSHOT_SOURCE_LOCK_H_
#define HOTSNAP_SNAPSHOT_SOURCE_LOCK_H_

#include <string>

#include "base/process_identity.h"
#include "base/status.h"
#include "base/unique_fd.h"

namespace hotsnap {

inline constexpr char kDefaultLockDir[] = "/run/hotsnap/locks";

// What a lock file says about the run holding it.
struct LockHolder {
  ProcessIdentity identity;
  std::string run_id;
  std::string purpose;  // "backup" or "restore"
  std::string path;     // the source or target path that run was given
  std::string started;  // UTC, "2026-12-02T16:20:01Z"
};

class SourceLock {
 public:
  // Locks the device (or file) at `path` for `purpose`. kBusy when another run holds it:
  // "PATH is being backed up by hotsnap pid N (started T, run id R); wait for it to finish
  // or stop it". kSource when `path` cannot be looked up, kInternal when the lock file
  // cannot be made.
  static Result<SourceLock> Acquire(const std::string& path, const std::string& purpose,
                                    const std::string& lock_dir = kDefaultLockDir);
  // For a dry run: kBusy (the same message) if a live run holds the lock on `path`, OK
  // otherwise. Takes no lock and writes nothing.
  static Status CheckFree(const std::string& path, const std::string& lock_dir = kDefaultLockDir);

  SourceLock(SourceLock&& other) noexcept;
  SourceLock& operator=(SourceLock&& other) noexcept;
  SourceLock(const SourceLock&) = delete;
  SourceLock& operator=(const SourceLock&) = delete;
  ~SourceLock();

  // Removes the lock file and unlocks. Idempotent.
  Status Release();
  bool held() const { return fd_.valid(); }
  const std::string& file() const { return file_; }
  const std::string& run_id() const { return run_id_; }

 private:
  SourceLock() = default;
  UniqueFd fd_;
  std::string file_;
  std::string run_id_;
};

// The lock file name for `path` inside a lock dir ("dev-7-3.lock"); kSource if `path` cannot
// be looked up.
Result<std::string> LockFileName(const std::string& path);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_SOURCE_LOCK_H_
