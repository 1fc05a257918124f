#include "agent/events.h"

#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <mutex>

namespace hotsnap {
namespace {

using Clock = std::chrono::steady_clock;

struct EventState {
  std::mutex mutex;
  int fd = -1;
  std::string command;
  Clock::time_point start;
  std::string phase;
  Clock::time_point phase_start;
  nlohmann::ordered_json phase_seconds = nlohmann::ordered_json::object();
};

EventState& State() {
  static EventState state;
  return state;
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Milliseconds are plenty for scripts, and keep the lines short.
double Round3(double v) { return static_cast<double>(static_cast<int64_t>(v * 1000 + 0.5)) / 1000; }

std::string UtcNow() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char buf[40];
  size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof(buf) - n, ".%03ldZ", ts.tv_nsec / 1000000);
  return buf;
}

nlohmann::ordered_json Header(EventState& s, const char* kind) {
  nlohmann::ordered_json j;
  j["event"] = kind;
  j["command"] = s.command;
  j["time"] = UtcNow();
  j["elapsed_s"] = Round3(Seconds(Clock::now() - s.start));
  return j;
}

// Caller holds the mutex. One write per line: concurrent writers to the same pipe never
// split a line shorter than PIPE_BUF, and ours are written whole or not at all.
void WriteLine(EventState& s, const nlohmann::ordered_json& j) {
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(s.fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the reader went away: events are advisory, the job goes on
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void ClosePhase(EventState& s, Clock::time_point now) {
  if (s.phase.empty()) return;
  double prior = s.phase_seconds.contains(s.phase) ? s.phase_seconds[s.phase].get<double>() : 0.0;
  s.phase_seconds[s.phase] = Round3(prior + Seconds(now - s.phase_start));
}

}  // namespace

void EnableEvents(int fd, const std::string& command) {
  EventState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  s.fd = fd;
  s.command = command;
  s.start = Clock::now();
  s.phase.clear();
  s.phase_seconds = nlohmann::ordered_json::object();
  auto j = Header(s, "start");
  j["version"] = HOTSNAP_VERSION;
  j["pid"] = static_cast<int64_t>(::getpid());
  WriteLine(s, j);
}

bool EventsEnabled() {
  EventState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.fd >= 0;
}

bool EventsOnStderr() {
  EventState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.fd == STDERR_FILENO;
}

void EmitPhase(const std::string& phase) {
  EventState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.fd < 0) return;
  auto now = Clock::now();
  ClosePhase(s, now);
  s.phase = phase;
  s.phase_start = now;
  auto j = Header(s, "phase");
  j["phase"] = phase;
  WriteLine(s, j);
}

void EmitProgress(const std::string& phase, uint64_t done_bytes, uint64_t total_bytes,
                  uint64_t output_bytes, double rate_bytes_per_s, double eta_s) {
  EventState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.fd < 0) return;
  auto j = Header(s, "progress");
  j["phase"] = s.phase.empty() ? phase : s.phase;
  j["done_bytes"] = done_bytes;
  j["total_bytes"] = total_bytes;
  j["percent"] = total_bytes ? Round3(100.0 * done_bytes / total_bytes) : 100.0;
  j["output_bytes"] = output_bytes;
  j["rate_bytes_per_s"] = Round3(rate_bytes_per_s);
  j["ratio"] = output_bytes ? Round3(static_cast<double>(done_bytes) / output_bytes) : 0.0;
  j["eta_s"] = Round3(eta_s);
  WriteLine(s, j);
}

void EmitFreezeWindow(const std::string& mountpoint, double frozen_s) {
  EventState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.fd < 0) return;
  auto j = Header(s, "freeze");
  j["mountpoint"] = mountpoint;
  j["frozen_s"] = Round3(frozen_s);
  WriteLine(s, j);
}

void EmitSnapshotFill(const std::string& snapshot, uint64_t used_bytes, uint64_t size_bytes) {
  EventState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.fd < 0) return;
  auto j = Header(s, "snapshot_fill");
  j["snapshot"] = snapshot;
  j["used_bytes"] = used_bytes;
  j["size_bytes"] = size_bytes;
  j["percent"] = size_bytes ? Round3(100.0 * used_bytes / size_bytes) : 0.0;
  WriteLine(s, j);
}

void EmitPlan(const nlohmann::ordered_json& plan) {
  EventState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.fd < 0) return;
  auto j = Header(s, "plan");
  j["plan"] = plan;
  WriteLine(s, j);
}

void EmitResult(nlohmann::ordered_json fields) {
  EventState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.fd < 0) return;
  ClosePhase(s, Clock::now());
  s.phase.clear();
  auto j = Header(s, "result");
  j["ok"] = true;
  for (auto it = fields.begin(); it != fields.end(); ++it) j[it.key()] = it.value();
  j["phase_seconds"] = s.phase_seconds;
  WriteLine(s, j);
}

void EmitError(const Status& status, int exit_code) {
  EventState& s = State();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.fd < 0) return;
  auto j = Header(s, "error");
  j["ok"] = false;
  j["code"] = CodeName(status.code());
  j["exit_code"] = exit_code;
  j["message"] = status.message();
  if (status.err() != 0) j["errno"] = status.err();
  if (!s.phase.empty()) j["phase"] = s.phase;
  WriteLine(s, j);
}

}  // namespace hotsnap
