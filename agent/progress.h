// ProgressLine: a one-line progress display on stderr for long work.
//
// Shown only when enabled (the CLI enables it when stderr is a TTY, or with --progress),
// redrawn at most 4 times a second: phase, bytes done of total, rate, ratio, ETA.
#ifndef HOTSNAP_AGENT_PROGRESS_H_
#define HOTSNAP_AGENT_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <string>

namespace hotsnap {

class ProgressLine {
 public:
  ProgressLine(std::string phase, uint64_t total_bytes, bool enabled);
  ~ProgressLine();
  void Update(uint64_t done_bytes, uint64_t output_bytes);
  void Done();  // ends the line

 private:
  std::string phase_;
  uint64_t total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
};

std::string HumanBytes(uint64_t bytes);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_PROGRESS_H_
