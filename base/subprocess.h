// Subprocess: run a command (argv, never through a local shell unless the caller asks for
// /bin/sh -c) with a timeout, capturing stdout and stderr.
//
// Contract:
//   - The child's stdin is /dev/null; stdout and stderr are pipes read into the result (at
//     most max_output_bytes each; the rest is read and dropped).
//   - The child runs in its own process group (its pgid is its pid).
//   - The timeout is enforced on the process, whatever it does with its descriptors (closing
//     or redirecting stdout/stderr does not escape it): it is measured on the monotonic clock
//     from the start, and waited for with a pidfd (pidfd_open(2)) and poll(2), not on the
//     pipes. At the timeout the whole group gets SIGTERM, and SIGKILL kTermGrace later if the
//     child is still there; timed_out is then set.
//   - Background children: when the child exits (by itself or after the timeout's signals),
//     every process still in its process group is killed with SIGKILL at once. A command that
//     must leave a process running has to start it in a session of its own (setsid) with its
//     output redirected; such a process is neither waited for nor killed. After the child
//     exits its pipes are read until end of file, but for at most kDrainGrace: output that a
//     process outside the group writes later is not captured and does not keep us waiting.
//   - Returns once the child has been reaped.
// Thread-safety: any number of concurrent calls; each waits only for its own child.
#ifndef HOTSNAP_BASE_SUBPROCESS_H_
#define HOTSNAP_BASE_SUBPROCESS_H_

#include <chrono>
#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

// After SIGTERM at the timeout, how long the group has before SIGKILL.
inline constexpr std::chrono::milliseconds kTermGrace{2000};
// After the child exits, how long its pipes are still read while someone holds them open.
inline constexpr std::chrono::milliseconds kDrainGrace{250};

struct SubprocessOptions {
  std::chrono::milliseconds timeout{60000};
  std::vector<std::string> extra_env;   // "NAME=value" entries added to the environment
  size_t max_output_bytes = 16u << 20;  // per stream; the rest is dropped
};

struct SubprocessResult {
  int exit_code = -1;  // exit status, or 128+signal when killed by a signal
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH) with argv. Fails (kInternal) only if the command could
// not be started at all; a non-zero exit is reported in the result, not as an error.
Result<SubprocessResult> RunSubprocess(const std::vector<std::string>& argv,
                                       const SubprocessOptions& options = {});

// "/bin/sh -c command" with the options above; for user-supplied hook commands.
Result<SubprocessResult> RunShell(const std::string& command,
                                  const SubprocessOptions& options = {});

}  // namespace hotsnap

#endif  // HOTSNAP_BASE_SUBPROCESS_H_
