// Retention (repo/retention.h): restic's `forget` rules. Table cases from restic's own
// documentation (doc/060_forget.rst: the worked examples and the "every day for 100 years"
// arithmetic) and from the rules' edges (ISO weeks across New Year, empty buckets not
// counted, ties, DST), then a cross-check against the real restic (Debian 12's 0.14): a
// scratch restic repository gets snapshots at seeded random times over two years and
// `restic forget --dry-run --json` must keep exactly what ApplyRetention keeps, for the same
// reasons, under several policies.
#include "repo/retention.h"

#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "tests/scoped_tz.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::InCi;
using ::hotsnap::testing::Quote;
using ::hotsnap::testing::ReadAll;
using ::hotsnap::testing::RunOk;
using ::hotsnap::testing::ScopedTz;
using ::hotsnap::testing::TempDir;
using Reasons = std::vector<std::string>;

// "YYYY-MM-DD HH:MM:SS" of the local wall clock -> seconds since the epoch. `dst`: for a wall
// clock time that occurs twice (a DST fall-back), 1 picks the summer one, 0 the winter one.
int64_t Local(const std::string& text, int dst = -1) {
  struct tm t = {};
  EXPECT_EQ(sscanf(text.c_str(), "%d-%d-%d %d:%d:%d", &t.tm_year, &t.tm_mon, &t.tm_mday, &t.tm_hour,
                   &t.tm_min, &t.tm_sec),
            6)
      << text;
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  t.tm_isdst = dst;
  return static_cast<int64_t>(mktime(&t));
}

std::string LocalText(int64_t utc_s) {
  time_t seconds = static_cast<time_t>(utc_s);
  struct tm t = {};
  localtime_r(&seconds, &t);
  char text[64];
  strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S %Z", &t);
  return text;
}

struct Case {
  std::string name;
  std::string tz;
  std::vector<std::string> times;  // local wall clock, any order
  RetentionPolicy policy;
  std::map<std::string, Reasons> kept;  // time -> reasons; every other time is removed
};

RetentionPolicy Policy(int last, int hourly, int daily, int weekly, int monthly, int yearly) {
  RetentionPolicy policy;
  policy.keep_last = last;
  policy.keep_hourly = hourly;
  policy.keep_daily = daily;
  policy.keep_weekly = weekly;
  policy.keep_monthly = monthly;
  policy.keep_yearly = yearly;
  return policy;
}

const Reasons kDaily = {"daily snapshot"};
const Reasons kWeekly = {"weekly snapshot"};

