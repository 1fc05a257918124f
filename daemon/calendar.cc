// A port of systemd 252's calendar-event parser and elapse search (src/shared/calendarspec.c),
// written again with messages that name the offending part. Where this file looks odd (the
// two-digit years, a "~" range swapped, the 1000-step search limit), it mirrors systemd so
// that `systemd-analyze calendar` and the agent agree on every elapse.
#include "daemon/calendar.h"

#include <strings.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdio>
#include <ctime>
#include <string_view>
#include <tuple>

namespace hotsnap {
namespace {

constexpr int kUsecPerSec = 1000000;
constexpr int kMinYear = 1970;
constexpr int kMaxYear = 2199;
constexpr int kAllWeekdays = 127;
// systemd gives up after this many steps of its search ("Infinite loop in calendar
// calculation") and reports that the event never elapses; so do we.
constexpr int kMaxSearchSteps = 1000;

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

time_t MakeTime(struct tm* tm, bool utc) { return utc ? timegm(tm) : mktime(tm); }
void BreakTime(time_t t, struct tm* tm, bool utc) {
  if (utc) {
    gmtime_r(&t, tm);
  } else {
    localtime_r(&t, tm);
  }
}

// Shows the rest of the expression from the failing position, for messages.
std::string Quoted(std::string_view text) {
  if (text.empty()) return "the end";
  return "\"" + std::string(text) + "\"";
}

}  // namespace

// The parser lives in a class so it may fill CalendarEvent's private fields.
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
    } kDays[] = {{"Monday", 0},   {"Mon", 0}, {"Tuesday", 1}, {"Tue", 1},  {"Wednesday", 2},
                 {"Wed", 2},      {"Thursday", 3}, {"Thu", 3}, {"Friday", 4}, {"Fri", 4},
                 {"Saturday", 5}, {"Sat", 5}, {"Sunday", 6},   {"Sun", 6}};
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
      if (next != '\0' && next != ' ' && next != ',' && next != '-' && next != '~' &&
          next != ':') {
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
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), [](unsigned char c) {
          return std::isdigit(c);
        }) || digits.size() > 12) {
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
    chain->erase(std::unique(chain->begin(), chain->end(),
                             [&](const Component& a, const Component& b) {
                               return key(a) == key(b);
                             }),
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
    return ValidChain(c.year_, kMinYear, kMaxYear, false, "year") &&
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

namespace {

void FormatChain(std::string* out, int width, const CalendarEvent::Chain& chain, bool usec) {
  const int unit = usec ? kUsecPerSec : 1;
  if (chain.empty() ||
      (usec && chain.size() == 1 && chain[0].start == 0 && chain[0].repeat == kUsecPerSec &&
       chain[0].stop < 0)) {
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
    // autumn change and come back to `after_us` itself (systemd 252 finds the hour after; we
    // have not reproduced that). An elapse that is not in the future would make a caller run
    // the job in a loop: we say "never" instead. Plain local time and UTC never get here.
    if (static_cast<int64_t>(elapse) * kUsecPerSec + tm_usec <= after_us) return std::nullopt;
    return static_cast<int64_t>(elapse) * kUsecPerSec + tm_usec;
  }
  return std::nullopt;
}

}  // namespace hotsnap
