// Parsing calendar events: a port of systemd 252's calendar_spec_from_string
// (src/shared/calendarspec.c), written again with messages that name the offending part.
// Where this looks odd (two-digit years, "-" as a weekday range), it mirrors systemd so that
// `systemd-analyze calendar` and the agent accept the same expressions.
#include <strings.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdio>
#include <ctime>
#include <string_view>
#include <tuple>

#include "daemon/calendar.h"

namespace hotsnap {
namespace {

constexpr int kUsecPerSec = 1000000;
constexpr int kAllWeekdays = 127;

bool EqualNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}
bool StartsWithNoCase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && EqualNoCase(text.substr(0, prefix.size()), prefix);
}
bool EndsWithNoCase(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         EqualNoCase(text.substr(text.size() - suffix.size()), suffix);
}

// Shows the rest of the expression from the failing position, for messages.
std::string Quoted(std::string_view text) {
  if (text.empty()) return "the end";
  return "\"" + std::string(text) + "\"";
}

}  // namespace

class CalendarParser {
 public:
  explicit CalendarParser(std::string expression) : expression_(std::move(expression)) {}

  Result<CalendarEvent> Parse() {
    std::string_view p = expression_;
    if (EndsWithNoCase(p, " UTC")) {
      event_.utc_ = true;
      p.remove_suffix(4);
    } else if (!StripLocalZone(&p)) {
      return Fail(error_);
    }
    if (p.empty()) return Fail("nothing before the time zone");
    if (!ParseShorthand(p)) {
      if (!ParseWeekdays(&p) || !ParseDateAndTime(&p)) return Fail(error_);
      if (!p.empty()) return Fail("unexpected " + Quoted(p));
    }
    Normalize();
    if (!Validate()) return Fail(error_);
    return std::move(event_);
  }

 private:
  using Component = CalendarEvent::Component;
  using Chain = CalendarEvent::Chain;

  Status Fail(const std::string& why) const {
    return Status(Code::kUsage, "invalid calendar event \"" + expression_ + "\": " + why);
  }
  bool Error(std::string why) {
    error_ = std::move(why);
    return false;
  }

