// Per-job scheduling (daemon/schedule.h) driven by a TestClock: catch-up of missed runs,
// skipped elapses, the fixed randomized delay, and the stamps that persist the last start.
#include "daemon/schedule.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <time.h>

#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon/calendar.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

constexpr int64_t kSec = 1000000;

class UtcZone {  // these tests reason in UTC
 public:
  UtcZone() {
    const char* old = std::getenv("TZ");
    if (old != nullptr) old_ = old;
    setenv("TZ", "UTC", 1);
    tzset();
  }
  ~UtcZone() {
    if (old_) {
      setenv("TZ", old_->c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }

 private:
  std::optional<std::string> old_;
};

// "2026-12-04 10:00:00" (UTC) → microseconds.
int64_t At(const char* text) {
  struct tm tm = {};
  EXPECT_NE(strptime(text, "%Y-%m-%d %H:%M:%S", &tm), nullptr) << text;
  return static_cast<int64_t>(timegm(&tm)) * kSec;
}

JobSchedule Make(const char* expression, bool persistent, std::chrono::seconds delay = {},
                 const char* name = "db") {
  Result<CalendarEvent> event = CalendarEvent::Parse(expression);
  EXPECT_TRUE(event.ok()) << event.status().message();
  return JobSchedule(*event, persistent, delay, name, "machine-id");
}

struct Case {
  const char* what;
  const char* schedule;
  bool persistent;
  const char* agent_start;
  const char* last_start;  // nullptr: never ran
  const char* last_end;    // nullptr: not in this process
  const char* now;
  const char* expected_at;  // nullptr: never
  bool catch_up;
};

TEST(ScheduleTest, NextDueTable) {
  UtcZone utc;
  const std::vector<Case> cases = {
      {"never ran: the first elapse after the agent started, not at once", "daily", true,
       "2026-12-04 10:00:00", nullptr, nullptr, "2026-12-04 10:00:00", "2026-12-05 00:00:00",
       false},
      {"missed while down, persistent: at once", "daily", true, "2026-12-04 10:00:00",
       "2026-12-03 00:00:05", nullptr, "2026-12-04 10:00:01", "2026-12-04 10:00:01", true},
      {"missed while down, not persistent: skipped", "daily", false, "2026-12-04 10:00:00",
       "2026-12-03 00:00:05", nullptr, "2026-12-04 10:00:01", "2026-12-05 00:00:00", false},
      {"many missed: still one catch-up", "hourly", true, "2026-12-04 10:30:00",
       "2026-11-30 08:00:00", nullptr, "2026-12-04 10:30:00", "2026-12-04 10:30:00", true},
      {"not missed: the next elapse", "Mon..Fri 02:00", true, "2026-12-04 10:00:00",
       "2026-12-04 02:00:00", nullptr, "2026-12-04 10:00:00", "2026-12-07 02:00:00", false},
      {"the catch-up run started: next is in the future", "daily", true, "2026-12-04 10:00:00",
       "2026-12-04 10:00:01", nullptr, "2026-12-04 10:05:00", "2026-12-05 00:00:00", false},
      {"an elapse during the run is skipped", "hourly", true, "2026-12-04 09:00:00",
       "2026-12-04 10:00:00", "2026-12-04 11:30:00", "2026-12-04 11:30:00", "2026-12-04 12:00:00",
       false},
      {"due while up: due time passed, not a catch-up", "hourly", false, "2026-12-04 09:00:00",
       "2026-12-04 10:00:00", "2026-12-04 10:10:00", "2026-12-04 11:00:00", "2026-12-04 11:00:00",
       false},
      {"elapse exactly at the agent's start counts as missed", "daily", true, "2026-12-05 00:00:00",
       "2026-12-04 00:00:00", nullptr, "2026-12-05 00:00:00", "2026-12-05 00:00:00", true},
      {"a one-time event missed while down is still caught up", "2025-01-01", true,
       "2026-12-04 10:00:00", "2024-12-31 00:00:00", nullptr, "2026-12-04 10:00:00",
       "2026-12-04 10:00:00", true},
      {"never again once it ran", "2025-01-01", true, "2026-12-04 10:00:00", "2025-01-01 00:00:00",
       nullptr, "2026-12-04 10:00:00", nullptr, false},
      {"a past elapse before the stamp is not missed", "2026-12-01 12:00", true,
       "2026-12-04 10:00:00", "2026-12-02 00:00:00", nullptr, "2026-12-04 10:00:00", nullptr,
       false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    JobSchedule schedule = Make(c.schedule, c.persistent);
    ScheduleState state;
    state.agent_start_us = At(c.agent_start);
    if (c.last_start) state.last_start_us = At(c.last_start);
    if (c.last_end) state.last_end_us = At(c.last_end);
    std::optional<DueTime> due = schedule.NextDue(At(c.now), state);
    if (c.expected_at == nullptr) {
      EXPECT_FALSE(due) << due->at_us;
      continue;
    }
    ASSERT_TRUE(due);
    EXPECT_EQ(due->at_us, At(c.expected_at));
    EXPECT_EQ(due->catch_up, c.catch_up);
  }
}

// A small scheduler loop as the agent runs it: wait for the due time, start (store the
// stamp), run for a while, repeat; a power-off in the middle. Returns the run starts.
std::vector<int64_t> Simulate(const JobSchedule& schedule, TestClock* clock, StampStore* stamps,
                              int64_t until_us, int64_t down_from_us, int64_t down_until_us,
                              int64_t run_length_us) {
  std::vector<int64_t> starts;
  ScheduleState state;
  state.agent_start_us = clock->NowUs();
  bool was_down = false;
  for (int guard = 0; guard < 1000; ++guard) {
    Result<std::optional<int64_t>> last = stamps->Load("db");
    EXPECT_TRUE(last.ok()) << last.status().message();
    state.last_start_us = *last;
    std::optional<DueTime> due = schedule.NextDue(clock->NowUs(), state);
    if (!due) break;
    int64_t at = std::max(due->at_us, clock->NowUs());
    if (!was_down && at >= down_from_us) {
      // The machine is off: the agent starts again later, with only the stamp.
      was_down = true;
      clock->Set(down_until_us);
      state = ScheduleState{};
      state.agent_start_us = down_until_us;
      continue;
    }
    if (at > until_us) break;
    clock->Set(at);
    starts.push_back(at);
    EXPECT_TRUE(stamps->Store("db", at).ok());
    clock->Advance(std::chrono::microseconds(run_length_us));
    state.last_end_us = clock->NowUs();
  }
  return starts;
}

TEST(ScheduleTest, AWeekOfRunsWithAPowerCutCatchesUpOnce) {
  UtcZone utc;
  testing::TempDir dir;
  StampStore stamps(dir.path());
  TestClock clock(At("2026-12-04 01:00:00"));  // a Friday
  JobSchedule schedule = Make("Mon..Fri 02:00", true);
  // Off from Monday 01:00 until Wednesday 09:00: Monday's, Tuesday's and Wednesday's runs
  // are missed; one catch-up at 09:00, then Thursday and Friday as usual.
  std::vector<int64_t> starts =
      Simulate(schedule, &clock, &stamps, At("2026-12-12 00:00:00"), At("2026-12-07 01:00:00"),
               At("2026-12-09 09:00:00"), 20 * 60 * kSec);
  EXPECT_EQ(starts, (std::vector<int64_t>{At("2026-12-04 02:00:00"), At("2026-12-09 09:00:00"),
                                          At("2026-12-10 02:00:00"), At("2026-12-11 02:00:00")}));
}

TEST(ScheduleTest, WithoutPersistenceThePowerCutLosesTheRuns) {
  UtcZone utc;
  testing::TempDir dir;
  StampStore stamps(dir.path());
  TestClock clock(At("2026-12-04 01:00:00"));
  JobSchedule schedule = Make("Mon..Fri 02:00", false);
  std::vector<int64_t> starts =
      Simulate(schedule, &clock, &stamps, At("2026-12-12 00:00:00"), At("2026-12-07 01:00:00"),
               At("2026-12-09 09:00:00"), 20 * 60 * kSec);
  EXPECT_EQ(starts, (std::vector<int64_t>{At("2026-12-04 02:00:00"), At("2026-12-10 02:00:00"),
                                          At("2026-12-11 02:00:00")}));
}

TEST(ScheduleTest, ARunLongerThanThePeriodDoesNotOverlapOrQueue) {
  UtcZone utc;
  testing::TempDir dir;
  StampStore stamps(dir.path());
  TestClock clock(At("2026-12-04 10:00:00"));
  JobSchedule schedule = Make("*:0/15", true);
  // Each run takes 40 minutes: the 10:30 and 10:45 elapses pass during the 10:15 run.
  std::vector<int64_t> starts = Simulate(schedule, &clock, &stamps, At("2026-12-04 12:00:00"),
                                         INT64_MAX, INT64_MAX, 40 * 60 * kSec);
  EXPECT_EQ(starts, (std::vector<int64_t>{At("2026-12-04 10:15:00"), At("2026-12-04 11:00:00"),
                                          At("2026-12-04 11:45:00")}));
}

TEST(ScheduleTest, RandomizedDelayIsAFixedOffsetPerJobAndSeed) {
  UtcZone utc;
  const std::chrono::seconds delay(15 * 60);
  std::set<int64_t> offsets;
  for (const char* name : {"a", "b", "c", "d", "e", "db", "web"}) {
    std::chrono::microseconds offset = FixedRandomDelay(name, "seed", delay);
    EXPECT_GE(offset.count(), 0);
    EXPECT_LT(offset, delay);
    EXPECT_EQ(offset, FixedRandomDelay(name, "seed", delay)) << "stable across calls";
    offsets.insert(offset.count());
  }
  EXPECT_GE(offsets.size(), 6u) << "offsets spread across jobs";
  EXPECT_NE(FixedRandomDelay("db", "machine-1", delay), FixedRandomDelay("db", "machine-2", delay));
  EXPECT_EQ(FixedRandomDelay("db", "x", std::chrono::seconds(0)).count(), 0);

  JobSchedule schedule = Make("daily", true, delay, "db");
  EXPECT_EQ(schedule.offset(), FixedRandomDelay("db", "machine-id", delay));
  ScheduleState state;
  state.agent_start_us = At("2026-12-04 10:00:00");
  state.last_start_us = At("2026-12-04 00:03:00");
  std::optional<DueTime> due = schedule.NextDue(state.agent_start_us, state);
  ASSERT_TRUE(due);
  EXPECT_EQ(due->elapse_us, At("2026-12-05 00:00:00"));
  EXPECT_EQ(due->at_us, At("2026-12-05 00:00:00") + schedule.offset().count());
  // A catch-up is not delayed.
  state.last_start_us = At("2026-12-03 00:03:00");
  due = schedule.NextDue(state.agent_start_us, state);
  ASSERT_TRUE(due);
  EXPECT_TRUE(due->catch_up);
  EXPECT_EQ(due->at_us, state.agent_start_us);
}

TEST(ScheduleTest, StampsAreStoredAtomicallyAndReadBack) {
  testing::TempDir dir;
  StampStore stamps(dir.path() + "/state");
  ASSERT_EQ(mkdir((dir.path() + "/state").c_str(), 0755), 0);
  Result<std::optional<int64_t>> none = stamps.Load("db");
  ASSERT_TRUE(none.ok()) << none.status().message();
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE(stamps.Store("db", 1796378400123456).ok());
  Result<std::optional<int64_t>> one = stamps.Load("db");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(**one, 1796378400123456);
  ASSERT_TRUE(stamps.Store("db", 1796378500000000).ok());
  EXPECT_EQ(stamps.Load("db")->value(), 1796378500000000);
  EXPECT_EQ(testing::ReadAll(stamps.PathOf("db")), "1796378500000000\n");
  EXPECT_EQ(testing::ListDir(dir.path() + "/state/schedule"),
            std::vector<std::string>{"db.last-start"});
  // Another job's stamp is its own.
  EXPECT_FALSE(stamps.Load("web")->has_value());

  testing::WriteFile(stamps.PathOf("db"), "yesterday\n");
  Result<std::optional<int64_t>> garbage = stamps.Load("db");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.status().message().find(stamps.PathOf("db")), std::string::npos)
      << garbage.status().message();

  StampStore nowhere(dir.path() + "/missing/state");
  Status refused = nowhere.Store("db", 1);
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("missing/state/schedule"), std::string::npos)
      << refused.message();
}

TEST(ScheduleTest, SystemClockIsTheWallClock) {
  SystemClock clock;
  const int64_t before = static_cast<int64_t>(time(nullptr)) * kSec;
  const int64_t now = clock.NowUs();
  EXPECT_GE(now, before);
  EXPECT_LE(now, before + 5 * kSec);
}

}  // namespace
}  // namespace hotsnap
