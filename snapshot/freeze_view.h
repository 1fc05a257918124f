// The "freeze" snapshot mode: the filesystems of the source's consistency group (the one
// mounted from it, or every one mounted read-write from its partitions) are frozen together
// (FIFREEZE) for the whole copy, guarded by one FreezeWatchdog, with the user's hooks run once
// around the group's freeze. Hooks get every member's mount point in HOTSNAP_MOUNTPOINT, one
// per line, in freeze order.
//
// Suits small volumes: every write to the filesystem blocks until the thaw. The copy must
// finish within `max_freeze`; Check() fails once it is over, and the watchdog thaws at that
// moment even if hotsnap is killed.
#ifndef HOTSNAP_SNAPSHOT_FREEZE_VIEW_H_
#define HOTSNAP_SNAPSHOT_FREEZE_VIEW_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "snapshot/freeze.h"
#include "snapshot/hooks.h"
#include "snapshot/view.h"

namespace hotsnap {

struct FreezeViewOptions {
  std::string source;       // the block device being backed up
  // Where the group's filesystems are mounted read-write, in freeze order (MountPointDepth).
  std::vector<std::string> mount_points;
  std::chrono::milliseconds max_freeze{10000};
  HookSet hooks;
  Freezer* freezer = RealFreezer();
};

// A freeze a copy holds: its own (FreezeView) or its share of a group's freeze
// (FreezeRendezvous::Share). Release() thaws (or gives the share back) and is idempotent.
class HeldFreeze {
 public:
  virtual ~HeldFreeze() = default;
  virtual Status Check() = 0;    // fails once the freeze is past its deadline
  virtual Status Release() = 0;
  virtual std::chrono::milliseconds frozen_for() const = 0;
};

class FreezeView : public ConsistentView, public HeldFreeze {
 public:
  // Runs pre-freeze, freezes, runs while-frozen. On failure everything already done is
  // undone (thaw, post-thaw) before returning.
  static Result<std::unique_ptr<FreezeView>> Open(const FreezeViewOptions& options);
  ~FreezeView() override;

  const std::string& device_path() const override { return options_.source; }
  std::string mode() const override { return "freeze"; }
  Status Check() override;
  // Thaws, flushes buffered log lines, runs post-thaw.
  Status Release() override;
  std::chrono::milliseconds frozen_for() const override { return frozen_.held(); }

 private:
  explicit FreezeView(const FreezeViewOptions& options) : options_(options) {}
  FreezeViewOptions options_;
  FrozenFilesystem frozen_;
  bool pre_freeze_ran_ = false;
  bool released_ = false;
};

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_FREEZE_VIEW_H_
