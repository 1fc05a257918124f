// Subprocess: run a command (argv, never through a local shell unless the caller asks for
// /bin/sh -c) with a timeout, capturing stdout and stderr.
//
// The child runs in its own process group so a timeout kills it and everything it
// started (SIGTERM, then SIGKILL after a grace period). The child's stdin is /dev/null.
#ifndef HOTSNAP_BASE_SUBPROCESS_H_
#define HOTSNAP_BASE_SUBPROCESS_H_

#include <chrono>
#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

struct SubprocessOptions {
  std::chrono::milliseconds timeout{60000};
  std::vector<std::string> extra_env;  // "NAME=value" entries added to the environment
  size_t max_output_bytes = 16u << 20;  // per stream; the rest is dropped
};

struct SubprocessResult {
  int exit_code = -1;   // exit status, or 128+signal when killed by a signal
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs argv[0] (looked up in PATH) with argv. Fails (kInternal) only if the command could
// not be started at all; a non-zero exit is reported in the result, not as an error.
Result<SubprocessResult> RunSubprocess(const std::vector<std::string>& argv,
                                       const SubprocessOptions& options = {});

// "/bin/sh -c command" with the options above; for user-supplied hook commands.
Result<SubprocessResult> RunShell(const std::string& command, const SubprocessOptions& options = {});

}  // namespace hotsnap

#endif  // HOTSNAP_BASE_SUBPROCESS_H_
