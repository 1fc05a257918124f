#include "daemon/schedule.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>

#include "base/parse_number.h"
#include "base/unique_fd.h"

namespace hotsnap {

int64_t SystemClock::NowUs() const {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

std::chrono::microseconds FixedRandomDelay(const std::string& job_name, const std::string& seed,
                                           std::chrono::microseconds delay) {
  if (delay.count() <= 0) return std::chrono::microseconds(0);
  uint64_t hash = 14695981039346656037ull;
  auto mix = [&hash](unsigned char c) {
    hash ^= c;
    hash *= 1099511628211ull;
  };
  for (unsigned char c : seed) mix(c);
  mix(0);
  for (unsigned char c : job_name) mix(c);
  return std::chrono::microseconds(
      static_cast<int64_t>(hash % static_cast<uint64_t>(delay.count())));
}

JobSchedule::JobSchedule(CalendarEvent event, bool persistent,
                         std::chrono::seconds randomized_delay, const std::string& job_name,
                         const std::string& seed)
    : event_(std::move(event)),
      persistent_(persistent),
      offset_(FixedRandomDelay(job_name, seed, randomized_delay)) {}

std::optional<DueTime> JobSchedule::NextDue(int64_t now_us, const ScheduleState& state) const {
  // Elapses are counted from the last run's start; a job that never ran counts from the
  // agent's start. Elapses during a run are skipped; so are elapses while the agent was down,
  // unless the job is persistent.
  int64_t base = state.last_start_us.value_or(state.agent_start_us);
  if (state.last_end_us) base = std::max(base, *state.last_end_us);
  if (!persistent_) base = std::max(base, state.agent_start_us);
  std::optional<int64_t> elapse = event_.Next(base);
  if (!elapse) return std::nullopt;
  DueTime due;
  due.elapse_us = *elapse;
  if (persistent_ && state.last_start_us && *elapse <= state.agent_start_us) {
    due.catch_up = true;
    due.at_us = now_us;
    return due;
  }
  due.at_us = *elapse + offset_.count();
  return due;
}

std::string StampStore::PathOf(const std::string& job) const {
  return state_dir_ + "/schedule/" + job + ".last-start";
}

Result<std::optional<int64_t>> StampStore::Load(const std::string& job) const {
  const std::string path = PathOf(job);
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return std::optional<int64_t>();
    return Status::FromErrno(Code::kInternal, errno, "reading " + path);
  }
  std::ostringstream text;
  text << in.rdbuf();
  Result<int64_t> start = ParseDecimal<int64_t>(text.str(), path, Code::kInternal);
  if (!start.ok()) return start.status();
  return std::optional<int64_t>(*start);
}

namespace {

Status WriteAll(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(Code::kInternal, errno, "writing " + path);
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

Status StampStore::Store(const std::string& job, int64_t start_us) const {
  const std::string dir = state_dir_ + "/schedule";
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno(Code::kInternal, errno, "creating " + dir);
  }
  const std::string path = PathOf(job);
  const std::string temporary = path + ".tmp";
  {
    UniqueFd fd(open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd.valid()) return Status::FromErrno(Code::kInternal, errno, "creating " + temporary);
    HOTSNAP_RETURN_IF_ERROR(WriteAll(fd.get(), std::to_string(start_us) + "\n", temporary));
    if (fsync(fd.get()) != 0)
      return Status::FromErrno(Code::kInternal, errno, "fsync " + temporary);
  }
  if (rename(temporary.c_str(), path.c_str()) != 0) {
    return Status::FromErrno(Code::kInternal, errno, "renaming " + temporary + " to " + path);
  }
  UniqueFd directory(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!directory.valid() || fsync(directory.get()) != 0) {
    return Status::FromErrno(Code::kInternal, errno, "fsync " + dir);
  }
  return Status::Ok();
}

}  // namespace hotsnap
