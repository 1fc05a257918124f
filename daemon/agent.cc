#include "daemon/agent.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>

#include "base/log.h"
#include "daemon/job_runner.h"
#include "daemon/metrics.h"
#include "io/stale_temp_files.h"
#include "repo/repository.h"
#include "snapshot/lvm_control.h"
#include "snapshot/lvm_lease.h"

namespace hotsnap {
namespace {

constexpr std::chrono::seconds kPersistEvery{60};
constexpr std::chrono::seconds kDrainEvery{1};  // ChangeKeeper::DrainAll: the rings' room

nlohmann::json ReportJson(const BackupReport& r) {
  return {{"source", r.source},
          {"image", r.dest},
          {"image_hash", r.image_hash.Hex()},
          {"base", r.base},
          {"device_bytes", r.device_bytes},
          {"used_bytes", r.used_bytes},
          {"bytes_read", r.bytes_read},
          {"image_bytes", r.image_bytes},
          {"chunks", r.chunks},
          {"changed_chunks", r.changed_chunks},
          {"unchanged_chunks", r.unchanged_chunks},
          {"change_source", r.change_source},
          {"change_reason", r.change_reason},
          {"seconds", r.seconds}};
}

}  // namespace

Agent::Agent(AgentOptions options) : options_(std::move(options)) {
  static SystemClock system_clock;
  clock_ = options_.clock != nullptr ? options_.clock : &system_clock;

  if (!options_.runner) options_.runner = RepositoryJobRunner();
  if (options_.keeper.state_dir.empty()) options_.keeper.state_dir = options_.config.state_dir;
}

Agent::~Agent() {
  stopping_ = true;
  for (auto& [name, job] : jobs_) {
    if (job.thread.joinable()) job.thread.join();
  }
}

Result<std::unique_ptr<Agent>> Agent::Start(AgentOptions options) {
  std::unique_ptr<Agent> a(new Agent(std::move(options)));
  a->started_us_ = a->clock_->NowUs();
  if (a->options_.handle_signals) {
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, sig);
    if (pthread_sigmask(SIG_BLOCK, &set, nullptr) != 0)
      return Status(Code::kInternal, "blocking signals");
    a->signal_fd_ = UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!a->signal_fd_.valid()) return Status::FromErrno(Code::kInternal, errno, "signalfd");
  }
  a->timer_fd_ = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  a->wake_fd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!a->timer_fd_.valid() || !a->wake_fd_.valid())
    return Status::FromErrno(Code::kInternal, errno, "timerfd/eventfd");

  // The state directory (change logs, schedule stamps, the runner's last images).
  const std::string& state = a->options_.config.state_dir;
  if (::mkdir(state.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno(Code::kTarget, errno, "creating the state directory " + state);
  }
  // What dead runs left: their temporary files in the jobs' repositories.
  for (const JobConfig& job : a->options_.config.jobs) {
    if (!IsLocalRepository(job.repository)) continue;
    struct stat st;
    if (::stat(job.repository.c_str(), &st) != 0) continue;
    // The root, and each source's directory, where its images are written (repo/repository.h).
    std::vector<std::string> dirs = {job.repository};
    for (const std::string& source : job.sources)
      if (source != "machine") dirs.push_back(job.repository + "/" + RepoSourceName(source));
    for (const std::string& dir : dirs) {
      if (::stat(dir.c_str(), &st) != 0) continue;
      StaleTempReport stale;
      Status s = RemoveStaleTemporaryFiles(dir, &stale);
      for (const std::string& f : stale.removed) a->Log(5, job.name, "removed " + f);
      if (!s.ok()) a->Log(4, job.name, "cleanup of " + dir + ": " + s.message());
    }
  }
  // LVM snapshots of backups whose process died (a killed agent's job), as `hotsnap cleanup`.
  LvmCleanupReport lvm;
  Status lvm_cleaned = CleanupLvmLeftovers(RealLvmControl(), kDefaultLeaseDir, &lvm);
  for (const std::string& line : lvm.removed) a->Log(5, "", "removed " + line);
  if (!lvm_cleaned.ok()) a->Log(4, "", "cleanup of LVM snapshots: " + lvm_cleaned.message());
  // The change logs kept by the previous agent.
  a->keeper_ = std::make_unique<ChangeKeeper>(a->options_.keeper);
  auto loaded = a->keeper_->Load();
  if (!loaded.ok()) return loaded.status();
  for (const LoadedLog& l : *loaded) {
    a->Log(l.valid ? 6 : 5, "",
           l.valid ? "change log of " + l.source + " taken back (nothing written since it was kept)"
                   : l.reason);
  }
  for (const JobConfig& job : a->options_.config.jobs) a->jobs_[job.name].config = job;
  Agent* self = a.get();
  auto control =
      ControlServer::Listen(a->options_.config.socket_path,
                            [self](const nlohmann::json& req) { return self->Answer(req); });
  if (!control.ok()) return control.status();
  a->control_ = std::move(control.value());
  if (!a->options_.config.metrics_listen.empty()) {
    auto metrics = MetricsServer::Listen(a->options_.config.metrics_listen,
                                         [self] { return self->MetricsText(); });
    if (!metrics.ok())
      return metrics.status().Wrap("metrics_listen " + a->options_.config.metrics_listen);
    a->metrics_.emplace(std::move(metrics.value()));
  }
  {
    std::lock_guard<std::mutex> lock(a->mu_);
    a->WriteMetricsLocked();
  }
  a->Schedule();
  return a;
}

