// Time spans in systemd's syntax (systemd.time(7), "PARSING TIME SPANS"): "15min", "1h 30min",
// "2h30m", "1.5d", "90" (a bare number: seconds). Units: us/usec, ms/msec, s/sec/second(s),
// m/min/minute(s), h/hr/hour(s), d/day(s), w/week(s), M/month(s) (30.44 days), y/year(s)
// (365.25 days), as systemd counts them. Pure functions.
#ifndef HOTSNAP_DAEMON_TIME_SPAN_H_
#define HOTSNAP_DAEMON_TIME_SPAN_H_

#include <chrono>
#include <string>

#include "base/status.h"

namespace hotsnap {

// kUsage naming the text and the bad unit or number otherwise. Negative spans are errors.
Result<std::chrono::microseconds> ParseTimeSpan(const std::string& text);

// "1h 30min", "15min", "0": the shortest systemd-style spelling of whole seconds.
std::string FormatTimeSpan(std::chrono::seconds span);

}  // namespace hotsnap

#endif  // HOTSNAP_DAEMON_TIME_SPAN_H_
