// FreezeWatchdog: a separate process that thaws a frozen filesystem at a deadline, even
// if hotsnap is SIGKILLed, hangs or crashes.
//
// Start() forks the watchdog *before* the filesystem is frozen. The child keeps only an
// O_RDONLY descriptor of the mount point and the read end of a control pipe, leaves our
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
    kThawFailed,       // the watchdog's FITHAW failed (not EINVAL): the fs may stay frozen
    kUnknown,
  };

  static Result<FreezeWatchdog> Start(const std::string& mount_point,
                                      std::chrono::milliseconds deadline);
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