void Agent::Log(int priority, const std::string& job, const std::string& message) {
  const std::string line = job.empty() ? message : "job '" + job + "': " + message;
  if (std::getenv("JOURNAL_STREAM") != nullptr) {
    // Under systemd: one journal entry with the job as a field (journalctl JOB=db).
    if (job.empty()) {
      sd_journal_send("MESSAGE=%s", line.c_str(), "PRIORITY=%d", priority,
                      "SYSLOG_IDENTIFIER=hotsnap", nullptr);
    } else {
      sd_journal_send("MESSAGE=%s", line.c_str(), "PRIORITY=%d", priority, "JOB=%s", job.c_str(),
                      "SYSLOG_IDENTIFIER=hotsnap", nullptr);
    }
    return;
  }
  std::fprintf(stderr, "hotsnap agent: %s\n", line.c_str());
}

void Agent::Notify(const std::string& state) { (void)sd_notify(0, state.c_str()); }

std::string Agent::Summary() {
  int running = 0, failed = 0;
  for (const auto& [name, job] : jobs_) {
    running += job.running;
    failed += job.last && !job.last->ok;
  }
  return std::to_string(jobs_.size()) + " jobs, " + std::to_string(running) + " running, " +
         std::to_string(failed) + " failed at their last run";
}

std::optional<int64_t> Agent::NextRun(const JobConfig& job, int64_t now_us, bool after_due) {
  if (options_.next_run) return options_.next_run(job, now_us);
  auto event = CalendarEvent::Parse(job.schedule);
  if (!event.ok()) return std::nullopt;  // the configuration was checked: not reached
  JobSchedule schedule(*event, job.persistent, job.randomized_delay, job.name,
                       options_.schedule_seed);
  ScheduleState state;
  state.agent_start_us = started_us_;
  auto last = StampStore(options_.config.state_dir).Load(job.name);
  if (last.ok()) {
    state.last_start_us = *last;
  } else {
    Log(4, job.name, last.status().message());
  }
  // Judged right after a due time (started, or skipped while the job ran): the elapses up to
  // now are spent, as systemd skips an elapse while the service still runs.
  if (after_due) state.last_end_us = now_us;
  std::optional<DueTime> due = schedule.NextDue(now_us, state);
  if (!due) return std::nullopt;
  return due->at_us;
}

