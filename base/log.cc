#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <mutex>

namespace hotsnap {
namespace {

std::atomic<bool> g_quiet{false};
std::mutex g_mutex;

void Emit(const std::string& line) {
  std::string out = "hotsnap: " + line + "\n";
  std::lock_guard<std::mutex> lock(g_mutex);
  const char* p = out.data();
  size_t left = out.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;  // stderr gone: nothing better to do
    p += n;
    left -= static_cast<size_t>(n);
  }
}

}  // namespace

void SetQuiet(bool quiet) { g_quiet = quiet; }
void Notice(const std::string& line) {
  if (!g_quiet) Emit(line);
}
void Error(const std::string& line) { Emit("error: " + line); }

}  // namespace hotsnap
