#include "repo/retention.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <numeric>

namespace hotsnap {
namespace {

// The rules in the order restic evaluates them (and lists the reasons).
enum class Rule { kLast, kHourly, kDaily, kWeekly, kMonthly, kYearly };

struct Bucket {
  Rule rule;
  int count;           // buckets still to keep; negative: all
  const char* reason;  // restic's words
  int64_t last = -1;   // the bucket of the last image kept by this rule; -1: none yet
};

bool IsLeapYear(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }
int DaysInYear(int year) { return IsLeapYear(year) ? 366 : 365; }

// ISO 8601 week as YYYYWW (Go's time.ISOWeek): weeks start on Monday and belong to the year
// that holds their Thursday.
int64_t IsoYearWeek(const struct tm& t) {
  int year = t.tm_year + 1900;
  int weekday = (t.tm_wday + 6) % 7;       // Monday 0 .. Sunday 6
  int thursday = t.tm_yday - weekday + 3;  // day of the year of this week's Thursday
  if (thursday < 0) {
    year -= 1;
    thursday += DaysInYear(year);
  } else if (thursday >= DaysInYear(year)) {
    thursday -= DaysInYear(year);
    year += 1;
  }
  return int64_t{year} * 100 + thursday / 7 + 1;
}

// The bucket an image falls in for `rule`, as restic numbers them (YYYYMMDDHH, YYYYMMDD,
// YYYYWW, YYYYMM, YYYY); for keep-last every image is its own bucket (its rank).
int64_t BucketOf(Rule rule, const struct tm& t, size_t rank) {
  int64_t year = t.tm_year + 1900;
  int64_t month = t.tm_mon + 1;
  switch (rule) {
    case Rule::kLast:
      return static_cast<int64_t>(rank);
    case Rule::kHourly:
      return year * 1000000 + month * 10000 + t.tm_mday * 100 + t.tm_hour;
    case Rule::kDaily:
      return year * 10000 + month * 100 + t.tm_mday;
    case Rule::kWeekly:
      return IsoYearWeek(t);
    case Rule::kMonthly:
      return year * 100 + month;
    case Rule::kYearly:
      return year;
  }
  return -1;
}

struct tm LocalTime(int64_t utc_s) {
  struct tm t = {};
  time_t seconds = static_cast<time_t>(utc_s);
  if (localtime_r(&seconds, &t) == nullptr) {
    // Out of the C library's range: every such image shares one bucket (the zero time).
    t = {};
  }
  return t;
}

}  // namespace

std::vector<RetentionDecision> ApplyRetention(const std::vector<int64_t>& created_utc_s,
                                              const RetentionPolicy& policy) {
  tzset();  // localtime_r need not read TZ itself (glibc reads it once)
  std::vector<RetentionDecision> decisions(created_utc_s.size());
  if (policy.Empty()) {
    // restic keeps everything for an empty policy; the caller refuses one before this.
    for (RetentionDecision& decision : decisions) {
      decision.keep = true;
      decision.reasons = {"policy is empty"};
    }
    return decisions;
  }

  // Newest first; of equal times the later entry counts as newer (catalogs list oldest first).
  std::vector<size_t> order(created_utc_s.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (created_utc_s[a] != created_utc_s[b]) return created_utc_s[a] > created_utc_s[b];
    return a > b;
  });

  std::array<Bucket, 6> buckets = {{
      {Rule::kLast, policy.keep_last, "last snapshot"},
      {Rule::kHourly, policy.keep_hourly, "hourly snapshot"},
      {Rule::kDaily, policy.keep_daily, "daily snapshot"},
      {Rule::kWeekly, policy.keep_weekly, "weekly snapshot"},
      {Rule::kMonthly, policy.keep_monthly, "monthly snapshot"},
      {Rule::kYearly, policy.keep_yearly, "yearly snapshot"},
  }};

  for (size_t rank = 0; rank < order.size(); ++rank) {
    RetentionDecision& decision = decisions[order[rank]];
    struct tm local = LocalTime(created_utc_s[order[rank]]);
    for (Bucket& bucket : buckets) {
      if (bucket.count == 0) continue;
      int64_t value = BucketOf(bucket.rule, local, rank);
      // Taken newest first, the first image met in a bucket is that bucket's newest; a count
      // is spent only on a bucket that has an image, so N counts buckets that had one.
      if (value == bucket.last) continue;
      bucket.last = value;
      if (bucket.count > 0) --bucket.count;
      decision.keep = true;
      decision.reasons.push_back(bucket.reason);
    }
  }
  return decisions;
}

}  // namespace hotsnap
