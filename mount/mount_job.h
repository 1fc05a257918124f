// The mount jobs: `hotsnap mount`, `hotsnap umount` and the mount part of `hotsnap cleanup`.
//
// Process model. `hotsnap mount` forks a server process (own session, stdio to a log
// file) and waits until that process reports the filesystem mounted, or why it is not;
// then it returns and the server keeps running. The server owns everything it built —
// FUSE session, and for each filesystem (one, or each partition of a whole-disk image at
// MOUNTPOINT/pN: mount/mount_plan.h) its directory, loop device and mount — as RAII owners,
// and records them in a MountRecord (mount/mount_state.h). It runs until SIGTERM/SIGINT/SIGHUP or until its FUSE
// filesystem disappears, then undoes all of it in reverse order. With `foreground` no
// process is forked: the caller's process is the server, and Ctrl-C unmounts.
//
// `hotsnap umount` unmounts the filesystems itself first (all or none, so a busy mount is
// refused with nothing changed), then signals the server and waits for it; whatever a dead server left
// behind it removes directly. `hotsnap cleanup` does the same for every record whose
// server is gone, and also for hotsnap FUSE mounts and loop devices under RunDir() that
// lost their record.
#ifndef HOTSNAP_MOUNT_MOUNT_JOB_H_
#define HOTSNAP_MOUNT_MOUNT_JOB_H_

#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/image_chain.h"
#include "mount/mount_state.h"

namespace hotsnap {

struct MountOptions {
  std::string image;        // a regular file; "-" and ssh:// are refused (random access needs a file)
  std::string mount_point;  // an existing directory; not a mount point unless a disk image mounts at pN
  bool foreground = false;  // serve in this process until a signal, instead of forking
  size_t cache_chunks = 16;
  ChainOptions chain;       // a delta image: where its parents are (default: beside it)
  // An image of a whole disk: the number of the partition to mount alone at mount_point,
  // through a loop device showing only its byte range. 0: the image's filesystem, or every
  // mountable partition of a whole-disk image at mount_point/pN.
  int partition = 0;
  // Called once every filesystem is mounted, in the process the user started; the record
  // lists them (parts) and the partitions skipped, with why (skipped).
  std::function<void(const MountRecord&)> on_ready;
};

struct MountOutcome {
  // True in the forked server process once it has stopped serving: its caller (main)
  // should just return. False in the process the user started.
  bool was_server = false;
};

Result<MountOutcome> RunMount(const MountOptions& options);

// Undoes `hotsnap mount` at `mount_point`, every MOUNTPOINT/pN included. kTarget if a
// filesystem is busy (nothing changed: those unmounted before it are mounted again), kUsage
// if it is not a hotsnap mount.
Status RunUmount(const std::string& mount_point);

struct MountCleanupReport {
  std::vector<std::string> removed;   // one line per thing undone
  std::vector<std::string> skipped;   // live mounts, left alone
};
// Removes the leftovers of crashed mount servers. Fails only if something could not be
// removed (the report says what was).
Status RunMountCleanup(MountCleanupReport* report);

}  // namespace hotsnap

#endif  // HOTSNAP_MOUNT_MOUNT_JOB_H_