  // "... CET": the local zone's abbreviations pin daylight saving (systemd's c->dst). Any
  // other zone name is refused (see the header).
  bool StripLocalZone(std::string_view* p) {
    tzset();
    for (int j = 0; j <= 1; ++j) {
      std::string_view name = tzname[j] != nullptr ? tzname[j] : "";
      if (name.empty() || !EndsWithNoCase(*p, name) || p->size() == name.size()) continue;
      if ((*p)[p->size() - name.size() - 1] != ' ') continue;
      p->remove_suffix(name.size() + 1);
      event_.dst_ = j;
      return true;
    }
    size_t space = p->rfind(' ');
    if (space == std::string_view::npos) return true;
    std::string zone(p->substr(space + 1));
    // systemd's timezone_is_valid(): a name made of letters, digits and "/-_+" that names a
    // zoneinfo file.
    bool zone_like = !zone.empty() && zone.find("..") == std::string::npos && zone[0] != '/' &&
                     std::all_of(zone.begin(), zone.end(), [](unsigned char c) {
                       return std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '+';
                     });
    struct stat st;
    if (zone_like && std::isalpha(static_cast<unsigned char>(zone[0])) &&
        stat(("/usr/share/zoneinfo/" + zone).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      return Error("time zone \"" + zone +
                   "\" is not supported: use UTC or local time (the TZ of the agent)");
    }
    return true;
  }

  static Chain Const(int value) { return Chain{Component{value, -1, 0}}; }

  bool ParseShorthand(std::string_view p) {
    CalendarEvent& c = event_;
    auto midnight = [&c] {
      c.hour_ = Const(0);
      c.minute_ = Const(0);
      c.microsecond_ = Const(0);
    };
    if (EqualNoCase(p, "minutely")) {
      c.microsecond_ = Const(0);
    } else if (EqualNoCase(p, "hourly")) {
      c.minute_ = Const(0);
      c.microsecond_ = Const(0);
    } else if (EqualNoCase(p, "daily")) {
      midnight();
    } else if (EqualNoCase(p, "monthly")) {
      c.day_ = Const(1);
      midnight();
    } else if (EqualNoCase(p, "annually") || EqualNoCase(p, "yearly") ||
               EqualNoCase(p, "anually")) {
      c.month_ = Const(1);
      c.day_ = Const(1);
      midnight();
    } else if (EqualNoCase(p, "weekly")) {
      c.weekdays_ = 1;
      midnight();
    } else if (EqualNoCase(p, "quarterly")) {
      c.month_ = {Component{1, -1, 0}, Component{4, -1, 0}, Component{7, -1, 0},
                  Component{10, -1, 0}};
      c.day_ = Const(1);
      midnight();
    } else if (EqualNoCase(p, "biannually") || EqualNoCase(p, "bi-annually") ||
               EqualNoCase(p, "semiannually") || EqualNoCase(p, "semi-annually")) {
      c.month_ = {Component{1, -1, 0}, Component{7, -1, 0}};
      c.day_ = Const(1);
      midnight();
    } else {
      return false;
    }
    return true;
  }

  static char At(std::string_view p, size_t i) { return i < p.size() ? p[i] : '\0'; }

  bool ParseWeekdays(std::string_view* p) {
    static constexpr struct {
      const char* name;
      int nr;
    } kDays[] = {{"Monday", 0},   {"Mon", 0},      {"Tuesday", 1}, {"Tue", 1},    {"Wednesday", 2},
                 {"Wed", 2},      {"Thursday", 3}, {"Thu", 3},     {"Friday", 4}, {"Fri", 4},
                 {"Saturday", 5}, {"Sat", 5},      {"Sunday", 6},  {"Sun", 6}};
    int range_start = -1;
    bool first = true;
    int& bits = event_.weekdays_;
    for (;;) {
      size_t i = 0;
      for (; i < std::size(kDays); ++i) {
        std::string_view name = kDays[i].name;
        if (!StartsWithNoCase(*p, name)) continue;
        char after = At(*p, name.size());
        if (after != '\0' && after != '-' && after != '.' && after != ',' && after != ' ') {
          return Error("unknown weekday " + Quoted(p->substr(0, p->find_first_of(" ,.-"))));
        }
        if (bits < 0) bits = 0;
        bits |= 1 << kDays[i].nr;
        if (range_start >= 0) {
          if (range_start > kDays[i].nr) {
            return Error("weekday range ends before it starts at " + Quoted(*p));
          }
          for (int j = range_start + 1; j < kDays[i].nr; ++j) bits |= 1 << j;
        }
        p->remove_prefix(name.size());
        break;
      }
      if (i >= std::size(kDays)) {
        // Not a weekday: the weekday part is absent, unless a list or range is open.
        if (first) return true;
        return Error("expected a weekday at " + Quoted(*p));
      }
      if (p->empty()) return true;
      if ((*p)[0] == ' ') {
        SkipSpaces(p);
        return true;
      }
      if ((*p)[0] == '.') {
        if (range_start >= 0) return Error("a weekday range cannot continue at " + Quoted(*p));
        if (At(*p, 1) != '.') return Error("expected \"..\" at " + Quoted(*p));
        range_start = kDays[i].nr;
        p->remove_prefix(2);
      } else if ((*p)[0] == '-') {  // a range with "-", for backwards compatibility
        if (range_start >= 0) return Error("a weekday range cannot continue at " + Quoted(*p));
        range_start = kDays[i].nr;
        p->remove_prefix(1);
      } else if ((*p)[0] == ',') {
        range_start = -1;
        p->remove_prefix(1);
      }
      // A trailing comma is allowed, an open range is not.
      if (p->empty() || (*p)[0] == ' ') {
        SkipSpaces(p);
        if (range_start >= 0) return Error("weekday range without an end");
        return true;
      }
      first = false;
    }
  }

  static void SkipSpaces(std::string_view* p) {
    while (!p->empty() && (*p)[0] == ' ') p->remove_prefix(1);
  }

  // systemd's parse_component_decimal: a decimal number; in the seconds field, in
  // microseconds, with an optional fraction ("1.5").
  bool ParseDecimal(std::string_view* p, bool usec, int* result, const char* field) {
    if (p->empty() || !std::isdigit(static_cast<unsigned char>((*p)[0]))) {
      return Error(std::string("expected a number for the ") + field + " at " + Quoted(*p));
    }
    std::string_view start = *p;
    unsigned long long value = 0;
    size_t n = 0;
    while (n < p->size() && std::isdigit(static_cast<unsigned char>((*p)[n]))) {
      value = value * 10 + ((*p)[n] - '0');
      if (value > INT_MAX) return Error(std::string(field) + " out of range at " + Quoted(start));
      ++n;
    }
    p->remove_prefix(n);
    if (usec) {
      value *= kUsecPerSec;
      if (At(*p, 0) == '.' && At(*p, 1) != '.') {
        p->remove_prefix(1);
        unsigned long long fraction = 0;
        int digits = 0;
        while (!p->empty() && std::isdigit(static_cast<unsigned char>((*p)[0]))) {
          if (digits < 6) {
            fraction = fraction * 10 + ((*p)[0] - '0');
            ++digits;
          }
          p->remove_prefix(1);
        }
        for (; digits < 6; ++digits) fraction *= 10;
        value += fraction;
      }
    }
    if (value > INT_MAX) return Error(std::string(field) + " out of range at " + Quoted(start));
    *result = static_cast<int>(value);
    return true;
  }

  // systemd's prepend_component: "A[..B][/R]" and, after a comma, the next one.
  bool ParseComponents(std::string_view* p, bool usec, Chain* chain, const char* field) {
    for (;;) {
      std::string_view begin = *p;
      Component c;
      if (!ParseDecimal(p, usec, &c.start, field)) return false;
      if (At(*p, 0) == '.' && At(*p, 1) == '.') {
        p->remove_prefix(2);
        if (!ParseDecimal(p, usec, &c.stop, field)) return false;
        c.repeat = usec ? kUsecPerSec : 1;
      }
      if (At(*p, 0) == '/') {
        p->remove_prefix(1);
        if (!ParseDecimal(p, usec, &c.repeat, field)) return false;
        if (c.repeat == 0) return Error(std::string("repetition of 0 in the ") + field);
      } else {
        if (c.start > INT_MAX - c.repeat) {
          return Error(std::string(field) + " out of range at " + Quoted(begin));
        }
        // Without a repetition, a range of seconds steps by 1 s: it must span one.
        if (usec && c.stop >= 0 && c.start + c.repeat > c.stop) {
          return Error("range of seconds shorter than a second at " +
                       Quoted(begin.substr(0, begin.size() - p->size())));
        }
      }
      char next = At(*p, 0);
      if (next != '\0' && next != ' ' && next != ',' && next != '-' && next != '~' && next != ':') {
        return Error(std::string("unexpected ") + Quoted(*p) + " in the " + field);
      }
      chain->push_back(c);
      if (next != ',') return true;
      p->remove_prefix(1);
    }
  }

  // systemd's parse_chain: `*` or components.
  bool ParseChain(std::string_view* p, bool usec, Chain* chain, const char* field) {
    chain->clear();
    if (At(*p, 0) == '*') {
      if (usec) chain->push_back(Component{0, -1, kUsecPerSec});
      p->remove_prefix(1);
      return true;
    }
    return ParseComponents(p, usec, chain, field);
  }

  bool ParseDateAndTime(std::string_view* p) {
    bool is_date = false;
    if (!ParseDate(p, &is_date)) return false;
    if (epoch_) return true;  // "@SECONDS" is a date and a time
    return ParseTime(p);
  }

  // systemd's parse_date. Leaves *p alone when the text turns out to be a time.
  bool ParseDate(std::string_view* p, bool* is_date) {
    std::string_view t = *p;
    if (t.empty()) return true;
    if (t[0] == '@') return ParseEpoch(p, is_date);
    Chain first, second, third;
    if (!ParseChain(&t, false, &first, "date")) return false;
    // The end, or a ':' as separator: this was a time, not a date.
    if (t.empty() || t[0] == ':') return true;
    if (t[0] == '~') {
      event_.end_of_month_ = true;
    } else if (t[0] != '-') {
      return Error("expected \"-\" or \":\" at " + Quoted(t));
    }
    t.remove_prefix(1);
    if (!ParseChain(&t, false, &second, "day")) return false;
    if (t.empty() || t[0] == ' ') {  // two parts: month and day
      SkipSpaces(&t);
      *p = t;
      event_.month_ = std::move(first);
      event_.day_ = std::move(second);
      *is_date = true;
      return true;
    }
    if (event_.end_of_month_) return Error("\"~\" must come before the day at " + Quoted(t));
    if (t[0] == '~') {
      event_.end_of_month_ = true;
    } else if (t[0] != '-') {
      return Error("expected \"-\" at " + Quoted(t));
    }
    t.remove_prefix(1);
    if (!ParseChain(&t, false, &third, "day")) return false;
    if (!t.empty() && t[0] != ' ') return Error("unexpected " + Quoted(t) + " after the date");
    SkipSpaces(&t);
    *p = t;
    event_.year_ = std::move(first);
    event_.month_ = std::move(second);
    event_.day_ = std::move(third);
    *is_date = true;
    return true;
  }

  // "@SECONDS": that moment, as a UTC date and time (systemd accepts any time span after
  // the "@"; whole seconds are what anyone writes).
  bool ParseEpoch(std::string_view* p, bool* is_date) {
    std::string_view digits = p->substr(1);
    if (digits.empty() ||
        !std::all_of(digits.begin(), digits.end(),
                     [](unsigned char c) { return std::isdigit(c); }) ||
        digits.size() > 12) {
      return Error("expected seconds since the epoch after \"@\" at " + Quoted(*p));
    }
    time_t seconds = std::stoll(std::string(digits));
    struct tm tm;
    gmtime_r(&seconds, &tm);
    event_.year_ = Const(tm.tm_year + 1900);
    event_.month_ = Const(tm.tm_mon + 1);
    event_.day_ = Const(tm.tm_mday);
    event_.hour_ = Const(tm.tm_hour);
    event_.minute_ = Const(tm.tm_min);
    event_.microsecond_ = Const(tm.tm_sec * kUsecPerSec);
    event_.utc_ = true;
    epoch_ = true;
    *is_date = true;
    p->remove_prefix(p->size());
    return true;
  }

  // systemd's parse_calendar_time: HOUR:MINUTE[:SECOND]; nothing at all means 00:00:00.
  bool ParseTime(std::string_view* p) {
    std::string_view t = *p;
    Chain h, m, s;
    if (t.empty()) {
      h = Const(0);
      m = Const(0);
      s = Const(0);
    } else {
      if (!ParseChain(&t, false, &h, "hour")) return false;
      if (t.empty() || t[0] != ':') return Error("expected \":\" after the hour at " + Quoted(t));
      t.remove_prefix(1);
      if (!ParseChain(&t, false, &m, "minute")) return false;
      if (t.empty()) {
        s = Const(0);
      } else {
        if (t[0] != ':') return Error("unexpected " + Quoted(t) + " after the minute");
        t.remove_prefix(1);
        if (!ParseChain(&t, true, &s, "second")) return false;
        if (!t.empty()) return Error("unexpected " + Quoted(t) + " after the second");
      }
    }
    *p = t;
    event_.hour_ = std::move(h);
    event_.minute_ = std::move(m);
    event_.microsecond_ = std::move(s);
    return true;
  }

  static void FixYear(Chain* chain) {  // 12 → 2012, 89 → 1989
    for (Component& c : *chain) {
      if (c.start >= 0 && c.start < 70) c.start += 2000;
      if (c.stop >= 0 && c.stop < 70) c.stop += 2000;
      if (c.start >= 70 && c.start < 100) c.start += 1900;
      if (c.stop >= 70 && c.stop < 100) c.stop += 1900;
    }
  }

  static void NormalizeChain(Chain* chain) {
    for (Component& c : *chain) {
      // A range's length becomes a multiple of its repetition.
      if (c.stop > c.start && c.repeat > 0) c.stop -= (c.stop - c.start) % c.repeat;
      // A repetition that cannot trigger once, or a range of one value, is a plain value.
      if ((c.stop > c.start && c.start + c.repeat > c.stop) || c.start == c.stop) {
        c.repeat = 0;
        c.stop = -1;
      }
    }
    auto key = [](const Component& c) { return std::tie(c.start, c.stop, c.repeat); };
    std::sort(chain->begin(), chain->end(),
              [&](const Component& a, const Component& b) { return key(a) < key(b); });
    chain->erase(
        std::unique(chain->begin(), chain->end(),
                    [&](const Component& a, const Component& b) { return key(a) == key(b); }),
        chain->end());
  }

  void Normalize() {
    CalendarEvent& c = event_;
    if (c.weekdays_ <= 0 || c.weekdays_ >= kAllWeekdays) c.weekdays_ = -1;
    if (c.end_of_month_ && c.day_.empty()) c.end_of_month_ = false;
    FixYear(&c.year_);
    for (Chain* chain : {&c.year_, &c.month_, &c.day_, &c.hour_, &c.minute_, &c.microsecond_}) {
      NormalizeChain(chain);
    }
  }

  bool ValidChain(const Chain& chain, int from, int to, bool end_of_month, const char* field,
                  int unit = 1) {
    if (end_of_month) to -= 3;  // at most 28 days from the end of the month
    auto show = [unit](int v) {
      if (unit == 1) return std::to_string(v);
      char buffer[32];
      if (v % unit == 0) {
        snprintf(buffer, sizeof buffer, "%d", v / unit);
      } else {
        snprintf(buffer, sizeof buffer, "%d.%06d", v / unit, v % unit);
      }
      return std::string(buffer);
    };
    std::string range = " (" + show(from) + ".." + show(to) + ")";
    if (unit != 1) range = " (0..59.999999)";
    if (end_of_month) range = " (1..28 from the end of the month)";
    for (const Component& c : chain) {
      if (c.start < from || c.start > to) {
        return Error(std::string(field) + " " + show(c.start) + " is out of range" + range);
      }
      if (c.repeat > to - from) {
        return Error(std::string(field) + " repetition /" + show(c.repeat) + " is too large" +
                     range);
      }
      if (c.stop >= 0 && (c.stop < from || c.stop > to)) {
        return Error(std::string(field) + " " + show(c.stop) + " is out of range" + range);
      }
    }
    return true;
  }

  bool Validate() {
    const CalendarEvent& c = event_;
    return ValidChain(c.year_, CalendarEvent::kMinYear, CalendarEvent::kMaxYear, false, "year") &&
           ValidChain(c.month_, 1, 12, false, "month") &&
           ValidChain(c.day_, 1, 31, c.end_of_month_, "day") &&
           ValidChain(c.hour_, 0, 23, false, "hour") &&
           ValidChain(c.minute_, 0, 59, false, "minute") &&
           ValidChain(c.microsecond_, 0, 60 * kUsecPerSec - 1, false, "second", kUsecPerSec);
  }

  std::string expression_;
  CalendarEvent event_;
  std::string error_;
  bool epoch_ = false;
};

Result<CalendarEvent> CalendarEvent::Parse(const std::string& expression) {
  return CalendarParser(expression).Parse();
}

std::string CalendarEventError(const std::string& expression) {
  Result<CalendarEvent> event = CalendarEvent::Parse(expression);
  return event.ok() ? "" : event.status().message();
}

}  // namespace hotsnap
