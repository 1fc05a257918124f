#include "base/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/unique_fd.h"

extern char** environ;

namespace hotsnap {
namespace {

using Clock = std::chrono::steady_clock;

int DecodeWait(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Whether `pid` has exited, without reaping it: while it is an unreaped zombie its pid, and so
// its process group id, cannot be reused, which makes kill(-pid) after it safe.
bool Exited(pid_t pid) {
  siginfo_t info;
  std::memset(&info, 0, sizeof(info));
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    return errno != EINTR;  // ECHILD: nothing left to wait for
  }
  return info.si_pid == pid;
}

// Milliseconds until `when` for poll(), rounded up so the loop never spins; at least 0.
int MillisUntil(Clock::time_point when) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(when - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 1 << 30));
}

// The child's stdout and stderr pipes and what was read from them.
class OutputPipes {
 public:
  OutputPipes(UniqueFd out, UniqueFd err, size_t max_bytes, SubprocessResult* result)
      : max_bytes_(max_bytes) {
    fds_[0] = std::move(out);
    fds_[1] = std::move(err);
    dst_[0] = &result->out;
    dst_[1] = &result->err;
  }
  bool open() const { return fds_[0].valid() || fds_[1].valid(); }
  // Fills the first two entries of `polled` (an fd of -1 is ignored by poll).
  void Prepare(pollfd* polled) const {
    for (int i = 0; i < 2; ++i) polled[i] = {fds_[i].valid() ? fds_[i].get() : -1, POLLIN, 0};
  }
  // Reads the pipes poll() reported; closes a pipe at end of file or on error.
  void ReadReady(const pollfd* polled) {
    char buf[65536];
    for (int i = 0; i < 2; ++i) {
      if (polled[i].fd < 0 || polled[i].revents == 0) continue;
      ssize_t got = ::read(fds_[i].get(), buf, sizeof(buf));
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) {
        fds_[i].Reset();
        continue;
      }
      std::string& dst = *dst_[i];
      if (dst.size() < max_bytes_) {
        dst.append(buf, std::min(static_cast<size_t>(got), max_bytes_ - dst.size()));
      }
    }
  }

 private:
  size_t max_bytes_;
  UniqueFd fds_[2];
  std::string* dst_[2];
};

// Waits for the child `pid` while reading its output, enforcing `timeout` on the process:
// SIGTERM to its group at the timeout, SIGKILL kTermGrace later. Returns when it has exited
// (not yet reaped).
void WaitForExit(pid_t pid, std::chrono::milliseconds timeout, OutputPipes* pipes,
                 SubprocessResult* result) {
  // A pidfd becomes readable when the process exits. Without one (a kernel before 5.3) the
  // loop wakes every 10 ms to look.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  const Clock::time_point deadline = Clock::now() + timeout;
  Clock::time_point kill_at{};
  bool term_sent = false, kill_sent = false;
  while (!Exited(pid)) {
    Clock::time_point now = Clock::now();
    if (!term_sent && now >= deadline) {
      result->timed_out = true;
      ::kill(-pid, SIGTERM);
      term_sent = true;
      kill_at = now + kTermGrace;
    } else if (term_sent && !kill_sent && now >= kill_at) {
      ::kill(-pid, SIGKILL);
      kill_sent = true;
    }
    int wait_ms = kill_sent ? -1 : MillisUntil(term_sent ? kill_at : deadline);
    if (!pidfd.valid()) wait_ms = wait_ms < 0 ? 10 : std::min(wait_ms, 10);
    pollfd polled[3];
    pipes->Prepare(polled);
    polled[2] = {pidfd.valid() ? pidfd.get() : -1, POLLIN, 0};
    if (::poll(polled, 3, wait_ms) > 0) pipes->ReadReady(polled);
  }
}

}  // namespace

Result<SubprocessResult> RunSubprocess(const std::vector<std::string>& argv,
                                       const SubprocessOptions& options) {
  if (argv.empty()) return Status(Code::kInternal, "RunSubprocess: empty argv");
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Status::FromErrno(Code::kInternal, errno, "pipe");
  UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return Status::FromErrno(Code::kInternal, errno, "pipe");
  UniqueFd err_r(err_pipe[0]), err_w(err_pipe[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err_w.get(), STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);  // own process group: a timeout kills the whole tree
  sigset_t none, all_default;
  sigemptyset(&none);
  sigemptyset(&all_default);
  sigaddset(&all_default, SIGINT);
  sigaddset(&all_default, SIGTERM);
  sigaddset(&all_default, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all_default);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) env_storage.emplace_back(*e);
  for (const auto& e : options.extra_env) env_storage.push_back(e);
  std::vector<char*> env;
  for (auto& e : env_storage) env.push_back(e.data());
  env.push_back(nullptr);

  pid_t pid = 0;
  int rc = posix_spawnp(&pid, args[0], &actions, &attr, args.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Status::FromErrno(Code::kInternal, rc, "starting " + argv[0]);
  out_w.Reset();
  err_w.Reset();

  SubprocessResult result;
  OutputPipes pipes(std::move(out_r), std::move(err_r), options.max_output_bytes, &result);
  WaitForExit(pid, options.timeout, &pipes, &result);

  // The child has exited but is not reaped, so its group id is still its own: kill whatever
  // it left running in the group (see the header), then read what is left in the pipes.
  ::kill(-pid, SIGKILL);
  const Clock::time_point drain_until = Clock::now() + kDrainGrace;
  while (pipes.open()) {
    int wait_ms = MillisUntil(drain_until);
    pollfd polled[2];
    pipes.Prepare(polled);
    int n = ::poll(polled, 2, wait_ms);
    if (n > 0) pipes.ReadReady(polled);
    if (n == 0 || (n < 0 && errno != EINTR) || wait_ms == 0) break;
  }

  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = DecodeWait(status);
  return result;
}

Result<SubprocessResult> RunShell(const std::string& command, const SubprocessOptions& options) {
  return RunSubprocess({"/bin/sh", "-c", command}, options);
}

}  // namespace hotsnap
