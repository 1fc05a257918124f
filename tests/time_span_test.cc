// systemd-style time spans (daemon/time_span.h): every expected value written out by hand,
// from systemd.time(7)'s unit table.
#include "daemon/time_span.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

namespace hotsnap {
namespace {

TEST(TimeSpanTest, ParsesSystemdSpellings) {
  struct Case {
    const char* text;
    int64_t usec;
  };
  const std::vector<Case> cases = {
      {"0", 0},
      {"90", 90000000},
      {"30s", 30000000},
      {"2 sec", 2000000},
      {"15min", 900000000},
      {"1h 30min", 5400000000},
      {"2h30m", 9000000000},
      {"1.5h", 5400000000},
      {"1d", 86400000000},
      {"1w", 604800000000},
      {"250ms", 250000},
      {"10us", 10},
      {"1M", 2629800000000},
      {"1y", 31557600000000},
      {"  5 minutes ", 300000000},
      {"1hour 1minute 1second", 3661000000},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    Result<std::chrono::microseconds> span = ParseTimeSpan(c.text);
    ASSERT_TRUE(span.ok()) << span.status().message();
    EXPECT_EQ(span->count(), c.usec);
  }
}

TEST(TimeSpanTest, RefusesWhatIsNotASpanNamingIt) {
  struct Case {
    const char* text;
    const char* names;
  };
  const std::vector<Case> cases = {
      {"", "empty"},
      {"   ", "empty"},
      {"15 parsecs", "unknown unit \"parsecs\""},
      {"-5s", "negative"},
      {"min", "expected a number at \"min\""},
      {"5s x", "expected a number at \"x\""},
      {".", "expected a number at \".\""},
      {"99999999999999999h", "too large"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    Result<std::chrono::microseconds> span = ParseTimeSpan(c.text);
    ASSERT_FALSE(span.ok()) << span->count();
    EXPECT_EQ(span.status().code(), Code::kUsage);
    EXPECT_NE(span.status().message().find(c.names), std::string::npos) << span.status().message();
    EXPECT_NE(span.status().message().find(std::string("\"") + c.text + "\""), std::string::npos)
        << span.status().message();
  }
}

TEST(TimeSpanTest, FormatsWholeSeconds) {
  EXPECT_EQ(FormatTimeSpan(std::chrono::seconds(0)), "0");
  EXPECT_EQ(FormatTimeSpan(std::chrono::seconds(45)), "45s");
  EXPECT_EQ(FormatTimeSpan(std::chrono::seconds(374)), "6min 14s");
  EXPECT_EQ(FormatTimeSpan(std::chrono::seconds(5400)), "1h 30min");
  EXPECT_EQ(FormatTimeSpan(std::chrono::seconds(90061)), "1d 1h 1min 1s");
}

}  // namespace
}  // namespace hotsnap
