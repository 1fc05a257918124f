// The kernel objects behind one filesystem of `hotsnap mount`, as move-only owners:
//
//   MountDirectory     the directory it is mounted at: DIR itself, or DIR/pN of a whole-disk
//                      image, made if missing and then removed again (only if empty)
//   MountedFilesystem  directory + a read-only loop device over the served device file,
//                      showing the planned byte range (one partition, or all of it) + the
//                      read-only mount of that device (FsMount)
//   MountSet           the MountedFilesystems of one `hotsnap mount`, undone in reverse order
//
// Undo()/Remove()/UndoAll() report the first failure and try every step anyway; the
// destructors are the backstop. A filesystem is unmounted lazily when undone: a process may
// still use it, and it disappears when they let go (`hotsnap umount` unmounts non-lazily
// first, so that a busy mount is refused).
#ifndef HOTSNAP_MOUNT_MOUNTED_FILESYSTEM_H_
#define HOTSNAP_MOUNT_MOUNTED_FILESYSTEM_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "mount/fs_mount.h"
#include "mount/loop_attachment.h"
#include "mount/mount_plan.h"
#include "mount/mount_state.h"

namespace hotsnap {

class MountDirectory {
 public:
  // `path` must end up a directory with no filesystem mounted on it; kTarget otherwise (it
  // exists as something else, e.g. a file or a symlink, or carries a mount). With `create` a
  // missing `path` is made (mode 0755, its parent must exist) and owned from then on.
  static Result<MountDirectory> Prepare(const std::string& path, bool create);

  MountDirectory() = default;
  ~MountDirectory();
  MountDirectory(MountDirectory&& other) noexcept;
  MountDirectory& operator=(MountDirectory&& other) noexcept;
  MountDirectory(const MountDirectory&) = delete;
  MountDirectory& operator=(const MountDirectory&) = delete;

  const std::string& path() const { return path_; }
  bool created() const { return created_; }
  // Removes the directory if this owner made it and it is empty (a directory someone put
  // files in since is left, with an error).
  Status Remove();

 private:
  std::string path_;
  bool created_ = false;
};

class MountedFilesystem {
 public:
  // Builds `plan` over `device_file` (the FUSE file of the image's device, logical sectors of
  // `sector_bytes`). `record` is called with the part as the mount record must know it: once
  // its directory exists (created_dir known), and once its loop device is attached — before
  // the filesystem is mounted, so that a crash leaves nothing `hotsnap cleanup` cannot find;
  // an error from it stops the build. On failure everything built is undone and the error
  // names what failed (the device and mount point; the caller adds plan.Describe()).
  static Result<MountedFilesystem> Mount(const PlannedMount& plan, const std::string& device_file,
                                         uint32_t sector_bytes,
                                         const std::function<Status(const MountedPart&)>& record);

  MountedFilesystem() = default;
  MountedFilesystem(MountedFilesystem&&) noexcept = default;
  MountedFilesystem& operator=(MountedFilesystem&&) noexcept = default;
  MountedFilesystem(const MountedFilesystem&) = delete;
  MountedFilesystem& operator=(const MountedFilesystem&) = delete;
  ~MountedFilesystem() = default;  // members go in reverse: filesystem, loop device, directory

  const std::string& loop_device() const { return loop_.device(); }
  const std::string& mount_point() const { return dir_.path(); }

  // Unmounts (lazily if busy), detaches the loop device, removes the directory if it was made.
  Status Undo();

 private:
  MountDirectory dir_;
  LoopAttachment loop_;
  FsMount fs_;
};

class MountSet {
 public:
  MountSet() = default;
  ~MountSet();
  MountSet(MountSet&&) noexcept = default;
  MountSet& operator=(MountSet&&) noexcept = delete;
  MountSet(const MountSet&) = delete;
  MountSet& operator=(const MountSet&) = delete;

  void Add(MountedFilesystem m) { mounts_.push_back(std::move(m)); }
  size_t size() const { return mounts_.size(); }
  // Undoes every filesystem, the last mounted first; returns the first failure.
  Status UndoAll();

 private:
  std::vector<MountedFilesystem> mounts_;
};

}  // namespace hotsnap

#endif  // HOTSNAP_MOUNT_MOUNTED_FILESYSTEM_H_
