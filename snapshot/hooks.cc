#include "snapshot/hooks.h"

#include "base/log.h"
#include "base/subprocess.h"

namespace hotsnap {

Status RunHook(const std::string& phase, const std::string& command, const HookSet& hooks,
               const std::string& source, const std::string& mount_point) {
  if (command.empty()) return Status::Ok();
  SubprocessOptions options;
  options.timeout = hooks.timeout;
  options.extra_env = {"HOTSNAP_PHASE=" + phase, "HOTSNAP_SOURCE=" + source,
                       "HOTSNAP_MOUNTPOINT=" + mount_point};
  auto r = RunShell(command, options);
  if (!r.ok()) return r.status().Wrap(phase + " hook");
  for (const std::string* stream : {&r->out, &r->err}) {
    if (!stream->empty()) Notice(phase + " hook: " + *stream);
  }
  if (r->timed_out) {
    return Status(Code::kSource, phase + " hook '" + command + "' did not finish within " +
                                     std::to_string(hooks.timeout.count() / 1000) + " s (--hook-timeout)");
  }
  if (r->exit_code != 0) {
    return Status(Code::kSource, phase + " hook '" + command + "' failed with exit code " +
                                     std::to_string(r->exit_code) +
                                     (r->err.empty() ? "" : ": " + r->err));
  }
  return Status::Ok();
}

}  // namespace hotsnap
