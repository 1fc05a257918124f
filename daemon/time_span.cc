#include "daemon/time_span.h"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <string_view>

namespace hotsnap {
namespace {

struct Unit {
  const char* name;
  int64_t usec;
};

// Longest names first where one is a prefix of another ("msec" before "ms", "min" before "m").
constexpr int64_t kSec = 1000000;
constexpr Unit kUnits[] = {
    {"seconds", kSec},
    {"second", kSec},
    {"sec", kSec},
    {"s", kSec},
    {"minutes", 60 * kSec},
    {"minute", 60 * kSec},
    {"min", 60 * kSec},
    {"months", 2629800 * kSec},
    {"month", 2629800 * kSec},
    {"msec", 1000},
    {"ms", 1000},
    {"m", 60 * kSec},
    {"M", 2629800 * kSec},
    {"hours", 3600 * kSec},
    {"hour", 3600 * kSec},
    {"hr", 3600 * kSec},
    {"h", 3600 * kSec},
    {"days", 86400 * kSec},
    {"day", 86400 * kSec},
    {"d", 86400 * kSec},
    {"weeks", 604800 * kSec},
    {"week", 604800 * kSec},
    {"w", 604800 * kSec},
    {"years", 31557600 * kSec},
    {"year", 31557600 * kSec},
    {"y", 31557600 * kSec},
    {"usec", 1},
    {"us", 1},
    {"µs", 1},
};

}  // namespace

Result<std::chrono::microseconds> ParseTimeSpan(const std::string& text) {
  auto bad = [&text](const std::string& why) {
    return Status(Code::kUsage, "invalid time span \"" + text + "\": " + why +
                                    " (e.g. \"30s\", \"15min\", \"1h 30min\")");
  };
  std::string_view p = text;
  auto skip_spaces = [&p] {
    while (!p.empty() && std::isspace(static_cast<unsigned char>(p.front()))) p.remove_prefix(1);
  };
  skip_spaces();
  if (p.empty()) return bad("empty");
  long double total = 0;
  while (!p.empty()) {
    if (!std::isdigit(static_cast<unsigned char>(p.front())) && p.front() != '.') {
      return bad(p.front() == '-' ? "negative" : "expected a number at \"" + std::string(p) + "\"");
    }
    size_t n = 0;
    bool dot = false;
    while (n < p.size() &&
           (std::isdigit(static_cast<unsigned char>(p[n])) || (p[n] == '.' && !dot))) {
      dot = dot || p[n] == '.';
      ++n;
    }
    std::string number(p.substr(0, n));
    if (number == ".") return bad("expected a number at \"" + std::string(p) + "\"");
    long double value = std::stold(number);
    p.remove_prefix(n);
    skip_spaces();
    size_t unit_length = 0;
    while (unit_length < p.size() && (std::isalpha(static_cast<unsigned char>(p[unit_length])) ||
                                      static_cast<unsigned char>(p[unit_length]) >= 0x80)) {
      ++unit_length;
    }
    std::string_view unit = p.substr(0, unit_length);
    int64_t scale = 0;
    if (unit.empty()) {
      // A bare number is seconds; systemd allows that only as the whole span or its last part.
      scale = kSec;
    } else {
      for (const Unit& u : kUnits) {
        if (unit == u.name) {
          scale = u.usec;
          break;
        }
      }
      if (scale == 0) return bad("unknown unit \"" + std::string(unit) + "\"");
    }
    p.remove_prefix(unit_length);
    skip_spaces();
    total += value * scale;
    if (total > 1e18L) return bad("too large");
  }
  return std::chrono::microseconds(static_cast<int64_t>(std::llround(total)));
}

std::string FormatTimeSpan(std::chrono::seconds span) {
  int64_t s = span.count();
  if (s == 0) return "0";
  static constexpr struct {
    const char* name;
    int64_t seconds;
  } kParts[] = {{"d", 86400}, {"h", 3600}, {"min", 60}, {"s", 1}};
  std::string out;
  for (const auto& part : kParts) {
    if (s >= part.seconds) {
      if (!out.empty()) out += ' ';
      out += std::to_string(s / part.seconds) + part.name;
      s %= part.seconds;
    }
  }
  return out;
}

}  // namespace hotsnap
