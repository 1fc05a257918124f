#include "agent/throttle.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>

namespace hotsnap {
namespace {

// From <linux/ioprio.h>, which older kernel headers lack.
constexpr int kIoprioWhoProcess = 1;
constexpr int kIoprioClassShift = 13;
constexpr int kIoprioClassBestEffort = 2;
constexpr int kIoprioClassIdle = 3;
constexpr int kBestEffortLowest = 7;  // best-effort levels run 0 (highest) to 7

}  // namespace

RateLimiter::RateLimiter(uint64_t bytes_per_s, uint64_t burst_bytes)
    : rate_(static_cast<double>(bytes_per_s)),
      burst_(static_cast<double>(burst_bytes)),
      tokens_(0),  // no head start: the first reads are paced too
      last_(Clock::now()) {}

void RateLimiter::Refill(Clock::time_point now) {
  double secs = std::chrono::duration<double>(now - last_).count();
  if (secs > 0) {
    tokens_ = std::min(burst_, tokens_ + secs * rate_);
    last_ = now;
  }
}

bool RateLimiter::Ready(Clock::time_point now) {
  if (!enabled()) return true;
  Refill(now);
  return tokens_ >= 0;
}

void RateLimiter::Charge(uint64_t bytes, Clock::time_point now) {
  if (!enabled()) return;
  Refill(now);
  tokens_ -= static_cast<double>(bytes);
}

int RateLimiter::MillisecondsUntilReady(Clock::time_point now) {
  if (Ready(now)) return 0;
  return std::max(1, static_cast<int>(std::ceil(-tokens_ / rate_ * 1000)));
}

Result<IoPriority> ParseIoPriority(const std::string& text) {
  if (text == "idle") return IoPriority::kIdle;
  if (text == "best-effort") return IoPriority::kBestEffort;
  return Status(Code::kUsage, "--io-priority must be idle or best-effort, not '" + text + "'");
}

Status SetProcessPriority(IoPriority io, std::optional<int> nice) {
  if (nice) {
    if (*nice < -20 || *nice > 19) return Status(Code::kUsage, "--nice must be between -20 and 19");
    if (::setpriority(PRIO_PROCESS, 0, *nice) != 0) {
      return Status::FromErrno(Code::kUsage, errno, "setting nice value " + std::to_string(*nice));
    }
  }
  if (io != IoPriority::kUnchanged) {
    // Idle: only disk time nobody else wants. Best-effort: the default class at its lowest level.
    int value = io == IoPriority::kIdle ? kIoprioClassIdle << kIoprioClassShift
                                        : (kIoprioClassBestEffort << kIoprioClassShift) | kBestEffortLowest;
    if (::syscall(SYS_ioprio_set, kIoprioWhoProcess, 0, value) != 0) {
      return Status::FromErrno(Code::kUnsupported, errno, "setting the I/O priority (ioprio_set)");
    }
  }
  return Status::Ok();
}

}  // namespace hotsnap
