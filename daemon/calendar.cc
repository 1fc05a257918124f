// Normalized forms and elapses of calendar events: a port of systemd 252's
// calendar_spec_to_string and find_next (src/shared/calendarspec.c). Where this looks odd (a
// "~" range swapped, the 1000-step search limit, the one unit reset after a normalization),
// it mirrors systemd so that `systemd-analyze calendar` and the agent agree on every elapse.
// Parsing is in daemon/calendar_parse.cc.
#include "daemon/calendar.h"

#include <cstdio>
#include <ctime>

namespace hotsnap {
namespace {

constexpr int kUsecPerSec = 1000000;
constexpr int kMaxYear = CalendarEvent::kMaxYear;
constexpr int kAllWeekdays = 127;
// systemd gives up after this many steps of its search ("Infinite loop in calendar
// calculation") and reports that the event never elapses; so do we.
constexpr int kMaxSearchSteps = 1000;

time_t MakeTime(struct tm* tm, bool utc) { return utc ? timegm(tm) : mktime(tm); }
void BreakTime(time_t t, struct tm* tm, bool utc) {
  if (utc) {
    gmtime_r(&t, tm);
  } else {
    localtime_r(&t, tm);
  }
}

}  // namespace

namespace {

void FormatChain(std::string* out, int width, const CalendarEvent::Chain& chain, bool usec) {
  const int unit = usec ? kUsecPerSec : 1;
  if (chain.empty() || (usec && chain.size() == 1 && chain[0].start == 0 &&
                        chain[0].repeat == kUsecPerSec && chain[0].stop < 0)) {
    out->push_back('*');
    return;
  }
  char buffer[64];
  bool first = true;
  for (const CalendarEvent::Component& c : chain) {
    if (!first) out->push_back(',');
    first = false;
    snprintf(buffer, sizeof buffer, "%0*d", width, c.start / unit);
    *out += buffer;
    if (usec && c.start % unit > 0) {
      snprintf(buffer, sizeof buffer, ".%06d", c.start % unit);
      *out += buffer;
    }
    if (c.stop > 0) {
      snprintf(buffer, sizeof buffer, "..%0*d", width, c.stop / unit);
      *out += buffer;
    }
    if (usec && c.stop % unit > 0) {
      snprintf(buffer, sizeof buffer, ".%06d", c.stop % unit);
      *out += buffer;
    }
    if (c.repeat > 0 && !(c.stop > 0 && c.repeat == unit)) {
      snprintf(buffer, sizeof buffer, "/%d", c.repeat / unit);
      *out += buffer;
    }
    if (usec && c.repeat % unit > 0) {
      snprintf(buffer, sizeof buffer, ".%06d", c.repeat % unit);
      *out += buffer;
    }
  }
}

void FormatWeekdays(std::string* out, int bits) {
  static const char* const kDays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  int l = -1;
  int x = 0;
  bool need_comma = false;
  for (; x < 7; ++x) {
    if (bits & (1 << x)) {
      if (l < 0) {
        if (need_comma) out->push_back(',');
        need_comma = true;
        *out += kDays[x];
        l = x;
      }
    } else if (l >= 0) {
      if (x > l + 1) {
        *out += x > l + 2 ? ".." : ",";
        *out += kDays[x - 1];
      }
      l = -1;
    }
  }
  if (l >= 0 && x > l + 1) {
    *out += x > l + 2 ? ".." : ",";
    *out += kDays[x - 1];
  }
}

}  // namespace

std::string CalendarEvent::Normalized() const {
  std::string out;
  if (weekdays_ > 0 && weekdays_ <= kAllWeekdays) {
    FormatWeekdays(&out, weekdays_);
    out.push_back(' ');
  }
  FormatChain(&out, 4, year_, false);
  out.push_back('-');
  FormatChain(&out, 2, month_, false);
  out.push_back(end_of_month_ ? '~' : '-');
  FormatChain(&out, 2, day_, false);
  out.push_back(' ');
  FormatChain(&out, 2, hour_, false);
  out.push_back(':');
  FormatChain(&out, 2, minute_, false);
  out.push_back(':');
  FormatChain(&out, 2, microsecond_, true);
  if (utc_) {
    out += " UTC";
  } else if (dst_ == 0 || dst_ == 1) {
    tzset();
    if (tzname[dst_] != nullptr && tzname[dst_][0] != '\0') {
      out.push_back(' ');
      out += tzname[dst_];
    }
  }
  return out;
}

namespace {

// systemd's find_end_of_month: the day that is `day` days from the end of tm's month
// (1: the last day), or -1.
int EndOfMonth(const struct tm& tm, bool utc, int day) {
  struct tm t = tm;
  t.tm_mon++;
  t.tm_mday = 1 - day;
  if (MakeTime(&t, utc) < 0 || t.tm_mon != tm.tm_mon) return -1;
  return t.tm_mday;
}

// systemd's find_matching_component: the earliest value >= *value that `chain` allows.
// Returns 1 if *value changed, 0 if it matched, -1 if nothing matches.
int FindMatching(const CalendarEvent::Chain& chain, bool end_of_month, bool utc,
                 const struct tm& tm, int* value) {
  if (chain.empty()) return 0;
  int best = -1;
  bool found = false;
  for (const CalendarEvent::Component& c : chain) {
    int start = c.start;
    int stop = c.stop;
    if (end_of_month) {
      start = EndOfMonth(tm, utc, c.start);
      stop = EndOfMonth(tm, utc, c.stop);
      if (stop > 0) std::swap(start, stop);
    }
    if (start >= *value) {
      if (!found || start < best) {
        best = start;
        found = true;
      }
    } else if (c.repeat > 0) {
      int k = start + c.repeat * ((*value - start + c.repeat - 1) / c.repeat);
      if ((!found || k < best) && (stop < 0 || k <= stop)) {
        best = k;
        found = true;
      }
    }
  }
  if (!found) return -1;
  int changed = *value != best;
  *value = best;
  return changed;
}

// systemd 252's tm_within_bounds: 1 if `tm` is a valid time as it is; 0 if mktime had to
// normalize it forward (day 36 of a month), and then `tm` becomes the normalized time with
// the unit below the first changed one reset, from which the search goes on; -1 past the
// last year, on a failure, or when normalizing went backward. (Only the one unit is reset,
// as in systemd: "*-*-1/7" after Dec 29 finds Jan 8, not Jan 1. We follow it to the letter.)
int WithinBounds(struct tm* tm, bool utc) {
  if (tm->tm_year + 1900 > kMaxYear) return -1;
  struct tm t = *tm;
  if (MakeTime(&t, utc) < 0) return -1;
  auto compare = [](int a, int b) { return (a > b) - (a < b); };
  int cmp;
  if ((cmp = compare(t.tm_year, tm->tm_year)) != 0) {
    t.tm_mon = 0;
  } else if ((cmp = compare(t.tm_mon, tm->tm_mon)) != 0) {
    t.tm_mday = 1;
  } else if ((cmp = compare(t.tm_mday, tm->tm_mday)) != 0) {
    t.tm_hour = 0;
  } else if ((cmp = compare(t.tm_hour, tm->tm_hour)) != 0) {
    t.tm_min = 0;
  } else if ((cmp = compare(t.tm_min, tm->tm_min)) != 0) {
    t.tm_sec = 0;
  } else {
    cmp = compare(t.tm_sec, tm->tm_sec);
  }
  if (cmp < 0) return -1;  // refuse to go backward
  if (cmp > 0) *tm = t;
  return cmp == 0 ? 1 : 0;
}

bool MatchesWeekday(int bits, const struct tm& tm, bool utc) {
  if (bits < 0 || bits >= kAllWeekdays) return true;
  struct tm t = tm;
  if (MakeTime(&t, utc) < 0) return false;
  int k = t.tm_wday == 0 ? 6 : t.tm_wday - 1;
  return (bits & (1 << k)) != 0;
}

}  // namespace

std::optional<int64_t> CalendarEvent::Next(int64_t after_us) const {
  if (after_us < -1) after_us = -1;
  int64_t usec = after_us + 1;
  time_t t = static_cast<time_t>(usec / kUsecPerSec);
  struct tm c;
  BreakTime(t, &c, utc_);
  int tm_usec = static_cast<int>(usec % kUsecPerSec);
  auto reset_time = [&c, &tm_usec] { c.tm_hour = c.tm_min = c.tm_sec = tm_usec = 0; };

  for (int step = 0; step < kMaxSearchSteps; ++step) {
    MakeTime(&c, utc_);  // normalize the current date
    c.tm_isdst = dst_;

    c.tm_year += 1900;
    int r = FindMatching(year_, false, utc_, c, &c.tm_year);
    c.tm_year -= 1900;
    if (r > 0) {
      c.tm_mon = 0;
      c.tm_mday = 1;
      reset_time();
    }
    if (r < 0 || WithinBounds(&c, utc_) <= 0) return std::nullopt;

    c.tm_mon += 1;
    r = FindMatching(month_, false, utc_, c, &c.tm_mon);
    c.tm_mon -= 1;
    if (r > 0) {
      c.tm_mday = 1;
      reset_time();
    }
    if (r < 0 || (r = WithinBounds(&c, utc_)) < 0) {
      c.tm_year++;
      c.tm_mon = 0;
      c.tm_mday = 1;
      reset_time();
      continue;
    }
    if (r == 0) continue;

    r = FindMatching(day_, end_of_month_, utc_, c, &c.tm_mday);
    if (r > 0) reset_time();
    if (r < 0 || (r = WithinBounds(&c, utc_)) < 0) {
      c.tm_mon++;
      c.tm_mday = 1;
      reset_time();
      continue;
    }
    if (r == 0) continue;

    if (!MatchesWeekday(weekdays_, c, utc_)) {
      c.tm_mday++;
      reset_time();
      continue;
    }

    r = FindMatching(hour_, false, utc_, c, &c.tm_hour);
    if (r > 0) c.tm_min = c.tm_sec = tm_usec = 0;
    if (r < 0 || (r = WithinBounds(&c, utc_)) < 0) {
      c.tm_mday++;
      reset_time();
      continue;
    }
    if (r == 0) continue;  // the hour may not exist (a daylight saving change): retry from there

    r = FindMatching(minute_, false, utc_, c, &c.tm_min);
    if (r > 0) c.tm_sec = tm_usec = 0;
    if (r < 0 || (r = WithinBounds(&c, utc_)) < 0) {
      c.tm_hour++;
      c.tm_min = c.tm_sec = tm_usec = 0;
      continue;
    }
    if (r == 0) continue;

    c.tm_sec = c.tm_sec * kUsecPerSec + tm_usec;
    r = FindMatching(microsecond_, false, utc_, c, &c.tm_sec);
    tm_usec = c.tm_sec % kUsecPerSec;
    c.tm_sec /= kUsecPerSec;
    if (r < 0 || (r = WithinBounds(&c, utc_)) < 0) {
      c.tm_min++;
      c.tm_sec = tm_usec = 0;
      continue;
    }
    if (r == 0) continue;

    time_t elapse = MakeTime(&c, utc_);
    if (elapse < 0) return std::nullopt;
    // A zone pinned to daylight saving ("hourly CEST") can land on the ambiguous hour of the
    // autumn change and come back to `after_us` itself: glibc's mktime resolves a tm_isdst
    // that contradicts the zone from a guess cached by earlier calls, so systemd-analyze (which
    // goes on to the next hour) and this process can differ. An elapse that is not in the
    // future would make a caller run the job in a loop: we say "never" instead. Plain local
    // time and UTC never get here.
    if (static_cast<int64_t>(elapse) * kUsecPerSec + tm_usec <= after_us) return std::nullopt;
    return static_cast<int64_t>(elapse) * kUsecPerSec + tm_usec;
  }
  return std::nullopt;
}

}  // namespace hotsnap
