#include "agent/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "agent/events.h"

namespace hotsnap {

std::string HumanBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

ProgressLine::ProgressLine(std::string phase, uint64_t total_bytes, bool enabled)
    : phase_(std::move(phase)),
      total_(total_bytes),
      enabled_(enabled),
      start_(std::chrono::steady_clock::now()),
      last_(start_),
      last_event_(start_) {}

ProgressLine::~ProgressLine() { Done(); }

void ProgressLine::Update(uint64_t done, uint64_t output_bytes) {
  if (finished_) return;
  auto now = std::chrono::steady_clock::now();
  done_ = done;
  output_ = output_bytes;
  if (now - last_event_ >= std::chrono::seconds(1) && EventsEnabled()) {
    last_event_ = now;
    double secs = std::chrono::duration<double>(now - start_).count();
    double rate = secs > 0 ? done / secs : 0;
    EmitProgress(phase_, done, total_, output_bytes, rate,
                 rate > 0 && total_ > done ? (total_ - done) / rate : 0);
  }
  if (!enabled_) return;
  // At most 4 redraws a second; reaching the total is drawn at once, but only once.
  const bool reached_total = done >= total_ && drawn_done_ < total_;
  if (drawn_ && now - last_ < std::chrono::milliseconds(250) && !reached_total) return;
  last_ = now;
  drawn_done_ = done;
  double secs = std::chrono::duration<double>(now - start_).count();
  double rate = secs > 0 ? done / secs : 0;
  double ratio = output_bytes > 0 ? static_cast<double>(done) / output_bytes : 0;
  double eta = rate > 0 ? (total_ - done) / rate : 0;
  char line[200];
  std::snprintf(line, sizeof(line), "\r%s: %s of %s (%.0f%%), %s/s, ratio %.2f, ETA %.0fs   ",
                phase_.c_str(), HumanBytes(done).c_str(), HumanBytes(total_).c_str(),
                total_ ? 100.0 * done / total_ : 100.0, HumanBytes(static_cast<uint64_t>(rate)).c_str(),
                ratio, eta);
  ssize_t n = ::write(STDERR_FILENO, line, std::char_traits<char>::length(line));
  (void)n;
  drawn_ = true;
}

void ProgressLine::Done() {
  if (!finished_ && EventsEnabled()) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    EmitProgress(phase_, done_, total_, output_, secs > 0 ? done_ / secs : 0, 0);
  }
  finished_ = true;
  if (enabled_ && drawn_) {
    ssize_t n = ::write(STDERR_FILENO, "\n", 1);
    (void)n;
  }
  drawn_ = false;
  enabled_ = false;
}

CopyProgress::CopyProgress(uint64_t total_bytes, bool line_enabled)
    : line_("backup", total_bytes, line_enabled), total_(total_bytes) {}

void CopyProgress::AddWork(uint64_t bytes) {
  total_ += bytes;
  line_.SetTotal(total_);
}

void CopyProgress::SetTotal(uint64_t bytes) {
  total_ = bytes;
  line_.SetTotal(total_);
}

void CopyProgress::Advance(uint64_t read_bytes, uint64_t image_bytes) {
  done_ += read_bytes;
  output_ += image_bytes;
  // Reads are widened to sector alignment, so a little more than planned may be read.
  line_.Update(std::min(done_, total_), output_);
}

void CopyProgress::Done() {
  line_.Update(total_, output_);
  line_.Done();
}

}  // namespace hotsnap
