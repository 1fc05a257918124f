#include "snapshot/hooks.h"

#include <cstdio>

#include "base/log.h"
#include "base/subprocess.h"

namespace hotsnap {
namespace {

// "1", "2.5": seconds without trailing zeros.
std::string FormatSeconds(std::chrono::milliseconds ms) {
  std::string s = std::to_string(ms.count() / 1000);
  if (int64_t frac = ms.count() % 1000; frac != 0) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), ".%03lld", static_cast<long long>(frac));
    std::string f = buf;
    while (f.back() == '0') f.pop_back();
    s += f;
  }
  return s;
}

}  // namespace

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
    return Status(Code::kSource, phase + " hook '" + command + "' timed out after " +
                                     FormatSeconds(hooks.timeout) +
                                     " s (--hook-timeout); its process group was killed");
  }
  if (r->exit_code != 0) {
    return Status(Code::kSource, phase + " hook '" + command + "' failed with exit code " +
                                     std::to_string(r->exit_code) +
                                     (r->err.empty() ? "" : ": " + r->err));
  }
  return Status::Ok();
}

std::string HookMountPoints(const std::vector<std::string>& mount_points) {
  std::string out;
  for (const std::string& m : mount_points) out += (out.empty() ? "" : "\n") + m;
  return out;
}

}  // namespace hotsnap