Status Agent::StartJobLocked(JobState* job, const std::string& why) {
  if (stopping_) return Status(Code::kInterrupted, "the agent is stopping");
  if (job->running) {
    Log(4, job->config.name,
        "not started (" + why + "): already running since " + CompactUtcStamp(job->started_us));
    return Status(Code::kBusy, "job '" + job->config.name + "' is already running");
  }
  if (job->thread.joinable()) job->thread.join();  // a finished run not reaped yet
  job->running = true;
  job->done = false;
  job->started_us = clock_->NowUs();
  Log(6, job->config.name, "started (" + why + ")");
  // The schedule's stamp: the next elapse is judged from this start, across restarts too.
  Status stamped = StampStore(options_.config.state_dir).Store(job->config.name, job->started_us);
  if (!stamped.ok()) Log(4, job->config.name, stamped.message());
  JobConfig config = job->config;
  const std::string name = config.name;
  job->thread = std::thread([this, config, name] {
    LastRun run;
    run.started_us = clock_->NowUs();
    std::function<Status()> stop = [this] {
      return stopping_ ? Status(Code::kInterrupted, "the agent is stopping") : Status::Ok();
    };
    Status pinged = PingHealthCheck(config.health_check_url, "/start", "");
    if (!pinged.ok()) Log(4, name, pinged.message());
    auto r = options_.runner(config, keeper_.get(), stop);
    run.finished_us = clock_->NowUs();
    run.ok = r.ok();
    if (r.ok()) {
      run.reports = std::move(r.value());
      run.message = std::to_string(run.reports.size()) + " image(s) made";
    } else {
      run.message = r.status().message();
      run.exit_code = options_.exit_code_for ? options_.exit_code_for(r.status()) : 1;
    }
    pinged = PingHealthCheck(config.health_check_url, run.ok ? "" : "/fail", run.message);
    if (!pinged.ok()) Log(4, name, pinged.message());
    {
      std::lock_guard<std::mutex> lock(mu_);
      JobState& j = jobs_[name];
      j.result = std::move(run);
      j.done = true;
    }
    uint64_t one = 1;
    (void)!::write(wake_fd_.get(), &one, sizeof(one));
  });
  Notify("STATUS=" + Summary());
  return Status::Ok();
}

Status Agent::TriggerJob(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = jobs_.find(name);
  if (it == jobs_.end())
    return Status(Code::kUsage, "no job '" + name + "' in " + options_.config.path);
  return StartJobLocked(&it->second, "requested");
}

void Agent::Reap() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [name, job] : jobs_) {
    if (!job.done) continue;
    if (job.thread.joinable()) job.thread.join();
    job.done = false;
    job.running = false;
    job.last = std::move(job.result);
    job.result.reset();
    (job.last->ok ? job.runs_succeeded : job.runs_failed)++;
    if (job.last->ok) job.last_success_us = job.last->finished_us;
    for (const BackupReport& r : job.last->reports) {
      job.read_bytes_total += r.bytes_read;
      job.written_bytes_total += r.image_bytes;
    }
    if (job.last->ok) {
      std::string detail;
      for (const BackupReport& r : job.last->reports) {
        detail += "; " + r.source + " -> " + r.dest + " (" + std::to_string(r.bytes_read) +
                  " bytes read" +
                  (r.change_source.empty() ? "" : ", changes by " + r.change_source) + ")";
      }
      Log(6, name, "succeeded: " + job.last->message + detail);
    } else {
      Log(3, name, "failed: " + job.last->message);
    }
  }
  Notify("STATUS=" + Summary());
  WriteMetricsLocked();
}

void Agent::WriteMetricsLocked() {
  if (options_.config.metrics_textfile.empty()) return;
  Status written = WriteTextfile(options_.config.metrics_textfile, MetricsTextLocked());
  if (!written.ok()) Log(4, "", "metrics: " + written.message());
}

std::string Agent::MetricsText() {
  std::lock_guard<std::mutex> lock(mu_);
  return MetricsTextLocked();
}

std::string Agent::MetricsTextLocked() {
  std::vector<JobMetrics> jobs;
  for (const auto& [name, job] : jobs_) {
    JobMetrics m;
    m.name = name;
    m.running = job.running;
    m.runs_succeeded = job.runs_succeeded;
    m.runs_failed = job.runs_failed;
    m.last_success_s = job.last_success_us / 1000000;
    m.last_start_s = (job.running ? job.started_us : job.last ? job.last->started_us : 0) / 1000000;
    if (job.last) {
      m.last_end_s = job.last->finished_us / 1000000;
      m.last_duration_s = static_cast<double>(job.last->finished_us - job.last->started_us) / 1e6;
      m.last_exit_code = job.last->exit_code;
      for (const BackupReport& r : job.last->reports) {
        m.last_read_bytes += r.bytes_read;
        m.last_written_bytes += r.image_bytes;
      }
    }
    m.read_bytes_total = job.read_bytes_total;
    m.written_bytes_total = job.written_bytes_total;
    m.change_log_valid = !job.config.sources.empty();
    for (const std::string& source : job.config.sources) {
      m.change_log_valid = m.change_log_valid && keeper_->HasLog(source);
    }
    jobs.push_back(std::move(m));
  }
  return RenderPrometheus(jobs, AgentMetrics{HOTSNAP_VERSION, started_us_ / 1000000});
}

