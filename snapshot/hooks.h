// User hooks around a freeze: --pre-freeze, --while-frozen, --post-thaw.
//
// Each runs as `/bin/sh -c CMD` in its own process group with a timeout (RunShell in
// base/subprocess.h: the timeout holds whatever the hook does with its output; at the timeout
// the group gets SIGTERM, then SIGKILL; when the hook exits, processes it left in its group
// are killed, so a hook cannot leave work running behind the freeze), with
// HOTSNAP_PHASE, HOTSNAP_SOURCE and HOTSNAP_MOUNTPOINT (one line per frozen filesystem) in its
// environment. Its output is
// passed on to our stderr (buffered while frozen). The contract the backup job keeps:
// post-thaw runs whenever pre-freeze ran, whatever happened in between.
#ifndef HOTSNAP_SNAPSHOT_HOOKS_H_
#define HOTSNAP_SNAPSHOT_HOOKS_H_

#include <chrono>
#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

struct HookSet {
  std::string pre_freeze;
  std::string while_frozen;
  std::string post_thaw;
  std::chrono::milliseconds timeout{30000};
  bool crash_consistent_ok = false;  // a failing pre-freeze hook does not abort
};

// Runs `command` (if non-empty) for `phase`; a non-zero exit or timeout is an error
// (code kSource) quoting the hook's stderr; a timeout says "hook '...' timed out after N s".
// `mount_point` becomes HOTSNAP_MOUNTPOINT: for a group, HookMountPoints() of its members.
Status RunHook(const std::string& phase, const std::string& command, const HookSet& hooks,
               const std::string& source, const std::string& mount_point);

// HOTSNAP_MOUNTPOINT for a consistency group: every member's mount point, one per line, in
// freeze order (a single member: just its mount point).
std::string HookMountPoints(const std::vector<std::string>& mount_points);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_HOOKS_H_