std::vector<Case> Cases() {
  return {
      // restic 0.14's doc/060_forget.rst: one backup every Sunday for 12 weeks; `forget
      // --keep-daily 4` keeps the last four Sundays.
      {"DocsTwelveSundaysKeepDaily4",
       "UTC",
       {"2019-09-01 11:00:00", "2019-09-08 11:00:00", "2019-09-15 11:00:00", "2019-09-22 11:00:00",
        "2019-09-29 11:00:00", "2019-10-06 11:00:00", "2019-10-13 11:00:00", "2019-10-20 11:00:00",
        "2019-10-27 11:00:00", "2019-11-03 11:00:00", "2019-11-10 11:00:00", "2019-11-17 11:00:00"},
       Policy(0, 0, 4, 0, 0, 0),
       {{"2019-10-27 11:00:00", kDaily},
        {"2019-11-03 11:00:00", kDaily},
        {"2019-11-10 11:00:00", kDaily},
        {"2019-11-17 11:00:00", kDaily}}},
      // restic's current doc/060_forget.rst: backups every weekday for two weeks, a second
      // one on Fridays, Wednesday 04-30 missed; `--keep-daily 5` keeps one per day for the
      // five newest days that have one (the newest of each: the Fridays' 23:00 ones), so it
      // reaches back to the previous Friday.
      {"DocsWeekdaysKeepDaily5",
       "UTC",
       {"2025-04-21 11:00:00", "2025-04-22 11:00:00", "2025-04-23 11:00:00", "2025-04-24 11:00:00",
        "2025-04-25 11:00:00", "2025-04-25 23:00:00", "2025-04-28 11:00:00", "2025-04-29 11:00:00",
        "2025-05-01 11:00:00", "2025-05-02 11:00:00", "2025-05-02 23:00:00"},
       Policy(0, 0, 5, 0, 0, 0),
       {{"2025-04-25 23:00:00", kDaily},
        {"2025-04-28 11:00:00", kDaily},
        {"2025-04-29 11:00:00", kDaily},
        {"2025-05-01 11:00:00", kDaily},
        {"2025-05-02 23:00:00", kDaily}}},
      // A count spends itself on days that have a snapshot, however far apart.
      {"EmptyDaysAreNotCounted",
       "UTC",
       {"2024-01-01 08:00:00", "2024-01-10 08:00:00", "2024-01-20 08:00:00", "2024-01-20 09:00:00"},
       Policy(0, 0, 2, 0, 0, 0),
       {{"2024-01-10 08:00:00", kDaily}, {"2024-01-20 09:00:00", kDaily}}},
      // Fewer days than the count: the newest of each day only (restic 0.14; 0.17+ would
      // also keep the oldest snapshot, "oldest daily snapshot": see repo/retention.h).
      {"FewerDaysThanCountNoOldestRule",
       "UTC",
       {"2024-01-01 08:00:00", "2024-01-01 12:00:00"},
       Policy(0, 0, 5, 0, 0, 0),
       {{"2024-01-01 12:00:00", kDaily}}},
      // ISO weeks: 2019-12-30 (Monday) starts 2020-W01, so it and 2020-01-05 are one week;
      // 2019-12-29 (Sunday) is 2019-W52. 2021-01-01..03 are 2020-W53, 2021-01-04 2021-W01.
      {"IsoWeeksAcrossNewYear",
       "UTC",
       {"2019-12-29 10:00:00", "2019-12-30 10:00:00", "2020-01-05 10:00:00", "2020-12-31 10:00:00",
        "2021-01-03 10:00:00", "2021-01-04 10:00:00"},
       Policy(0, 0, 0, 4, 0, 0),
       {{"2019-12-29 10:00:00", kWeekly},
        {"2020-01-05 10:00:00", kWeekly},
        {"2021-01-03 10:00:00", kWeekly},
        {"2021-01-04 10:00:00", kWeekly}}},
      // Weeks run Monday 00:00 to Sunday 23:59:59.
      {"WeekEndsSundayMidnight",
       "UTC",
       {"2024-06-09 23:59:59", "2024-06-10 00:00:00", "2024-06-03 00:00:00"},
       Policy(0, 0, 0, 3, 0, 0),
       {{"2024-06-09 23:59:59", kWeekly}, {"2024-06-10 00:00:00", kWeekly}}},
      // Every rule that keeps an image names itself, in restic's order.
      {"ReasonsInRuleOrder",
       "UTC",
       {"2024-03-31 22:00:00", "2024-03-31 23:00:00", "2024-04-01 00:30:00"},
       Policy(1, 2, 2, 1, 2, 1),
       {{"2024-04-01 00:30:00",
         {"last snapshot", "hourly snapshot", "daily snapshot", "weekly snapshot",
          "monthly snapshot", "yearly snapshot"}},
        {"2024-03-31 23:00:00", {"hourly snapshot", "daily snapshot", "monthly snapshot"}}}},
      // Negative: every bucket (restic's `unlimited`).
      {"UnlimitedDaily",
       "UTC",
       {"2024-05-01 08:00:00", "2024-05-01 20:00:00", "2024-05-02 08:00:00", "2023-01-01 00:00:00"},
       Policy(0, 0, -1, 0, 0, 0),
       {{"2024-05-01 20:00:00", kDaily},
        {"2024-05-02 08:00:00", kDaily},
        {"2023-01-01 00:00:00", kDaily}}},
      // Buckets are of the local wall clock: 23:30 UTC on 2024-02-29 is 2024-03-01 in Berlin.
      {"LocalDayNotUtcDay",
       "Europe/Berlin",
       {"2024-02-29 22:00:00", "2024-03-01 00:30:00", "2024-03-01 09:00:00"},
       Policy(0, 0, 0, 0, 2, 0),
       {{"2024-02-29 22:00:00", {"monthly snapshot"}},
        {"2024-03-01 09:00:00", {"monthly snapshot"}}}},
  };
}

class RetentionTableTest : public ::testing::TestWithParam<Case> {};