void Agent::Schedule() {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_->NowUs();
  std::optional<int64_t> first;
  for (auto& [name, job] : jobs_) {
    if (!job.next_us) job.next_us = NextRun(job.config, now, false);
    if (job.next_us && (!first || *job.next_us < *first)) first = job.next_us;
  }
  itimerspec t{};
  if (first) {
    int64_t wait = std::max<int64_t>(*first - now, 1000);
    t.it_value.tv_sec = wait / 1000000;
    t.it_value.tv_nsec = (wait % 1000000) * 1000;
  }
  (void)::timerfd_settime(timer_fd_.get(), 0, &t, nullptr);  // zero disarms
}

void Agent::RunDue() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = clock_->NowUs();
    for (auto& [name, job] : jobs_) {
      if (!job.next_us || *job.next_us > now) continue;
      (void)StartJobLocked(&job, "scheduled");  // refused while running: logged there
      job.next_us = NextRun(job.config, now, true);
    }
  }
  Schedule();
}

void Agent::Reload() {
  if (!options_.reload) {
    Log(4, "", "SIGHUP: no configuration file to reload");
    return;
  }
  auto config = options_.reload();
  if (!config.ok()) {
    Log(3, "", "SIGHUP: the configuration was not reloaded: " + config.status().message());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, JobState> next;
    for (const JobConfig& job : config->jobs) next[job.name].config = job;
    // A running job keeps its thread and state; its new settings apply from its next run.
    for (auto& [name, job] : jobs_) {
      auto it = next.find(name);
      if (it != next.end()) {
        JobConfig c = it->second.config;
        it->second = std::move(job);
        it->second.config = c;
        it->second.next_us.reset();
      } else if (job.running) {
        Log(4, name, "removed from the configuration; the run under way finishes");
        next[name] = std::move(job);
      }
    }
    jobs_ = std::move(next);
    options_.config.jobs = config->jobs;
  }
  Log(6, "", "configuration reloaded: " + std::to_string(config->jobs.size()) + " jobs");
  Schedule();
}

void Agent::RequestStop() {
  stopping_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_.get(), &one, sizeof(one));
}

