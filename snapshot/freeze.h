// Filesystem freezing: the Freezer interface over FIFREEZE/FITHAW, and FrozenFilesystem,
// the RAII owner of one freeze of a consistency group (one or more filesystems frozen
// together) guarded by one FreezeWatchdog.
//
// While a filesystem is frozen every write to it blocks, including ours: callers must not
// log to it or write output to it (see agent/ for how the backup job avoids that).
#ifndef HOTSNAP_SNAPSHOT_FREEZE_H_
#define HOTSNAP_SNAPSHOT_FREEZE_H_

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "snapshot/freeze_watchdog.h"

namespace hotsnap {

// One small interface per OS capability: tests wrap the real freezer to inject faults.
class Freezer {
 public:
  virtual ~Freezer() = default;
  // Return 0 or an errno value.
  virtual int Freeze(int mount_fd) = 0;
  virtual int Thaw(int mount_fd) = 0;
};
Freezer* RealFreezer();

class FrozenFilesystem {
 public:
  // Starts the watchdog (deadline `max_freeze`), then freezes the filesystems mounted at
  // `mount_points`: all at once when none rests on another (MayFreezeAtOnce, e.g. the
  // partitions of a disk), else one after another in that order (the group's dependency
  // order, see MountPointDepth); Thaw() thaws them in the reverse order. EBUSY (someone else
  // froze one) fails with kSource and leaves that freeze alone; EOPNOTSUPP (tmpfs, vfat, ...)
  // fails with kUnsupported naming the filesystem (the first in order that failed). A member
  // that fails to freeze thaws the ones that froze. `freezer` must be thread-safe.
  static Result<FrozenFilesystem> Freeze(const std::vector<std::string>& mount_points,
                                         std::chrono::milliseconds max_freeze,
                                         Freezer* freezer = RealFreezer());
  static Result<FrozenFilesystem> Freeze(const std::string& mount_point,
                                         std::chrono::milliseconds max_freeze,
                                         Freezer* freezer = RealFreezer()) {
    return Freeze(std::vector<std::string>{mount_point}, max_freeze, freezer);
  }
  FrozenFilesystem() = default;
  ~FrozenFilesystem();  // thaws if still frozen
  // Not defaulted: a defaulted move would leave frozen_ set in the moved-from owner, whose
  // destructor then called Thaw() (FITHAW on fd -1).
  FrozenFilesystem(FrozenFilesystem&& other) noexcept { *this = std::move(other); }
  FrozenFilesystem& operator=(FrozenFilesystem&&) noexcept;
  FrozenFilesystem(const FrozenFilesystem&) = delete;
  FrozenFilesystem& operator=(const FrozenFilesystem&) = delete;

  // Thaws every member (reverse order) and disarms the watchdog, or, if any thaw failed, has
  // the watchdog thaw them all. Fails (kSource) if the watchdog thawed first because the
  // deadline passed: the view was not frozen for the whole copy.
  Status Thaw();
  bool frozen() const { return frozen_; }
  // Time since the freeze began (or its total length, after Thaw()).
  std::chrono::milliseconds held() const;
  bool past_deadline() const;
  // The first member; all of them, in freeze order.
  const std::string& mount_point() const { return mount_points_.front(); }
  const std::vector<std::string>& mount_points() const { return mount_points_; }

 private:
  // Thaw() for the destructor and move assignment, which cannot return its Status.
  void ThawOrLog();
  // Thaws the members marked in `which`, in reverse order; the first failure (errno) and
  // who, or 0.
  int ThawMembers(const std::vector<char>& which, std::string* failed_at);

  std::vector<std::string> mount_points_{""};
  std::vector<UniqueFd> mount_fds_;
  Freezer* freezer_ = nullptr;
  FreezeWatchdog watchdog_;
  bool frozen_ = false;
  std::chrono::steady_clock::time_point frozen_at_;
  std::chrono::steady_clock::time_point thawed_at_;
  std::chrono::milliseconds max_freeze_{0};
};

// The freeze order of a group sorts its members by this, deepest first (stable: the found
// order among equals): the number of components of a canonical mount point path ("/" is 0,
// "/a/b" is 2). A filesystem mounted below another member's mount point is then frozen
// before it (a stacked filesystem first: freezing what it lives on first could block its
// own freeze's writeback). Thawing goes the other way.
int MountPointDepth(const std::string& path);

// "a, b, c": mount points for a message.
std::string JoinMountPoints(const std::vector<std::string>& mount_points);

// Filesystem types whose kernel driver implements FIFREEZE (ext2/3/4, xfs, btrfs, ...); vfat,
// exfat, ntfs3, tmpfs and the like do not. Used to refuse a group member up front.
bool FilesystemTypeCanFreeze(const std::string& fs_type);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_FREEZE_H_
