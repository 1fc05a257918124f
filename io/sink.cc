#include "io/sink.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/crash_point.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "io/writeback_behind.h"

namespace hotsnap {
namespace {

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

class FdSink : public Sink {
 public:
  FdSink(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  Status Write(const void* data, size_t bytes) override {
    return WriteAll(fd_, data, bytes, name_, Code::kTarget);
  }
  Status Commit() override { return Status::Ok(); }
  std::string Describe() const override { return name_; }

 private:
  int fd_;
  std::string name_;
};

class FileSink : public Sink {
 public:
  FileSink(std::string path, std::string temp, UniqueFd fd, bool overwrite, PublishOps* ops)
      : path_(std::move(path)),
        temp_(std::move(temp)),
        fd_(std::move(fd)),
        overwrite_(overwrite),
        ops_(ops) {}
  ~FileSink() override {
    if (!committed_) ops_->Unlink(temp_);
  }
  Status Write(const void* data, size_t bytes) override {
    HOTSNAP_RETURN_IF_ERROR(WriteAll(fd_.get(), data, bytes, temp_, Code::kTarget));
    written_ += bytes;
    writeback_.Written(written_);
    return Status::Ok();
  }
  Status Commit() override;
  std::string Describe() const override { return path_; }
  int read_back_fd() const override { return fd_.get(); }

 private:
  // Writeback every 32 MiB, on its own thread (io/writeback_behind.h).
  static constexpr uint64_t kWritebackWindowBytes = 32ull << 20;

  uint64_t written_ = 0;  // bytes
  std::string path_;
  std::string temp_;
  UniqueFd fd_;
  WritebackBehind writeback_{fd_.get(), kWritebackWindowBytes};  // after fd_: stops first
  bool overwrite_;
  PublishOps* ops_;
  bool committed_ = false;  // the final name holds the image

