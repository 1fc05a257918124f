// FsMount: a filesystem mounted read-only so that mounting itself writes nothing.
//
// A plain "ro" mount still writes: ext4 replays its journal and XFS its log onto the
// device. On a read-only loop device that fails the mount outright, and it would change
// what the backup holds anyway. So the options that skip recovery are always given
// (ReadOnlyMountFor). nosuid,nodev: a backup may hold setuid programs and device nodes that
// nobody meant to activate on this host by browsing it.
//
// Move-only. Unmount() reports failure (EBUSY → kTarget); the destructor is the backstop
// and detaches lazily when the mount is busy.
#ifndef HOTSNAP_MOUNT_FS_MOUNT_H_
#define HOTSNAP_MOUNT_FS_MOUNT_H_

#include <string>

#include "base/status.h"

namespace hotsnap {

struct ReadOnlyMount {
  std::string type;     // what to pass to mount(2): "ext4" for ext2/3/4, "xfs"
  std::string options;  // data string: "noload", "norecovery,nouuid"
};

// How to mount a filesystem of libblkid type `fs_type` (the image's metadata) without
// writing; kUnsupported for types where we do not know how.
Result<ReadOnlyMount> ReadOnlyMountFor(const std::string& fs_type);

class FsMount {
 public:
  static Result<FsMount> Mount(const std::string& device, const std::string& target,
                               const ReadOnlyMount& how);
  FsMount() = default;
  ~FsMount();
  FsMount(FsMount&& other) noexcept;
  FsMount& operator=(FsMount&& other) noexcept;
  FsMount(const FsMount&) = delete;
  FsMount& operator=(const FsMount&) = delete;

  bool mounted() const { return !target_.empty(); }
  const std::string& target() const { return target_; }

  // Unmounts if `target` still carries a mount of `device`. With `lazy`, a busy mount is
  // detached (it goes away when its last user leaves) instead of failing.
  Status Unmount(bool lazy = false);
  // Gives up ownership: the mount stays (for `hotsnap umount` putting back a mount that the
  // server process owns).
  void Release() { target_.clear(); }

 private:
  std::string device_;
  std::string target_;
};

// Unmounts the mount at `target` if its source is `device` (so a mount someone placed
// there since is never touched). kTarget on EBUSY unless `lazy`. OK if nothing matches.
Status UnmountIfSource(const std::string& target, const std::string& device, bool lazy);

// True if `target` is a mount point whose source is `device`.
bool IsMountedFrom(const std::string& target, const std::string& device);
// True if `path` is a mount point of any filesystem.
bool IsMountPoint(const std::string& path);

}  // namespace hotsnap

#endif  // HOTSNAP_MOUNT_FS_MOUNT_H_
