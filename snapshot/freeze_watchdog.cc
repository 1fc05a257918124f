#include "snapshot/freeze_watchdog.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <utility>
#include <vector>

namespace hotsnap {
namespace {

constexpr int kExitDisarmed = 0;
constexpr int kExitDeadline = 10;
constexpr int kExitOwnerDied = 11;
constexpr int kExitThawedOnRequest = 12;
constexpr int kExitThawFailed = 13;

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

// The child, with the mount points' descriptors `mount_fds[0..count)`. Async-signal-safe
// calls only; never returns.
[[noreturn]] void WatchdogMain(const int* mount_fds, int count, int control_fd,
                               int64_t deadline_ms) {
  ::setsid();
  struct sigaction ignore = {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ignore, nullptr);
  sigaction(SIGTERM, &ignore, nullptr);
  sigaction(SIGHUP, &ignore, nullptr);
  sigaction(SIGPIPE, &ignore, nullptr);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // Keep only our descriptors, the control pipe as 3 and the mount points from 4 on: another
  // copy of the control pipe's write end, or of an output file, must not stay open here.
  // The sources were placed above kFirstSourceFd by the parent, so no dup2 overwrites one.
  if (::dup2(control_fd, 3) < 0) ::_exit(20);
  for (int i = 0; i < count; ++i) {
    if (::dup2(mount_fds[i], 4 + i) < 0) ::_exit(20);
  }
  ::syscall(SYS_close_range, static_cast<unsigned>(4 + count), ~0u, 0u);
  ::close(0);
  ::close(1);
  ::close(2);
  int outcome = kExitDeadline;
  for (;;) {
    int64_t left = deadline_ms - NowMs();
    if (left <= 0) break;
    pollfd pfd{3, POLLIN, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(left > 1000 ? 1000 : left));
    if (n <= 0) continue;  // timeout slice or EINTR: re-check the deadline
    char byte = 0;
    ssize_t got = ::read(3, &byte, 1);
    if (got == 1 && byte == 'D') ::_exit(kExitDisarmed);
    if (got == 1 && byte == 'T') {
      outcome = kExitThawedOnRequest;
      break;
    }
    if (got == 0) {
      outcome = kExitOwnerDied;
      break;
    }
    if (got < 0 && errno != EINTR) {
      outcome = kExitOwnerDied;
      break;
    }
  }
  // Thaw every one, whatever happens to the others. EINVAL means it is not frozen (already
  // thawed): nothing to do either way. Any other failure is reported, so that the owner can
  // say a filesystem may stay frozen.
  bool failed = false;
  for (int i = 0; i < count; ++i) {
    if (::ioctl(4 + i, FITHAW, 0) != 0 && errno != EINVAL) failed = true;
  }
  ::_exit(failed ? kExitThawFailed : outcome);
}

}  // namespace

Result<FreezeWatchdog> FreezeWatchdog::Start(const std::vector<std::string>& mount_points,
                                             std::chrono::milliseconds deadline) {
  if (mount_points.empty() || mount_points.size() > kMaxMounts) {
    return Status(Code::kUsage, "a freeze watchdog guards 1 to " + std::to_string(kMaxMounts) +
                                    " filesystems, not " + std::to_string(mount_points.size()));
  }
  // Each descriptor above every number the child dup2()s onto (3 .. 3 + count), so that
  // placing one never closes another.
  constexpr int kFirstSourceFd = 4 + static_cast<int>(kMaxMounts);
  std::vector<UniqueFd> mount_fds;
  std::vector<int> raw;
  for (const std::string& mount_point : mount_points) {
    UniqueFd opened(::open(mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!opened.valid()) {
      return Status::FromErrno(Code::kSource, errno, "opening mount point " + mount_point);
    }
    UniqueFd high(::fcntl(opened.get(), F_DUPFD_CLOEXEC, kFirstSourceFd));
    if (!high.valid()) return Status::FromErrno(Code::kInternal, errno, "fcntl(F_DUPFD)");
    raw.push_back(high.get());
    mount_fds.push_back(std::move(high));
  }
  // Disarm() writes to the pipe after the child may have exited: EPIPE, not a signal.
  ::signal(SIGPIPE, SIG_IGN);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return Status::FromErrno(Code::kInternal, errno, "pipe");
  UniqueFd read_end(::fcntl(pipe_fds[0], F_DUPFD_CLOEXEC, kFirstSourceFd)), write_end(pipe_fds[1]);
  ::close(pipe_fds[0]);
  if (!read_end.valid()) return Status::FromErrno(Code::kInternal, errno, "fcntl(F_DUPFD)");
  int64_t deadline_ms = NowMs() + deadline.count();
  pid_t pid = ::fork();
  if (pid < 0) return Status::FromErrno(Code::kInternal, errno, "starting the freeze watchdog");
  if (pid == 0) {
    ::close(write_end.get());
    WatchdogMain(raw.data(), static_cast<int>(raw.size()), read_end.get(), deadline_ms);
  }
  FreezeWatchdog w;
  w.pid_ = pid;
  w.control_ = std::move(write_end);
  return w;
}

FreezeWatchdog::~FreezeWatchdog() {
  if (pid_ > 0) Disarm();
}

FreezeWatchdog::FreezeWatchdog(FreezeWatchdog&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), control_(std::move(other.control_)) {}

FreezeWatchdog& FreezeWatchdog::operator=(FreezeWatchdog&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) Disarm();
    pid_ = std::exchange(other.pid_, -1);
    control_ = std::move(other.control_);
  }
  return *this;
}

FreezeWatchdog::Outcome FreezeWatchdog::Disarm() { return Finish('D'); }

FreezeWatchdog::Outcome FreezeWatchdog::ThawNow() { return Finish('T'); }

FreezeWatchdog::Outcome FreezeWatchdog::Finish(char command) {
  if (pid_ <= 0) return Outcome::kUnknown;
  // EPIPE if the child already exited (at its deadline): its exit status says what it did.
  ssize_t n = ::write(control_.get(), &command, 1);
  (void)n;
  control_.Reset();
  int status = 0;
  pid_t w;
  do {
    w = ::waitpid(pid_, &status, 0);
  } while (w < 0 && errno == EINTR);
  pid_ = -1;
  if (w < 0 || !WIFEXITED(status)) return Outcome::kUnknown;
  switch (WEXITSTATUS(status)) {
    case kExitDisarmed: return Outcome::kDisarmed;
    case kExitDeadline: return Outcome::kThawedAtDeadline;
    case kExitOwnerDied: return Outcome::kThawedAfterOwnerDied;
    case kExitThawedOnRequest:
      return Outcome::kThawedOnRequest;
    case kExitThawFailed:
      return Outcome::kThawFailed;
    default: return Outcome::kUnknown;
  }
}

}  // namespace hotsnap