Status Agent::Run() {
  uint64_t watchdog_us = 0;
  if (sd_watchdog_enabled(0, &watchdog_us) <= 0) watchdog_us = 0;
  using Steady = std::chrono::steady_clock;
  Steady::time_point next_watchdog = Steady::now(), next_persist = Steady::now() + kPersistEvery;
  Steady::time_point next_drain = Steady::now() + kDrainEvery;
  Notify("READY=1\nSTATUS=" + Summary());
  Log(6, "", "started: " + Summary() + ", control socket " + options_.config.socket_path);
  while (!stopping_) {
    Steady::time_point now = Steady::now();
    if (watchdog_us != 0 && now >= next_watchdog) {
      Notify("WATCHDOG=1");
      next_watchdog = now + std::chrono::microseconds(watchdog_us / 2);
    }
    if (now >= next_persist) {
      Status kept = keeper_->Persist();
      if (!kept.ok()) Log(4, "", "keeping the change logs: " + kept.message());
      next_persist = now + kPersistEvery;
    }
    if (now >= next_drain) {
      keeper_->DrainAll();
      next_drain = now + kDrainEvery;
    }
    Steady::time_point wake = std::min(next_persist, next_drain);
    if (watchdog_us != 0) wake = std::min(wake, next_watchdog);
    int timeout_ms = static_cast<int>(
        std::max<int64_t>(
            0, std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count()) +
        1);

    std::vector<pollfd> fds;
    for (int fd : {signal_fd_.get(), timer_fd_.get(), wake_fd_.get()}) {
      if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    }
    for (int fd : control_->fds()) fds.push_back({fd, POLLIN, 0});
    if (metrics_) fds.push_back({metrics_->fd(), POLLIN, 0});
    int n = ::poll(fds.data(), fds.size(), timeout_ms);
    if (n < 0 && errno != EINTR) return Status::FromErrno(Code::kInternal, errno, "poll");
    for (const pollfd& p : fds) {
      if ((p.revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      if (p.fd == signal_fd_.get()) {
        signalfd_siginfo si;
        while (::read(signal_fd_.get(), &si, sizeof(si)) == sizeof(si)) {
          if (si.ssi_signo == SIGHUP) {
            Reload();
          } else {
            Log(6, "",
                std::string("stopping on ") + (si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT"));
            stopping_ = true;
          }
        }
      } else if (p.fd == timer_fd_.get()) {
        uint64_t expirations;
        (void)!::read(timer_fd_.get(), &expirations, sizeof(expirations));
        RunDue();
      } else if (p.fd == wake_fd_.get()) {
        uint64_t count;
        (void)!::read(wake_fd_.get(), &count, sizeof(count));
        Reap();
      } else if (metrics_ && p.fd == metrics_->fd()) {
        Status served = metrics_->HandleReadable();
        if (!served.ok()) Log(4, "", "metrics: " + served.message());
      } else {
        control_->OnReadable(p.fd);
      }
    }
  }

  // Stop: say so, let the running backups end (they see stop() fail and clean up), keep the logs.
  Notify("STOPPING=1\nSTATUS=stopping");
  std::vector<std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [name, job] : jobs_) {
      if (job.thread.joinable()) threads.push_back(std::move(job.thread));
    }
  }
  for (std::thread& t : threads) t.join();
  Reap();
  Status kept = keeper_->PersistAndStop();
  if (!kept.ok()) Log(4, "", "keeping the change logs: " + kept.message());
  control_.reset();
  Log(6, "", "stopped");
  return Status::Ok();
}

nlohmann::json Agent::StatusJson() {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& [name, job] : jobs_) {
    nlohmann::json j = {{"name", name}, {"running", job.running}};
    if (job.running) j["started_utc_us"] = job.started_us;
    j["next_run_utc_us"] = job.next_us ? nlohmann::json(*job.next_us) : nlohmann::json(nullptr);
    if (job.last) {
      nlohmann::json reports = nlohmann::json::array();
      for (const BackupReport& r : job.last->reports) reports.push_back(ReportJson(r));
      j["last"] = {{"ok", job.last->ok},
                   {"message", job.last->message},
                   {"started_utc_us", job.last->started_us},
                   {"finished_utc_us", job.last->finished_us},
                   {"images", reports}};
    } else {
      j["last"] = nullptr;
    }
    jobs.push_back(j);
  }
  return {{"ok", true},
          {"version", HOTSNAP_VERSION},
          {"pid", ::getpid()},
          {"uptime_s", (clock_->NowUs() - started_us_) / 1000000},
          {"config", options_.config.path},
          {"jobs", jobs}};
}

nlohmann::json Agent::Answer(const nlohmann::json& request) {
  const std::string what = request.value("request", std::string());
  if (what == "status") return StatusJson();
  if (what == "job list") {
    nlohmann::json status = StatusJson();
    std::lock_guard<std::mutex> lock(mu_);
    for (nlohmann::json& j : status["jobs"]) {
      const JobConfig& c = jobs_[j["name"].get<std::string>()].config;
      j["sources"] = c.sources;
      j["repository"] = c.repository;
      j["schedule"] = c.schedule;
    }
    return {{"ok", true}, {"jobs", status["jobs"]}};
  }
  if (what == "job run") {
    const std::string name = request.value("job", std::string());
    Status s = TriggerJob(name);
    if (!s.ok()) return {{"ok", false}, {"error", s.message()}, {"code", CodeName(s.code())}};
    return {{"ok", true}, {"job", name}, {"started", true}};
  }
  return {{"ok", false}, {"error", "unknown request '" + what + "' (status, job list, job run)"}};
}

}  // namespace hotsnap
