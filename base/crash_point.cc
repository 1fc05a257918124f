#include "base/crash_point.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

namespace hotsnap {
namespace {

struct CrashSpec {
  std::string name;  // empty: inert
  long hit = 1;      // crash at this call of CrashPoint(name)
};

const CrashSpec& Spec() {
  static const CrashSpec spec = [] {
    CrashSpec s;
    const char* env = std::getenv("HOTSNAP_CRASH_AT");
    if (env == nullptr || *env == '\0') return s;
    s.name = env;
    size_t colon = s.name.find(':');
    if (colon != std::string::npos) {
      s.hit = std::max(1L, std::strtol(s.name.c_str() + colon + 1, nullptr, 10));
      s.name.resize(colon);
    }
    return s;
  }();
  return spec;
}

std::atomic<long> hits{0};

}  // namespace

void CrashPoint(const char* name) {
  const CrashSpec& spec = Spec();
  if (spec.name.empty() || spec.name != name) return;
  if (hits.fetch_add(1) + 1 < spec.hit) return;
  // Say where, so a test log shows the crash was deliberate.
  const char prefix[] = "hotsnap: HOTSNAP_CRASH_AT: killing myself at ";
  ssize_t ignored = ::write(STDERR_FILENO, prefix, sizeof(prefix) - 1);
  ignored = ::write(STDERR_FILENO, name, std::strlen(name));
  ignored = ::write(STDERR_FILENO, "\n", 1);
  (void)ignored;
  ::kill(::getpid(), SIGKILL);
  ::pause();
}

}  // namespace hotsnap
