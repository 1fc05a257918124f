// Filesystem freezing: the Freezer interface over FIFREEZE/FITHAW, and FrozenFilesystem,
// the RAII owner of one freeze guarded by a FreezeWatchdog.
//
// While a filesystem is frozen every write to it blocks, including ours: callers must not
// log to it or write output to it (see agent/ for how the backup job avoids that).
#ifndef HOTSNAP_SNAPSHOT_FREEZE_H_
#define HOTSNAP_SNAPSHOT_FREEZE_H_

#include <chrono>
#include <string>
#include <utility>

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
  // Starts the watchdog (deadline `max_freeze`), then freezes the filesystem mounted at
  // `mount_point`. EBUSY (someone else froze it) fails with kSource and leaves that freeze
  // alone; EOPNOTSUPP (tmpfs, ...) fails with kUnsupported naming the filesystem.
  static Result<FrozenFilesystem> Freeze(const std::string& mount_point,
                                         std::chrono::milliseconds max_freeze,
                                         Freezer* freezer = RealFreezer());
  FrozenFilesystem() = default;
  ~FrozenFilesystem();  // thaws if still frozen
  // Not defaulted: a defaulted move would leave frozen_ set in the moved-from owner, whose
  // destructor then called Thaw() (FITHAW on fd -1).
  FrozenFilesystem(FrozenFilesystem&& other) noexcept { *this = std::move(other); }
  FrozenFilesystem& operator=(FrozenFilesystem&&) noexcept;
  FrozenFilesystem(const FrozenFilesystem&) = delete;
  FrozenFilesystem& operator=(const FrozenFilesystem&) = delete;

  // Thaws and disarms the watchdog. Fails (kSource) if the watchdog thawed first because
  // the deadline passed: the view was not frozen for the whole copy.
  Status Thaw();
  bool frozen() const { return frozen_; }
  // Time since the freeze began (or its total length, after Thaw()).
  std::chrono::milliseconds held() const;
  bool past_deadline() const;
  const std::string& mount_point() const { return mount_point_; }

 private:
  // Thaw() for the destructor and move assignment, which cannot return its Status.
  void ThawOrLog();

  std::string mount_point_;
  UniqueFd mount_fd_;
  Freezer* freezer_ = nullptr;
  FreezeWatchdog watchdog_;
  bool frozen_ = false;
  std::chrono::steady_clock::time_point frozen_at_;
  std::chrono::steady_clock::time_point thawed_at_;
  std::chrono::milliseconds max_freeze_{0};
};

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_FREEZE_H_
