// Throttling: keep a backup from starving the server it runs on.
//
// RateLimiter paces the backup pipeline's reads (--rate-limit); SetProcessPriority lowers
// hotsnap's CPU (--nice) and I/O (--io-priority) priority before any worker thread starts,
// so that the threads inherit it.
#ifndef HOTSNAP_AGENT_THROTTLE_H_
#define HOTSNAP_AGENT_THROTTLE_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "base/status.h"

namespace hotsnap {

// A token bucket over bytes. Not thread-safe (the pipeline's own thread uses it).
//
// Reads are charged when they are submitted; a read may start while the bucket holds at
// least zero tokens, and takes it into debt by its size, so the long-run rate is
// `bytes_per_s`. The bucket starts empty and saves at most `burst_bytes` while idle, so no
// more than `burst_bytes` plus one read ever goes out ahead of the rate. Disabled when
// bytes_per_s is 0.
class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  RateLimiter(uint64_t bytes_per_s, uint64_t burst_bytes);
  bool enabled() const { return rate_ > 0; }
  // True when a read may be submitted now.
  bool Ready(Clock::time_point now);
  // Charges `bytes` for a submitted read.
  void Charge(uint64_t bytes, Clock::time_point now);
  // Milliseconds until Ready() (at least 1 when not ready, 0 when ready).
  int MillisecondsUntilReady(Clock::time_point now);

 private:
  void Refill(Clock::time_point now);
  double rate_;    // bytes per second
  double burst_;   // bytes
  double tokens_;  // may go negative (debt)
  Clock::time_point last_;
};

enum class IoPriority { kUnchanged, kBestEffort, kIdle };

// Parses "idle" or "best-effort" (kUsage otherwise).
Result<IoPriority> ParseIoPriority(const std::string& text);

// Applies the I/O priority class (ioprio_set; honoured by the bfq and cfq schedulers) and
// the nice value (setpriority; -20..19) to the calling thread, which must be the only
// thread so far. nullopt leaves the nice value as it is.
Status SetProcessPriority(IoPriority io, std::optional<int> nice);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_THROTTLE_H_
