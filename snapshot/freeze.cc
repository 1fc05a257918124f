#include "snapshot/freeze.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

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

Result<FrozenFilesystem> FrozenFilesystem::Freeze(const std::string& mount_point,
                                                  std::chrono::milliseconds max_freeze,
                                                  Freezer* freezer) {
  FrozenFilesystem f;
  f.mount_point_ = mount_point;
  f.freezer_ = freezer;
  f.max_freeze_ = max_freeze;
  f.mount_fd_.Reset(::open(mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!f.mount_fd_.valid()) {
    return Status::FromErrno(Code::kSource, errno, "opening mount point " + mount_point);
  }
  // Write back dirty data while writes still flow: FIFREEZE then has little left to sync,
  // and its window (writers blocked) stays short. A failure here is only a lost head start.
  ::syncfs(f.mount_fd_.get());
  // The watchdog exists before the freeze does, so no moment is unguarded.
  auto watchdog = FreezeWatchdog::Start(mount_point, max_freeze);
  if (!watchdog.ok()) return watchdog.status();
  f.watchdog_ = std::move(watchdog.value());
  f.frozen_at_ = std::chrono::steady_clock::now();
  int err = freezer->Freeze(f.mount_fd_.get());
  if (err == EBUSY) {
    f.watchdog_.Disarm();
    return Status(Code::kSource, "the filesystem at " + mount_point +
                                     " is already frozen by someone else (FIFREEZE: EBUSY); "
                                     "leaving that freeze alone",
                  err);
  }
  if (err == EOPNOTSUPP || err == ENOTTY || err == EINVAL) {
    f.watchdog_.Disarm();
    return Status(Code::kUnsupported, "the filesystem at " + mount_point +
                                          " cannot be frozen (FIFREEZE: " + std::strerror(err) +
                                          "); tmpfs and some others have no freeze support",
                  err);
  }
  if (err != 0) {
    f.watchdog_.Disarm();
    return Status::FromErrno(Code::kSource, err, "freezing " + mount_point);
  }
  f.frozen_ = true;
  return f;
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
    mount_point_ = std::move(other.mount_point_);
    mount_fd_ = std::move(other.mount_fd_);
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
  int err = freezer_->Thaw(mount_fd_.get());
  thawed_at_ = std::chrono::steady_clock::now();
  // The watchdog is disarmed only after our thaw worked. Otherwise it is told to thaw now:
  // disarming it then would leave the filesystem frozen with nothing left to thaw it.
  FreezeWatchdog::Outcome outcome = err == 0 ? watchdog_.Disarm() : watchdog_.ThawNow();
  if (outcome == FreezeWatchdog::Outcome::kThawedAtDeadline) {
    // Our FITHAW found it thawed already (EINVAL) or came just after: not an extra error.
    return Status(Code::kSource, "the freeze of " + mount_point_ + " passed --max-freeze (" +
                                     std::to_string(max_freeze_.count() / 1000.0).substr(0, 5) +
                                     " s) and the watchdog thawed it; the copy is not consistent");
  }
  if (err == 0) return Status::Ok();
  Status failed = Status::FromErrno(Code::kSource, err, "thawing " + mount_point_ + " (FITHAW)");
  if (outcome == FreezeWatchdog::Outcome::kThawedOnRequest) {
    return Status(Code::kSource, failed.message() + "; the freeze watchdog thawed it instead", err);
  }
  return Status(Code::kSource,
                failed.message() +
                    "; the freeze watchdog could not thaw it either: " + mount_point_ +
                    " may still be frozen (fsfreeze -u " + mount_point_ + " thaws it)",
                err);
}

std::chrono::milliseconds FrozenFilesystem::held() const {
  auto end = frozen_ ? std::chrono::steady_clock::now() : thawed_at_;
  return std::chrono::duration_cast<std::chrono::milliseconds>(end - frozen_at_);
}

bool FrozenFilesystem::past_deadline() const { return frozen_ && held() >= max_freeze_; }

}  // namespace hotsnap
