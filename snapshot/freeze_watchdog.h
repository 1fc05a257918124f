// FreezeWatchdog: a separate process that thaws frozen filesystems at a deadline, even
// if hotsnap is SIGKILLed, hangs or crashes. One watchdog guards a whole consistency group:
// every filesystem frozen together is thawed by it, in the order given.
//
// Start() forks the watchdog *before* any filesystem is frozen. The child keeps only an
// O_RDONLY descriptor of each mount point and the read end of a control pipe, leaves our
// session (so a terminal's Ctrl-C or a kill of our process group does not take it along),
// ignores SIGINT/SIGTERM/SIGHUP, and waits:
//   - a 'D' byte on the pipe (Disarm: we thawed ourselves) → exits without touching the fs;
//   - a 'T' byte on the pipe (ThawNow: our own FITHAW failed) → FITHAW at once;
//   - end of file on the pipe (we died: the kernel closed our end) → FITHAW at once;
//   - the deadline → FITHAW.
// The child runs only async-signal-safe calls, so forking from a threaded process is safe.
#ifndef HOTSNAP_SNAPSHOT_FREEZE_WATCHDOG_H_
#define HOTSNAP_SNAPSHOT_FREEZE_WATCHDOG_H_

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

namespace hotsnap {

class FreezeWatchdog {
 public:
  // How the watchdog ended.
  enum class Outcome {
    kDisarmed,
    kThawedAtDeadline,
    kThawedAfterOwnerDied,
    kThawedOnRequest,  // ThawNow(): the watchdog's FITHAW succeeded
    kThawFailed,       // a FITHAW of the watchdog failed (not EINVAL): that fs may stay frozen
    kUnknown,
  };

  // Guards the filesystems mounted at `mount_points` (at most kMaxMounts); thaws them in
  // that order (a group's thaw order: the reverse of its freeze order).
  static Result<FreezeWatchdog> Start(const std::vector<std::string>& mount_points,
                                      std::chrono::milliseconds deadline);
  static Result<FreezeWatchdog> Start(const std::string& mount_point,
                                      std::chrono::milliseconds deadline) {
    return Start(std::vector<std::string>{mount_point}, deadline);
  }
  static constexpr size_t kMaxMounts = 64;
  FreezeWatchdog() = default;
  ~FreezeWatchdog();  // disarms if still armed (we are about to thaw ourselves or never froze)
  FreezeWatchdog(FreezeWatchdog&& other) noexcept;
  FreezeWatchdog& operator=(FreezeWatchdog&& other) noexcept;
  FreezeWatchdog(const FreezeWatchdog&) = delete;
  FreezeWatchdog& operator=(const FreezeWatchdog&) = delete;

  // Tells the watchdog to exit without thawing, waits for it, and says what it did (if it
  // already thawed at the deadline, kThawedAtDeadline).
  // Call only after a successful thaw: a disarmed watchdog never thaws.
  Outcome Disarm();
  // Tells the watchdog to thaw now (our own thaw failed), waits for it, and says what it
  // did: kThawedOnRequest, kThawFailed, or kThawedAtDeadline if the deadline came first.
  Outcome ThawNow();
  pid_t pid() const { return pid_; }

 private:
  // Sends `command` ('D' or 'T'), closes the pipe and reaps the child.
  Outcome Finish(char command);

  pid_t pid_ = -1;
  UniqueFd control_;  // write end; closing it without 'D' means "thaw now"
};

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_FREEZE_WATCHDOG_H_