TEST_P(RetentionTableTest, KeepsWhatResticKeeps) {
  const Case& c = GetParam();
  ScopedTz tz(c.tz);
  std::vector<int64_t> times;
  for (const std::string& text : c.times) times.push_back(Local(text));
  // Any input order gives the same decisions, reported in the input's order.
  for (int pass = 0; pass < 2; ++pass) {
    std::vector<RetentionDecision> decisions = ApplyRetention(times, c.policy);
    ASSERT_EQ(decisions.size(), times.size());
    std::map<std::string, Reasons> kept;
    for (size_t i = 0; i < times.size(); ++i) {
      std::string text = c.times[i];
      if (pass == 1) text = c.times[times.size() - 1 - i];
      EXPECT_EQ(decisions[i].keep, !decisions[i].reasons.empty()) << text;
      if (decisions[i].keep) kept[text] = decisions[i].reasons;
    }
    EXPECT_EQ(kept, c.kept) << "pass " << pass;
    std::reverse(times.begin(), times.end());
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, RetentionTableTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

// doc/060_forget.rst: "suppose you make one backup every day for 100 years. Then forget
// --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75 would keep the most recent
// 7 daily snapshots and 4 last-day-of-the-week ones (since the 7 dailies already include 1
// weekly). Additionally, 12 or 11 last-day-of-the-month snapshots [...] And finally 75 or 74
// last-day-of-the-year snapshots". Here the newest is Sunday 2024-12-29: 7 dailies (one
// week), 4 more Sundays, 11 more month ends (Dec is the newest's), 74 more year ends.
TEST(RetentionTest, DocsHundredYearsOfDailies) {
  ScopedTz tz("UTC");
  std::vector<int64_t> times;
  for (int64_t t = Local("1925-01-01 12:00:00"); t <= Local("2024-12-29 12:00:00"); t += 86400) {
    times.push_back(t);
  }
  std::vector<RetentionDecision> decisions = ApplyRetention(times, Policy(0, 0, 7, 5, 12, 75));
  std::map<std::string, int> first_reason;  // images by the first rule that kept them
  std::set<std::string> kept;
  for (size_t i = 0; i < times.size(); ++i) {
    if (!decisions[i].keep) continue;
    ++first_reason[decisions[i].reasons.front()];
    kept.insert(LocalText(times[i]).substr(0, 10));
  }
  EXPECT_EQ(first_reason, (std::map<std::string, int>{{"daily snapshot", 7},
                                                      {"weekly snapshot", 4},
                                                      {"monthly snapshot", 11},
                                                      {"yearly snapshot", 74}}));
  EXPECT_EQ(kept.size(), 96u);
  for (const char* day : {"2024-12-23", "2024-12-22", "2024-12-01", "2024-11-30", "2024-01-31",
                          "2023-12-31", "1950-12-31"}) {
    EXPECT_TRUE(kept.count(day)) << day;
  }
  for (const char* day : {"2024-12-21", "1949-12-31", "2024-11-24", "2023-11-30"}) {
    EXPECT_FALSE(kept.count(day)) << day;
  }
}

// Equal times: the later entry counts as the newer (catalogs are listed oldest first).
TEST(RetentionTest, EqualTimesLaterEntryIsNewer) {
  ScopedTz tz("UTC");
  std::vector<RetentionDecision> decisions =
      ApplyRetention({100, 200, 200}, Policy(1, 0, 0, 0, 0, 0));
  EXPECT_FALSE(decisions[0].keep);
  EXPECT_FALSE(decisions[1].keep);
  EXPECT_TRUE(decisions[2].keep);
  decisions = ApplyRetention({200, 200, 100}, Policy(2, 0, 0, 0, 0, 0));
  EXPECT_TRUE(decisions[0].keep);
  EXPECT_TRUE(decisions[1].keep);
  EXPECT_FALSE(decisions[2].keep);
}

// The two 02:00 hours of Berlin's fall-back night (CEST then CET) are one hourly bucket, as in
// restic (Go's Hour() of the local wall clock).
TEST(RetentionTest, DstFallBackHoursShareABucket) {
  ScopedTz tz("Europe/Berlin");
  int64_t summer = Local("2021-10-31 02:30:00", 1);
  int64_t winter = Local("2021-10-31 02:30:00", 0);
  ASSERT_EQ(winter - summer, 3600);
  int64_t three = Local("2021-10-31 03:30:00");
  std::vector<RetentionDecision> decisions =
      ApplyRetention({summer, winter, three}, Policy(0, 3, 0, 0, 0, 0));
  EXPECT_FALSE(decisions[0].keep);
  EXPECT_TRUE(decisions[1].keep);
  EXPECT_TRUE(decisions[2].keep);
}

TEST(RetentionTest, EmptyPolicyKeepsEverything) {
  std::vector<RetentionDecision> decisions = ApplyRetention({1, 2}, RetentionPolicy{});
  ASSERT_EQ(decisions.size(), 2u);
  for (const RetentionDecision& decision : decisions) {
    EXPECT_TRUE(decision.keep);
    EXPECT_EQ(decision.reasons, Reasons{"policy is empty"});
  }
  EXPECT_TRUE(ApplyRetention({}, Policy(1, 0, 0, 0, 0, 0)).empty());
}

// ---- The cross-check against restic ---------------------------------------------------------

// RFC 3339 as restic writes snapshot times ("2021-10-31T02:30:00+02:00", "...Z", optional
// fraction) -> seconds since the epoch.
int64_t ParseRfc3339(const std::string& text) {
  struct tm t = {};
  int consumed = 0;
  if (sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d%n", &t.tm_year, &t.tm_mon, &t.tm_mday, &t.tm_hour,
             &t.tm_min, &t.tm_sec, &consumed) != 6) {
    ADD_FAILURE() << "not an RFC 3339 time: " << text;
    return 0;
  }
  size_t at = static_cast<size_t>(consumed);
  if (at < text.size() && text[at] == '.') {
    while (++at < text.size() && isdigit(static_cast<unsigned char>(text[at]))) {
    }
  }
  int offset_s = 0;
  if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
    int hours = 0, minutes = 0;
    EXPECT_EQ(sscanf(text.c_str() + at + 1, "%d:%d", &hours, &minutes), 2) << text;
    offset_s = (hours * 3600 + minutes * 60) * (text[at] == '-' ? -1 : 1);
  } else {
    EXPECT_EQ(text.substr(at), "Z") << text;
  }
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&t)) - offset_s;
}