  Status Replace();                  // rename(temp_, path_)
  Status PublishWithoutReplacing();  // renameat2(RENAME_NOREPLACE), else link + unlink
};

// errno values with which a filesystem says it does not implement renameat2's flags: EINVAL
// (NFS, 9p, CIFS, FUSE), ENOSYS (no renameat2), ENOTSUP/EOPNOTSUPP.
bool FlagsUnsupported(int err) {
  return err == EINVAL || err == ENOSYS || err == ENOTSUP || err == EOPNOTSUPP;
}

// errno values with which a filesystem refuses hard links altogether.
bool LinksUnsupported(int err) {
  return err == EPERM || err == ENOTSUP || err == EOPNOTSUPP || err == ENOSYS || err == EINVAL;
}

Status AppearedMeanwhile(const std::string& path) {
  return Status(Code::kTarget,
                path + " appeared while the backup ran; not replaced (use --overwrite)", EEXIST);
}

// After the point of no return: the image is published, so this is not an error.
void Warn(const std::string& line) { Notice("warning: " + line); }

Status FileSink::Commit() {
  writeback_.Finish();
  if (::fsync(fd_.get()) != 0) return Status::FromErrno(Code::kTarget, errno, "fsync " + temp_);
  if (::close(fd_.Release()) != 0) return Status::FromErrno(Code::kTarget, errno, "close " + temp_);
  CrashPoint("before-rename");
  HOTSNAP_RETURN_IF_ERROR(overwrite_ ? Replace() : PublishWithoutReplacing());
  // The final name holds the image: it is published, whatever happens next.
  committed_ = true;
  std::string dir = DirName(path_);
  if (int err = ops_->SyncDirectory(dir); err != 0) {
    Warn(path_ + " is published, but fsync of its directory " + dir + " failed (" +
         std::strerror(err) +
         "): the new name may not survive a power loss until the directory is synced (run sync)");
  }
  return Status::Ok();
}

Status FileSink::Replace() {
  if (int err = ops_->Rename(temp_, path_, 0); err != 0) {
    return Status::FromErrno(Code::kTarget, err, "rename " + temp_ + " to " + path_);
  }
  return Status::Ok();
}

Status FileSink::PublishWithoutReplacing() {
  int err = ops_->Rename(temp_, path_, RENAME_NOREPLACE);
  if (err == 0) return Status::Ok();
  if (err == EEXIST) return AppearedMeanwhile(path_);
  if (!FlagsUnsupported(err)) {
    return Status::FromErrno(Code::kTarget, err, "rename " + temp_ + " to " + path_);
  }
  // The filesystem has no RENAME_NOREPLACE. link() never replaces an existing name either.
  Notice("the filesystem of " + DirName(path_) + " refuses renameat2(RENAME_NOREPLACE) (" +
         std::strerror(err) + "); publishing with link() and unlink() instead");
  int link_err = ops_->Link(temp_, path_);
  if (link_err == EEXIST) return AppearedMeanwhile(path_);
  if (link_err != 0 && LinksUnsupported(link_err)) {
    return Status(Code::kTarget,
                  "cannot publish " + path_ +
                      " without risking replacing a file created meanwhile: its filesystem "
                      "refuses both renameat2(RENAME_NOREPLACE) (" +
                      std::strerror(err) + ") and hard links (" + std::strerror(link_err) +
                      "); nothing was published (--overwrite publishes with a plain rename)",
                  link_err);
  }
  if (link_err != 0) {
    return Status::FromErrno(Code::kTarget, link_err, "link " + temp_ + " to " + path_);
  }
  // Published under both names now; a crash here leaves the temporary name, which
  // `hotsnap cleanup` removes (the image stays under its final name).
  committed_ = true;
  CrashPoint("after-link");
  if (int unlink_err = ops_->Unlink(temp_); unlink_err != 0) {
    Warn(path_ + " is published, but its temporary second name " + temp_ +
         " could not be removed (" + std::strerror(unlink_err) +
         "); remove it, or run hotsnap cleanup");
  }
  return Status::Ok();
}

}  // namespace

int PublishOps::Rename(const std::string& from, const std::string& to, unsigned flags) {
  return ::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags) == 0 ? 0 : errno;
}

int PublishOps::Link(const std::string& from, const std::string& to) {
  return ::link(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

int PublishOps::Unlink(const std::string& path) { return ::unlink(path.c_str()) == 0 ? 0 : errno; }

int PublishOps::SyncDirectory(const std::string& dir) {
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) return errno;
  return ::fsync(dfd.get()) == 0 ? 0 : errno;
}

PublishOps* RealPublishOps() {
  static PublishOps* real = new PublishOps;
  return real;
}

Status WriteAll(int fd, const void* data, size_t bytes, const std::string& what, Code code) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (bytes > 0) {
    ssize_t n = ::write(fd, p, bytes);
    if (n < 0) {
      if (errno == EINTR) {
        if (Interrupted()) return Status(Code::kInterrupted, "interrupted while writing " + what);
        continue;
      }
      if (errno == EAGAIN) {
        // A non-blocking stdout: wait until it drains.
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, nullptr);
        continue;
      }
      return Status::FromErrno(code, errno, "writing " + what);
    }
    if (n == 0) return Status(code, "writing " + what + ": wrote 0 bytes");
    p += n;
    bytes -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

std::unique_ptr<Sink> MakeFdSink(int fd, std::string name) {
  return std::make_unique<FdSink>(fd, std::move(name));
}

std::string TemporaryNameFor(const std::string& path, int pid) {
  std::string dir = DirName(path);
  return (dir == "/" ? "" : dir) + "/." + BaseName(path) + ".hotsnap-" + std::to_string(pid) +
         ".tmp";
}

Result<std::unique_ptr<Sink>> MakeFileSink(const std::string& path,
                                           const FileSinkOptions& options) {
  if (path.empty() || path.back() == '/') {
    return Status(Code::kUsage, "destination '" + path + "' is not a file name");
  }
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status(Code::kTarget, path + " is a directory");
    if (!options.overwrite) {
      return Status(Code::kTarget,
                    path + " already exists; refusing to replace it (use --overwrite)");
    }
    if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
      return Status(Code::kTarget,
                    path + " exists and is not a regular file; refusing to replace it");
    }
  } else if (errno != ENOENT) {
    return Status::FromErrno(Code::kTarget, errno, "checking " + path);
  }
  std::string temp = TemporaryNameFor(path, static_cast<int>(::getpid()));
  UniqueFd fd(::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    int err = errno;
    if (err == EEXIST) {
      return Status(
          Code::kTarget,
          "temporary file " + temp + " already exists (a symlink or a leftover); remove it first",
          err);
    }
    return Status::FromErrno(Code::kTarget, err, "creating " + temp);
  }
  // umask can only remove bits, but be explicit: images are private.
  ::fchmod(fd.get(), 0600);
  PublishOps* ops = options.ops != nullptr ? options.ops : RealPublishOps();
  return std::unique_ptr<Sink>(new FileSink(path, temp, std::move(fd), options.overwrite, ops));
}

}  // namespace hotsnap
