#include "snapshot/source_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <nlohmann/json.hpp>
#include <utility>

namespace hotsnap {
namespace {

using json = nlohmann::json;

Status MakeDirs(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos == dir.size() || dir[pos] == '/') {
      std::string part = dir.substr(0, pos);
      if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
        return Status::FromErrno(Code::kInternal, errno, "creating lock directory " + part);
      }
    }
  }
  return Status::Ok();
}

std::string EncodeHolder(const LockHolder& holder) {
  json doc = {{"run_id", holder.run_id},
              {"purpose", holder.purpose},
              {"path", holder.path},
              {"started", holder.started}};
  AddIdentityTo(holder.identity, &doc);
  return doc.dump(2) + "\n";
}

// The holder a lock file names; empty fields if it is empty or not our JSON.
LockHolder DecodeHolder(const std::string& text) {
  LockHolder holder;
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return holder;
  holder.identity = IdentityFrom(doc);
  auto str = [&doc](const char* key) {
    auto it = doc.find(key);
    return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  holder.run_id = str("run_id");
  holder.purpose = str("purpose");
  holder.path = str("path");
  holder.started = str("started");
  return holder;
}

std::string ReadFd(int fd) {
  std::string text;
  char buf[4096];
  for (off_t at = 0;;) {
    ssize_t got = ::pread(fd, buf, sizeof(buf), at);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buf, static_cast<size_t>(got));
    at += got;
  }
  return text;
}

std::string Doing(const std::string& purpose) {
  if (purpose == "backup") return "being backed up";
  if (purpose == "restore") return "being restored";
  return "in use";
}

// The kBusy status for `path`, whose lock file `file` is held (or, for a dry run, names a live
// holder).
Status BusyStatus(const std::string& path, const std::string& file, const LockHolder& holder) {
  if (!holder.identity.Alive()) {
    // Locked, but not by the run the file names (it is still being written, or a process that
    // inherited the descriptor holds it): never break it.
    return Status(Code::kBusy,
                  path + " is locked by another process (lock file " + file +
                      (holder.identity.pid > 0
                           ? ", which names hotsnap pid " + std::to_string(holder.identity.pid) +
                                 ", no longer running"
                           : "") +
                      "); find the holder with 'fuser " + file + "'");
  }
  std::string as = holder.path.empty() || holder.path == path ? "" : " (as " + holder.path + ")";
  return Status(Code::kBusy, path + " is " + Doing(holder.purpose) + as + " by hotsnap pid " +
                                 std::to_string(holder.identity.pid) + " (started " +
                                 holder.started + ", run id " + holder.run_id +
                                 "); wait for it to finish or stop it (lock " + file + ")");
}

bool SameFile(int fd, const std::string& file) {
  struct stat by_fd, by_name;
  return ::fstat(fd, &by_fd) == 0 && ::stat(file.c_str(), &by_name) == 0 &&
         by_fd.st_dev == by_name.st_dev && by_fd.st_ino == by_name.st_ino;
}

}  // namespace

Result<std::string> LockFileName(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return Status::FromErrno(Code::kSource, errno, "looking up " + path + " to lock it");
  }
  if (S_ISBLK(st.st_mode)) {
    return "dev-" + std::to_string(major(st.st_rdev)) + "-" + std::to_string(minor(st.st_rdev)) +
           ".lock";
  }
  return "file-" + std::to_string(major(st.st_dev)) + "-" + std::to_string(minor(st.st_dev)) + "-" +
         std::to_string(st.st_ino) + ".lock";
}

Result<SourceLock> SourceLock::Acquire(const std::string& path, const std::string& purpose,
                                       const std::string& lock_dir) {
  auto name = LockFileName(path);
  if (!name.ok()) return name.status();
  SourceLock lock;
  // An unprivileged run may back up or restore an image file, but cannot write the lock dir:
  // such a run goes unlocked (block devices need root anyway, see agent/privileges.h).
  auto unprivileged = [&name](int err) {
    return (err == EACCES || err == EPERM || err == EROFS) && name->rfind("file-", 0) == 0;
  };
  if (Status made = MakeDirs(lock_dir); !made.ok()) {
    if (unprivileged(made.err())) return lock;
    return made;
  }
  lock.file_ = lock_dir + "/" + *name;
  // A holder releasing between our open() and flock() has removed the file we locked: then
  // the name may already belong to a newer file, so open it again.
  for (int attempt = 0;; ++attempt) {
    UniqueFd fd(::open(lock.file_.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) {
      if (unprivileged(errno)) return SourceLock();
      return Status::FromErrno(Code::kInternal, errno, "opening lock file " + lock.file_);
    }
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) return BusyStatus(path, lock.file_, DecodeHolder(ReadFd(fd.get())));
      return Status::FromErrno(Code::kInternal, errno, "locking " + lock.file_);
    }
    if (SameFile(fd.get(), lock.file_)) {
      lock.fd_ = std::move(fd);
      break;
    }
    if (attempt == 100) {
      return Status(Code::kInternal, "lock file " + lock.file_ + " keeps being replaced");
    }
  }
  // Ours now; whatever the file said before was a run that is gone.
  LockHolder me{ProcessIdentity::Current(), NewRunId(), purpose, path, NowUtc()};
  lock.run_id_ = me.run_id;
  std::string text = EncodeHolder(me);
  if (::ftruncate(lock.fd_.get(), 0) != 0 ||
      ::pwrite(lock.fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    return Status::FromErrno(Code::kInternal, errno, "writing lock file " + lock.file_);
  }
  return lock;
}

Status SourceLock::CheckFree(const std::string& path, const std::string& lock_dir) {
  auto name = LockFileName(path);
  if (!name.ok()) return name.status();
  std::string file = lock_dir + "/" + *name;
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return Status::Ok();  // no lock file: nobody holds it
  LockHolder holder = DecodeHolder(ReadFd(fd.get()));
  if (!holder.identity.Alive()) return Status::Ok();
  return BusyStatus(path, file, holder);
}

SourceLock::SourceLock(SourceLock&& other) noexcept
    : fd_(std::move(other.fd_)),
      file_(std::exchange(other.file_, {})),
      run_id_(std::exchange(other.run_id_, {})) {}

SourceLock& SourceLock::operator=(SourceLock&& other) noexcept {
  if (this != &other) {
    (void)Release();
    fd_ = std::move(other.fd_);
    file_ = std::exchange(other.file_, {});
    run_id_ = std::exchange(other.run_id_, {});
  }
  return *this;
}

SourceLock::~SourceLock() { (void)Release(); }

Status SourceLock::Release() {
  if (!fd_.valid()) return Status::Ok();
  // Unlink while still locked: a run that opened the file meanwhile sees, once it gets the
  // lock, that the name no longer leads to it, and starts over (see Acquire).
  Status status;
  if (::unlink(file_.c_str()) != 0 && errno != ENOENT) {
    status = Status::FromErrno(Code::kInternal, errno, "removing lock file " + file_);
  }
  fd_.Reset();
  return status;
}

}  // namespace hotsnap
