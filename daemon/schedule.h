// Per-job scheduling decisions: when is a job due next? Pure computation over an injected
// clock's time, plus the small persistent state it needs (the last run's start, "stamps").
//
// Semantics, after systemd's timers (systemd.timer(5)):
//  - The next elapse is the calendar event's first elapse after the last run's start; a job
//    that never ran waits for the first elapse after the agent started (not "due at once").
//  - persistent = true (Persistent=true): if an elapse passed while the agent was down (after
//    the last run's start, before the agent started), the job is due at once, one time however
//    many elapses were missed: once that run's start is stored, the next elapse is in the
//    future again. persistent = false: elapses before the agent started are skipped.
//  - An elapse that passes while the job runs is skipped (a job never overlaps itself, and a
//    run that lasted past an elapse does not queue another right behind it), as systemd
//    does when a timer elapses while its service is still active.
//  - randomized_delay (RandomizedDelaySec=) postpones each elapse by a fixed offset in
//    [0, randomized_delay), derived from the job's name and a seed (the agent passes the
//    machine id), like systemd's FixedRandomDelay=true: stable across restarts, spread across
//    machines and jobs. Catch-up runs are not delayed. Keep the delay below the schedule's
//    period: a run that starts late computes its next elapse from its actual start.
//
// Times are microseconds since the epoch (UTC), like CalendarEvent::Next. Thread-safety: a
// JobSchedule is immutable; StampStore calls on different jobs are independent.
#ifndef HOTSNAP_DAEMON_SCHEDULE_H_
#define HOTSNAP_DAEMON_SCHEDULE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "base/status.h"
#include "daemon/calendar.h"

namespace hotsnap {

// The wall clock, behind an interface so that tests drive time by hand.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowUs() const = 0;  // microseconds since the epoch
};

// CLOCK_REALTIME.
class SystemClock : public Clock {
 public:
  int64_t NowUs() const override;
};

// A clock that moves only when told. Thread-safe.
class TestClock : public Clock {
 public:
  explicit TestClock(int64_t now_us) : now_us_(now_us) {}
  int64_t NowUs() const override { return now_us_.load(); }
  void Set(int64_t now_us) { now_us_.store(now_us); }
  void Advance(std::chrono::microseconds by) { now_us_.fetch_add(by.count()); }

 private:
  std::atomic<int64_t> now_us_;
};

// What the scheduler knows about one job at a moment.
struct ScheduleState {
  int64_t agent_start_us = 0;            // when this agent process started
  std::optional<int64_t> last_start_us;  // the last run's start (the stamp); none: never ran
  std::optional<int64_t> last_end_us;    // when that run ended, if it ended in this process
};

struct DueTime {
  int64_t at_us = 0;      // run at this time; at or before the state's "now": run at once
  int64_t elapse_us = 0;  // the calendar elapse it stands for (before the delay)
  bool catch_up = false;  // a persistent job's run missed while the agent was down
};

class JobSchedule {
 public:
  // `seed` spreads the randomized delay (e.g. /etc/machine-id's text); "" is a valid seed.
  JobSchedule(CalendarEvent event, bool persistent, std::chrono::seconds randomized_delay,
              const std::string& job_name, const std::string& seed);

  // The next run, judged at `now_us`; none when the event never elapses again.
  std::optional<DueTime> NextDue(int64_t now_us, const ScheduleState& state) const;

  const CalendarEvent& event() const { return event_; }
  std::chrono::microseconds offset() const { return offset_; }  // the fixed delay

 private:
  CalendarEvent event_;
  bool persistent_;
  std::chrono::microseconds offset_{0};
};

// The fixed offset in [0, delay) for a job: FNV-1a 64 of seed, NUL, job name, modulo delay.
std::chrono::microseconds FixedRandomDelay(const std::string& job_name, const std::string& seed,
                                           std::chrono::microseconds delay);

// Last-start stamps in <state_dir>/schedule/<job>.last-start: the start time in microseconds
// since the epoch, in decimal, one line. Store() writes a temporary file, fsyncs it, renames
// it over the stamp and fsyncs the directory: a crash leaves the old stamp or the new one.
// Job names must be file-name safe (daemon/config.cc enforces that for configured jobs).
class StampStore {
 public:
  explicit StampStore(std::string state_dir) : state_dir_(std::move(state_dir)) {}
  // None when the job never ran (no stamp); kInternal naming the file when it is unreadable
  // or not a stamp.
  Result<std::optional<int64_t>> Load(const std::string& job) const;
  Status Store(const std::string& job, int64_t start_us) const;  // creates schedule/ if needed
  std::string PathOf(const std::string& job) const;

 private:
  std::string state_dir_;
};

}  // namespace hotsnap

#endif  // HOTSNAP_DAEMON_SCHEDULE_H_
