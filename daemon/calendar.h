// Calendar events in systemd's syntax (systemd.time(7), "CALENDAR EVENTS"): "daily",
// "Mon..Fri 02:00", "*-*-* 00/6:00", "Sat,Sun 03:30:00 UTC", ...
//
// Parse() accepts what systemd 252's `systemd-analyze calendar` accepts (the tests compare
// against it) and rejects the rest with a message naming the offending part. Next() gives
// the first elapse strictly after a time, as systemd does, in the event's time zone (local,
// or UTC when the expression ends in UTC).
//
// Supported: weekday lists and ranges ("Mon,Wed..Fri"), [year-]month-day with `*`, lists,
// ranges `..` and repetitions `/`, the last-days syntax `~` ("*-02~01": the last day of
// February), hour:minute[:second] with lists and repetitions and fractional seconds, the
// shorthands (minutely, hourly, daily, weekly, monthly, yearly/annually, quarterly,
// semiannually/biannually), "@SECONDS" (an epoch time, in UTC), and a trailing time zone of
// "UTC" or the local zone's own abbreviations (tzname[0], tzname[1], e.g. "CET"/"CEST" under
// TZ=Europe/Berlin, which pins daylight saving off/on as systemd does).
// Pinning daylight saving with an abbreviation is systemd's own trap: "daily CET" never
// elapses while CEST is in force (systemd-analyze says "never" too), and "hourly CEST" stops at
// the autumn change, where glibc's mktime resolves the contradiction from a cached guess
// that depends on earlier calls; Next() then says "never" rather than repeat an elapse.
// Not supported, by design: other named zones ("Mon 02:00 Asia/Tokyo"). systemd computes
// those by switching the process's TZ, which is not safe in a threaded daemon; Parse says so.
//
// Local time is the process's TZ (tzset()); Next() is a pure computation through
// mktime/localtime_r, safe to call from several threads once TZ is fixed. Value type.
#ifndef HOTSNAP_DAEMON_CALENDAR_H_
#define HOTSNAP_DAEMON_CALENDAR_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

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
  bool utc() const { return utc_; }

  // Years systemd accepts (two-digit years are 1970..2069).
  static constexpr int kMinYear = 1970;
  static constexpr int kMaxYear = 2199;

  // One element of a field's list: `start`, or `start..stop` (stop -1: none), every
  // `repeat` (0: once). Seconds are kept in microseconds, like systemd.
  struct Component {
    int start = 0;
    int stop = -1;
    int repeat = 0;
  };
  using Chain = std::vector<Component>;  // empty: `*` (any value)

 private:
  int weekdays_ = -1;  // bit 0 = Monday; -1: any day
  bool end_of_month_ = false;
  bool utc_ = false;
  int dst_ = -1;  // -1: local time as it is; 0/1: the local zone's standard/daylight name given
  Chain year_, month_, day_, hour_, minute_, microsecond_;

  friend class CalendarParser;
};

// The check daemon/config.h's ScheduleValidator wants: Parse's message, or "" when valid.
std::string CalendarEventError(const std::string& expression);

}  // namespace hotsnap

#endif  // HOTSNAP_DAEMON_CALENDAR_H_