std::string PolicyFlags(const RetentionPolicy& p) {
  std::string flags;
  auto add = [&flags](const char* name, int n) {
    if (n != 0) flags += std::string(" --keep-") + name + " " + std::to_string(n);
  };
  add("last", p.keep_last);
  add("hourly", p.keep_hourly);
  add("daily", p.keep_daily);
  add("weekly", p.keep_weekly);
  add("monthly", p.keep_monthly);
  add("yearly", p.keep_yearly);
  return flags;
}

class ResticRepo {
 public:
  explicit ResticRepo(const TempDir& dir)
      : env_("RESTIC_PASSWORD=retention-test RESTIC_REPOSITORY=" + Quote(dir.File("repo")) +
             " RESTIC_CACHE_DIR=" + Quote(dir.File("cache"))),
        data_(dir.File("data")),
        dir_(dir.path()) {
    RunOk("mkdir -p " + Quote(data_) + " && echo data > " + Quote(data_ + "/file"));
    RunOk(Command("UTC", "init -q"));
  }

  std::string Command(const std::string& tz, const std::string& args) const {
    return "env TZ=" + Quote(tz) + " " + env_ + " restic " + args;
  }

  // Runs the commands, at most `parallel` at a time; their stdout, in order.
  std::vector<std::string> RunAll(const std::vector<std::string>& commands, size_t parallel) {
    std::vector<std::string> outs(commands.size());
    for (size_t first = 0; first < commands.size(); first += parallel) {
      std::vector<std::pair<size_t, int>> running;
      for (size_t i = first; i < std::min(commands.size(), first + parallel); ++i) {
        std::string out = dir_ + "/out." + std::to_string(i);
        running.emplace_back(i, ::hotsnap::testing::Spawn(commands[i], out, out + ".err"));
      }
      for (auto [i, pid] : running) {
        std::string out = dir_ + "/out." + std::to_string(i);
        EXPECT_EQ(::hotsnap::testing::WaitExit(pid), 0) << commands[i] << "\n"
                                                        << ReadAll(out + ".err");
        outs[i] = ReadAll(out);
      }
    }
    return outs;
  }

  // A snapshot of the data directory at `local` ("YYYY-MM-DD HH:MM:SS" in `tz`).
  std::string BackupCommand(const std::string& tz, const std::string& local) const {
    return Command(tz, "backup -q --host h --time " + Quote(local) + " " + Quote(data_));
  }

 private:
  std::string env_;
  std::string data_;
  std::string dir_;
};

