#include "mount/fs_mount.h"

#include <sys/mount.h>

#include <cerrno>

#include "base/log.h"
#include "mount/mount_table.h"

namespace hotsnap {

Result<ReadOnlyMount> ReadOnlyMountFor(const std::string& fs_type) {
  // ext2 and ext3 are mounted by the ext4 driver, which knows "noload" (skip the journal).
  if (fs_type == "ext2" || fs_type == "ext3" || fs_type == "ext4") return ReadOnlyMount{"ext4", "noload"};
  // nouuid: the source filesystem may be mounted on this host right now, with the same UUID.
  if (fs_type == "xfs") return ReadOnlyMount{"xfs", "norecovery,nouuid"};
  // FAT has no journal: a read-only mount writes nothing.
  if (fs_type == "vfat") return ReadOnlyMount{"vfat", ""};
  if (fs_type.empty()) {
    return Status(Code::kUnsupported, "the image's metadata names no filesystem (libblkid found none "
                                      "at backup time); nothing to mount");
  }
  return Status(Code::kUnsupported, "mounting a " + fs_type + " image is not supported (ext2/3/4 and "
                                    "xfs are: those can be mounted without any write)");
}

Result<FsMount> FsMount::Mount(const std::string& device, const std::string& target, const ReadOnlyMount& how) {
  unsigned long flags = MS_RDONLY | MS_NOSUID | MS_NODEV;
  if (::mount(device.c_str(), target.c_str(), how.type.c_str(), flags, how.options.c_str()) != 0) {
    int err = errno;
    return Status::FromErrno(err == EBUSY ? Code::kTarget : Code::kIntegrity, err,
                             "mounting " + device + " (" + how.type + ", ro," + how.options + ") at " +
                                 target + " (the kernel log, dmesg, says why)");
  }
  FsMount m;
  m.device_ = device;
  m.target_ = target;
  return m;
}

FsMount::FsMount(FsMount&& other) noexcept : device_(std::move(other.device_)), target_(std::move(other.target_)) {
  other.target_.clear();
}

FsMount& FsMount::operator=(FsMount&& other) noexcept {
  if (this != &other) {
    if (mounted()) (void)Unmount(true);
    device_ = std::move(other.device_);
    target_ = std::move(other.target_);
    other.target_.clear();
  }
  return *this;
}

FsMount::~FsMount() {
  if (mounted()) {
    Status s = Unmount(/*lazy=*/true);
    if (!s.ok()) Error(s.message());
  }
}

Status FsMount::Unmount(bool lazy) {
  if (!mounted()) return Status::Ok();
  HOTSNAP_RETURN_IF_ERROR(UnmountIfSource(target_, device_, lazy));
  target_.clear();
  return Status::Ok();
}

Status UnmountIfSource(const std::string& target, const std::string& device, bool lazy) {
  if (!IsMountedFrom(target, device)) return Status::Ok();
  if (::umount2(target.c_str(), UMOUNT_NOFOLLOW) == 0 || errno == EINVAL) return Status::Ok();
  int err = errno;
  if (err == EBUSY && lazy) {
    if (::umount2(target.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) return Status::Ok();
    err = errno;
  }
  if (err == EBUSY) {
    return Status(Code::kTarget, target + " is busy: a process has a file open or its working directory "
                                 "there (fuser -vm " + target + " lists them); nothing was changed", err);
  }
  return Status::FromErrno(Code::kTarget, err, "unmounting " + target);
}

bool IsMountedFrom(const std::string& target, const std::string& device) {
  for (const MountInfoEntry& m : CurrentMounts()) {
    if (m.mount_point == target && m.source == device) return true;
  }
  return false;
}

bool IsMountPoint(const std::string& path) {
  for (const MountInfoEntry& m : CurrentMounts()) {
    if (m.mount_point == path) return true;
  }
  return false;
}

}  // namespace hotsnap
