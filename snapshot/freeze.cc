#include "snapshot/freeze.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "base/log.h"
#include "snapshot/freeze_stacking.h"

namespace hotsnap {
namespace {

class IoctlFreezer : public Freezer {
 public:
  int Freeze(int fd) override { return ::ioctl(fd, FIFREEZE, 0) == 0 ? 0 : errno; }
  int Thaw(int fd) override { return ::ioctl(fd, FITHAW, 0) == 0 ? 0 : errno; }
};

}  // namespace

Freezer* RealFreezer() {
  static IoctlFreezer freezer;
  return &freezer;
}

Result<FrozenFilesystem> FrozenFilesystem::Freeze(const std::vector<std::string>& mount_points,
                                                  std::chrono::milliseconds max_freeze,
                                                  Freezer* freezer) {
  FrozenFilesystem f;
  f.mount_points_ = mount_points;
  if (f.mount_points_.empty()) return Status(Code::kInternal, "a freeze of no filesystem");
  f.freezer_ = freezer;
  f.max_freeze_ = max_freeze;
  for (const std::string& mount_point : mount_points) {
    UniqueFd fd(::open(mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) {
      return Status::FromErrno(Code::kSource, errno, "opening mount point " + mount_point);
    }
    // Write back dirty data while writes still flow: FIFREEZE then has little left to sync,
    // and its window (writers blocked) stays short. A failure here is only a lost head start.
    ::syncfs(fd.get());
    f.mount_fds_.push_back(std::move(fd));
  }
  // The watchdog exists before the first freeze does, so no moment is unguarded. It thaws
  // in the reverse of the freeze order, as Thaw() does.
  std::vector<std::string> thaw_order(mount_points.rbegin(), mount_points.rend());
  auto watchdog = FreezeWatchdog::Start(thaw_order, max_freeze);
  if (!watchdog.ok()) return watchdog.status();
  f.watchdog_ = std::move(watchdog.value());
  // Members that rest on nothing of each other are frozen at once: the group's freeze then
  // lasts as long as its slowest FIFREEZE, not the sum of them (snapshot/freeze_stacking.h).
  const size_t n = mount_points.size();
  const bool at_once = n > 1 && MayFreezeAtOnce(mount_points);
  std::vector<int> errs(n, 0);
  std::vector<char> frozen(n, 0);
  f.frozen_at_ = std::chrono::steady_clock::now();
  if (at_once) {
    std::vector<std::thread> others;
    for (size_t i = 1; i < n; ++i) {
      others.emplace_back([&, i] { errs[i] = freezer->Freeze(f.mount_fds_[i].get()); });
    }
    errs[0] = freezer->Freeze(f.mount_fds_[0].get());
    for (std::thread& t : others) t.join();
    for (size_t i = 0; i < n; ++i) frozen[i] = errs[i] == 0;
  } else {
    for (size_t i = 0; i < n; ++i) {
      errs[i] = freezer->Freeze(f.mount_fds_[i].get());
      if (errs[i] != 0) break;
      frozen[i] = 1;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    int err = errs[i];
    if (err == 0) continue;
    const std::string& mount_point = mount_points[i];
    Status failed;
    if (err == EBUSY) {
      failed = Status(Code::kSource,
                      "the filesystem at " + mount_point +
                          " is already frozen by someone else (FIFREEZE: EBUSY); "
                          "leaving that freeze alone",
                      err);
    } else if (err == EOPNOTSUPP || err == ENOTTY || err == EINVAL) {
      failed = Status(Code::kUnsupported,
                      "the filesystem at " + mount_point +
                          " cannot be frozen (FIFREEZE: " + std::strerror(err) +
                          "); tmpfs, vfat and some others have no freeze support",
                      err);
    } else {
      failed = Status::FromErrno(Code::kSource, err, "freezing " + mount_point);
    }
    // Undo the members that froze; the watchdog thaws them if we cannot. It must not touch
    // one that failed (EBUSY: someone else's freeze), so it is disarmed whenever our own
    // thaws worked.
    std::string thaw_failed_at;
    int thaw_err = f.ThawMembers(frozen, &thaw_failed_at);
    if (thaw_err == 0) {
      f.watchdog_.Disarm();
    } else {
      f.watchdog_.ThawNow();
      failed = failed.Wrap("thawing " + thaw_failed_at + " after that failed too (" +
                           std::strerror(thaw_err) + "); the freeze watchdog thawed the group");
    }
    return failed;
  }
  f.frozen_ = true;
  return f;
}

int FrozenFilesystem::ThawMembers(const std::vector<char>& which, std::string* failed_at) {
  int first = 0;
  for (size_t i = which.size(); i-- > 0;) {
    if (!which[i]) continue;
    int err = freezer_->Thaw(mount_fds_[i].get());
    if (err != 0 && first == 0) {
      first = err;
      *failed_at = mount_points_[i];
    }
  }
  return first;
}

// The destructor is the backstop after an error path that did not thaw explicitly: no
// caller is left to take a Status, so a failed thaw is logged (the watchdog has been told
// to thaw by then; see Thaw()).
void FrozenFilesystem::ThawOrLog() {
  if (!frozen_) return;
  Status thawed = Thaw();
  if (!thawed.ok()) Error(thawed.message());
}

FrozenFilesystem::~FrozenFilesystem() { ThawOrLog(); }

FrozenFilesystem& FrozenFilesystem::operator=(FrozenFilesystem&& other) noexcept {
  if (this != &other) {
    ThawOrLog();
    mount_points_ = std::move(other.mount_points_);
    other.mount_points_ = {""};
    mount_fds_ = std::move(other.mount_fds_);
    freezer_ = other.freezer_;
    watchdog_ = std::move(other.watchdog_);
    frozen_ = std::exchange(other.frozen_, false);
    frozen_at_ = other.frozen_at_;
    thawed_at_ = other.thawed_at_;
    max_freeze_ = other.max_freeze_;
  }
  return *this;
}

Status FrozenFilesystem::Thaw() {
  if (!frozen_) return Status::Ok();
  frozen_ = false;
  std::string failed_at;
  int err = ThawMembers(std::vector<char>(mount_fds_.size(), 1), &failed_at);
  thawed_at_ = std::chrono::steady_clock::now();
  // The watchdog is disarmed only after every thaw worked. Otherwise it is told to thaw now
  // (all of them: EINVAL for those already thawed is nothing): disarming it then would
  // leave a filesystem frozen with nothing left to thaw it.
  FreezeWatchdog::Outcome outcome = err == 0 ? watchdog_.Disarm() : watchdog_.ThawNow();
  const std::string group = mount_points_.size() == 1
                                ? mount_points_.front()
                                : "the group " + JoinMountPoints(mount_points_);
  if (outcome == FreezeWatchdog::Outcome::kThawedAtDeadline) {
    // Our FITHAW found it thawed already (EINVAL) or came just after: not an extra error.
    return Status(Code::kSource, "the freeze of " + group + " passed --max-freeze (" +
                                     std::to_string(max_freeze_.count() / 1000.0).substr(0, 5) +
                                     " s) and the watchdog thawed it; the copy is not consistent");
  }
  if (err == 0) return Status::Ok();
  Status failed = Status::FromErrno(Code::kSource, err, "thawing " + failed_at + " (FITHAW)");
  if (outcome == FreezeWatchdog::Outcome::kThawedOnRequest) {
    return Status(Code::kSource, failed.message() + "; the freeze watchdog thawed it instead", err);
  }
  return Status(Code::kSource,
                failed.message() + "; the freeze watchdog could not thaw it either: " + failed_at +
                    " may still be frozen (fsfreeze -u " + failed_at + " thaws it)",
                err);
}

std::chrono::milliseconds FrozenFilesystem::held() const {
  auto end = frozen_ ? std::chrono::steady_clock::now() : thawed_at_;
  return std::chrono::duration_cast<std::chrono::milliseconds>(end - frozen_at_);
}

bool FrozenFilesystem::past_deadline() const { return frozen_ && held() >= max_freeze_; }

std::string JoinMountPoints(const std::vector<std::string>& mount_points) {
  std::string out;
  for (const std::string& m : mount_points) out += (out.empty() ? "" : ", ") + m;
  return out;
}

int MountPointDepth(const std::string& path) {
  return path == "/" ? 0 : static_cast<int>(std::count(path.begin(), path.end(), '/'));
}

bool FilesystemTypeCanFreeze(const std::string& fs_type) {
  static const char* const kFreezable[] = {"ext2",  "ext3",   "ext4",     "xfs",
                                           "btrfs", "f2fs",   "jfs",      "gfs2",
                                           "ocfs2", "nilfs2", "reiserfs", "bcachefs"};
  for (const char* t : kFreezable) {
    if (fs_type == t) return true;
  }
  return false;
}

}  // namespace hotsnap