TEST(RetentionResticTest, ForgetDryRunAgrees) {
  if (::hotsnap::testing::Run("command -v restic").exit_code != 0) {
    if (InCi()) FAIL() << "CI=true but restic is missing (scripts/packages.txt installs it)";
    GTEST_SKIP() << "restic is not installed (scripts/setup.sh installs it)";
  }
  const std::string kZone = "Europe/Berlin";
  TempDir dir;
  ResticRepo restic(dir);

  // Seeded random times: a spread over two years, a burst over the newest days (hourly and
  // daily buckets with several snapshots), and both 02:30s of a DST fall-back night (written
  // with fixed offsets; restic reads them back in Berlin time).
  std::mt19937 random(20261204);
  std::vector<std::string> backups;
  std::set<std::string> seen;
  auto add = [&](int64_t utc_s) {
    std::string text = LocalText(utc_s).substr(0, 19);
    if (seen.insert(text).second) backups.push_back(restic.BackupCommand(kZone, text));
  };
  {
    ScopedTz tz(kZone);
    int64_t start = Local("2023-01-01 00:00:00");
    int64_t end = Local("2024-12-20 00:00:00");
    std::uniform_int_distribution<int64_t> spread(start, end);
    for (int i = 0; i < 20; ++i) add(spread(random));
    std::uniform_int_distribution<int64_t> burst(end, end + 3 * 86400);
    for (int i = 0; i < 10; ++i) add(burst(random) / 600 * 600);  // some share an hour
  }
  backups.push_back(restic.BackupCommand("Etc/GMT-2", "2024-10-27 02:30:00"));  // CEST
  backups.push_back(restic.BackupCommand("Etc/GMT-1", "2024-10-27 02:30:00"));  // CET
  restic.RunAll(backups, 8);

  // What restic recorded: id -> time.
  nlohmann::json snapshots =
      nlohmann::json::parse(RunOk(restic.Command(kZone, "--no-lock snapshots --json")).out);
  ASSERT_EQ(snapshots.size(), backups.size());
  std::vector<std::string> ids;
  std::vector<int64_t> times;
  std::map<std::string, std::string> labels;  // id -> "local time (short id)", for messages
  {
    ScopedTz tz(kZone);
    for (const nlohmann::json& snapshot : snapshots) {
      ids.push_back(snapshot.at("id").get<std::string>());
      times.push_back(ParseRfc3339(snapshot.at("time").get<std::string>()));
      labels[ids.back()] = LocalText(times.back()) + " (" + ids.back().substr(0, 8) + ")";
    }
  }

  const std::vector<RetentionPolicy> policies = {
      Policy(5, 0, 0, 0, 0, 0), Policy(0, 6, 0, 0, 0, 0),  Policy(0, 0, 7, 0, 0, 0),
      Policy(0, 0, 0, 5, 0, 0), Policy(0, 0, 0, 0, 6, 0),  Policy(0, 0, 0, 0, 0, 3),
      Policy(2, 0, 7, 4, 6, 2), Policy(0, 3, 0, 10, 3, 0), Policy(1, 24, 14, 8, 12, 5),
  };
  std::vector<std::string> forgets;
  for (const RetentionPolicy& policy : policies) {
    forgets.push_back(
        restic.Command(kZone, "--no-lock forget --dry-run --json" + PolicyFlags(policy)));
  }
  std::vector<std::string> outs = restic.RunAll(forgets, forgets.size());

  ScopedTz tz(kZone);
  for (size_t p = 0; p < policies.size(); ++p) {
    SCOPED_TRACE("restic forget" + PolicyFlags(policies[p]));
    nlohmann::json groups = nlohmann::json::parse(outs[p]);
    ASSERT_EQ(groups.size(), 1u);
    const nlohmann::json& group = groups[0];
    std::map<std::string, Reasons> restic_kept;  // label -> reasons
    ASSERT_EQ(group.at("keep").size(), group.at("reasons").size());
    for (size_t k = 0; k < group.at("keep").size(); ++k) {
      restic_kept[labels.at(group["keep"][k].at("id").get<std::string>())] =
          group["reasons"][k].at("matches").get<Reasons>();
    }
    size_t removed = group.at("remove").is_null() ? 0 : group.at("remove").size();
    EXPECT_EQ(restic_kept.size() + removed, ids.size());

    std::vector<RetentionDecision> decisions = ApplyRetention(times, policies[p]);
    std::map<std::string, Reasons> ours;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (decisions[i].keep) ours[labels.at(ids[i])] = decisions[i].reasons;
    }
    EXPECT_EQ(ours, restic_kept);
    // Every policy keeps some and removes some: the comparison is not vacuous.
    EXPECT_GT(removed, 0u);
  }
}

}  // namespace
}  // namespace hotsnap
