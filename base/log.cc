#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <mutex>

namespace hotsnap {
namespace {

std::atomic<bool> g_quiet{false};
std::mutex g_mutex;
bool g_buffering = false;
std::string g_buffer;

void WriteOut(const std::string& out) {
  const char* p = out.data();
  size_t left = out.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) return;  // stderr gone: nothing better to do
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void Emit(const std::string& line) {
  std::string out = "hotsnap: " + line + "\n";
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_buffering) {
    if (g_buffer.size() < (1u << 20)) g_buffer += out;
    return;
  }
  WriteOut(out);
}

}  // namespace

void SetQuiet(bool quiet) { g_quiet = quiet; }

void SetLogBuffering(bool buffering) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_buffering = buffering;
  if (!buffering && !g_buffer.empty()) {
    WriteOut(g_buffer);
    g_buffer.clear();
  }
}
void Notice(const std::string& line) {
  if (!g_quiet) Emit(line);
}
void Error(const std::string& line) { Emit("error: " + line); }

}  // namespace hotsnap
