#include "mount/mounted_filesystem.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/log.h"

namespace hotsnap {

Result<MountDirectory> MountDirectory::Prepare(const std::string& path, bool create) {
  MountDirectory d;
  d.path_ = path;
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT || !create)
      return Status::FromErrno(Code::kTarget, errno, "mount point " + path);
    if (::mkdir(path.c_str(), 0755) != 0)
      return Status::FromErrno(Code::kTarget, errno, "creating " + path);
    d.created_ = true;
    return d;
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status(Code::kTarget, "mount point " + path + " exists and is not a directory");
  }
  if (IsMountPoint(path)) {
    return Status(Code::kTarget, "mount point " + path + " already has a filesystem mounted on it");
  }
  return d;
}

MountDirectory::MountDirectory(MountDirectory&& other) noexcept
    : path_(std::move(other.path_)), created_(other.created_) {
  other.created_ = false;
}

MountDirectory& MountDirectory::operator=(MountDirectory&& other) noexcept {
  if (this != &other) {
    (void)Remove();
    path_ = std::move(other.path_);
    created_ = other.created_;
    other.created_ = false;
  }
  return *this;
}

MountDirectory::~MountDirectory() {
  Status s = Remove();
  if (!s.ok()) Error(s.message());
}

Status MountDirectory::Remove() {
  if (!created_) return Status::Ok();
  if (::rmdir(path_.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno(Code::kTarget, errno,
                             "removing the directory " + path_ + " made for the mount");
  }
  created_ = false;
  return Status::Ok();
}

Result<MountedFilesystem> MountedFilesystem::Mount(
    const PlannedMount& plan, const std::string& device_file, uint32_t sector_bytes,
    const std::function<Status(const MountedPart&)>& record) {
  MountedFilesystem m;
  MountedPart part;
  part.partition = plan.partition;
  part.fs_type = plan.fs_type;
  part.mount_point = plan.mount_point;

  // 1. The directory.
  auto dir = MountDirectory::Prepare(plan.mount_point, plan.own_directory);
  if (!dir.ok()) return dir.status();
  m.dir_ = std::move(dir.value());
  part.created_dir = m.dir_.created();
  HOTSNAP_RETURN_IF_ERROR(record(part));

  // 2. A read-only loop device over the planned window of the device file.
  LoopTuning tuning;
  tuning.offset_bytes = plan.offset_bytes;
  tuning.size_limit_bytes = plan.size_bytes;
  auto loop = LoopAttachment::Attach(device_file, sector_bytes, tuning);
  if (!loop.ok()) return loop.status();
  m.loop_ = std::move(loop.value());
  if (!m.loop_.direct_io()) {
    Notice(m.loop_.device() +
           " reads through the page cache (this kernel cannot do direct I/O on a FUSE "
           "file): reads through the mount work, more slowly");
  }
  part.loop_device = m.loop_.device();
  HOTSNAP_RETURN_IF_ERROR(record(part));

  // 3. The filesystem, read-only, without journal or log recovery.
  auto fs = FsMount::Mount(m.loop_.device(), plan.mount_point, plan.how);
  if (!fs.ok()) return fs.status();
  m.fs_ = std::move(fs.value());
  return m;
}

Status MountedFilesystem::Undo() {
  Status first;
  auto keep = [&first](Status s) {
    if (!s.ok()) {
      Error(s.message());
      if (first.ok()) first = s;
    }
  };
  keep(fs_.Unmount(/*lazy=*/true));
  keep(loop_.Detach());
  keep(dir_.Remove());
  return first;
}

MountSet::~MountSet() { (void)UndoAll(); }

Status MountSet::UndoAll() {
  Status first;
  while (!mounts_.empty()) {
    Status s = mounts_.back().Undo();
    if (!s.ok() && first.ok()) first = s;
    mounts_.pop_back();
  }
  return first;
}

}  // namespace hotsnap
