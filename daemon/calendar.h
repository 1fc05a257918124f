// Calendar events in systemd's syntax (systemd.time(7), "CALENDAR EVENTS"): "daily",
// "Mon..Fri 02:00", "*-*-* 00/6:00", "Sat,Sun 03:30:00 UTC", ...
//
// Parse() accepts what systemd 252's `systemd-analyze calendar` accepts (the tests compare
// against it) and rejects the rest with a message naming the offending part. Next() gives
// the first elapse strictly after a time, as systemd does, in the event's time zone (local,
// or UTC when the expression ends in UTC).
#ifndef HOTSNAP_DAEMON_CALENDAR_H_
#define HOTSNAP_DAEMON_CALENDAR_H_

#include <cstdint>
#include <optional>
#include <string>

#include "base/status.h"

namespace hotsnap {

class CalendarEvent {
 public:
  static Result<CalendarEvent> Parse(const std::string& expression);  // kUsage on error
  // The first elapse after `after_us` (microseconds since the epoch); none if it never
  // elapses again (e.g. a year in the past).
  std::optional<int64_t> Next(int64_t after_us) const;
  // The normalized form, as `systemd-analyze calendar` prints it ("*-*-* 00:00:00").
  std::string Normalized() const;
  // ... representation private to daemon/calendar.cc
};

}  // namespace hotsnap

#endif  // HOTSNAP_DAEMON_CALENDAR_H_
