// The mount jobs: `hotsnap mount`, `hotsnap umount` and the mount part of `hotsnap cleanup`.
//
// Process model. `hotsnap mount` forks a server process (own session, stdio to a log
// file) and waits until that process reports the filesystem mounted, or why it is not;
// then it returns and the server keeps running. The server owns everything it built —
// FUSE session, loop device, filesystem mount — as RAII owners, and records them in a
// MountRecord (mount/mount_state.h). It runs until SIGTERM/SIGINT/SIGHUP or until its FUSE
// filesystem disappears, then undoes all of it in reverse order. With `foreground` no
// process is forked: the caller's process is the server, and Ctrl-C unmounts.
//
// `hotsnap umount` unmounts the filesystem itself first (so a busy mount is refused with
// nothing changed), then signals the server and waits for it; whatever a dead server left
// behind it removes directly. `hotsnap cleanup` does the same for every record whose
// server is gone, and also for hotsnap FUSE mounts and loop devices under RunDir() that
// lost their record.
#ifndef HOTSNAP_MOUNT_MOUNT_JOB_H_
#define HOTSNAP_MOUNT_MOUNT_JOB_H_

#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "mount/mount_state.h"

namespace hotsnap {

struct MountOptions {
  std::string image;        // a regular file; "-" and ssh:// are refused (random access needs a file)
  std::string mount_point;  // an existing directory that is not a mount point
  bool foreground = false;  // serve in this process until a signal, instead of forking
  size_t cache_chunks = 16;
  // An image of a whole disk: the number of the partition to mount alone at mount_point,
  // through a loop device showing only its byte range. 0 for the image of one filesystem
  // (a disk image then refuses, listing its mountable partitions).
  int partition = 0;
  // Called once the filesystem is mounted, in the process the user started.
  std::function<void(const MountRecord&)> on_ready;
};

struct MountOutcome {
  // True in the forked server process once it has stopped serving: its caller (main)
  // should just return. False in the process the user started.
  bool was_server = false;
};

Result<MountOutcome> RunMount(const MountOptions& options);

// Undoes `hotsnap mount` at `mount_point`. kTarget if the filesystem is busy (nothing
// changed), kUsage if it is not a hotsnap mount.
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
