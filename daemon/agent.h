// Agent: the daemon of `hotsnap agent run` — one event loop that runs the configured jobs on
// their schedules and on request, keeps each source's change log between runs
// (daemon/change_keeper.h), answers the control socket (daemon/control_socket.h) and speaks
// systemd's notify protocol.
//
//   start    the cleanup of what dead runs left (temporary files .NAME.hotsnap-PID.tmp in the
//            jobs' repositories, LVM snapshots of dead runs as `hotsnap cleanup`); the kept change
//            logs loaded (each discarded one's reason logged, and reported by that source's next
//            run); the control socket bound
//   loop     poll on: a signalfd (SIGTERM, SIGINT: stop; SIGHUP: reload the configuration),
//            a timerfd armed for the next due job, an eventfd jobs signal on completion, and
//            the control socket; sd_notify READY=1 once, WATCHDOG=1 every half WATCHDOG_USEC,
//            STATUS= on every change; the change logs persisted every minute
//   stop     STOPPING=1; running jobs asked to stop (their backups end with kInterrupted and
//            clean up: nothing partial is ever under a final name) and joined; the change logs
//            persisted with the trackers stopped
//
// Metrics (daemon/metrics.h): AgentConfig::metrics_textfile is rewritten at start and after
// every run; AgentConfig::metrics_listen serves /metrics from the loop.
// Each run pings the job's health_check_url: /start before, the URL itself after a success,
// /fail after a failure (PingHealthCheck). Messages go to the journal with the job's name in
// the JOB field under systemd (JOURNAL_STREAM set), else to stderr.
//
// Jobs run in threads of the agent's process, one run at a time per job name: a trigger while
// that job runs is refused ("already running") and logged. A kill -9 of the agent is safe:
// an image is published by an atomic rename, and the next start removes the temporary files
// of dead runs; a change log not persisted since the last write is discarded at the next start
// because the device's write counters moved.
//
// Thread-safety: Run() on one thread; RequestStop() and TriggerJob() from any.
#ifndef HOTSNAP_DAEMON_AGENT_H_
#define HOTSNAP_DAEMON_AGENT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "agent/backup_job.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "daemon/change_keeper.h"
#include "daemon/config.h"
#include "daemon/control_socket.h"
#include "daemon/job_runner.h"
#include "daemon/metrics_server.h"
#include "daemon/schedule.h"

namespace hotsnap {

// When `job` is next due, judged at `now_us` (at or before it: at once); nullopt: never.
using NextRunFn = std::function<std::optional<int64_t>(const JobConfig& job, int64_t after_us)>;

struct AgentOptions {
  AgentConfig config;
  std::function<Result<AgentConfig>()> reload;  // SIGHUP; null: reload refused with a log line
  JobRunner runner;                             // default: RepositoryJobRunner()
  // Default: the job's calendar event through daemon/schedule.h (JobSchedule: catch-up of a
  // persistent job, the fixed randomized delay), its last start from the StampStore of
  // STATE_DIR, which each run's start updates.
  NextRunFn next_run;
  std::string schedule_seed;   // the randomized delays' seed (the machine id)
  Clock* clock = nullptr;      // default: a SystemClock
  bool handle_signals = true;  // block SIGTERM/SIGINT/SIGHUP and read them with a signalfd
  // The exit code `hotsnap backup` would give for a run's error (the metrics' last exit code);
  // the CLI passes cli/exit_codes.h's. Default: 1.
  std::function<int(const Status&)> exit_code_for;
  ChangeKeeperOptions keeper;  // state_dir filled from the config when empty
};

class Agent {
 public:
  // The start steps (see the header comment). Blocks the signals in the calling thread (and
  // so in every job thread started later) when options.handle_signals.
  static Result<std::unique_ptr<Agent>> Start(AgentOptions options);
  ~Agent();  // stops and joins what still runs
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // The loop, until SIGTERM/SIGINT or RequestStop(); then the stop steps.
  Status Run();
  void RequestStop();

  // "started", or why not (kBusy "already running", kUsage no such job).
  Status TriggerJob(const std::string& name);
  // The control socket's answers.
  nlohmann::json Answer(const nlohmann::json& request);
  nlohmann::json StatusJson();
  // The Prometheus text of daemon/metrics.h: what /metrics serves and the textfile holds.
  std::string MetricsText();

 private:
  struct LastRun {
    bool ok = false;
    std::string message;  // the error, or a summary of the images made
    int64_t started_us = 0;
    int64_t finished_us = 0;
    int exit_code = 0;
    std::vector<BackupReport> reports;
  };
  struct JobState {
    JobConfig config;
    bool running = false;
    int64_t started_us = 0;
    std::optional<int64_t> next_us;
    std::optional<LastRun> last;
    std::thread thread;
    bool done = false;  // the thread finished; Reap() joins it
    std::optional<LastRun> result;
    // For the metrics (daemon/metrics.h), since the agent started.
    uint64_t runs_succeeded = 0, runs_failed = 0, read_bytes_total = 0, written_bytes_total = 0;
    int64_t last_success_us = 0;
  };

  explicit Agent(AgentOptions options);
  Status StartJobLocked(JobState* job, const std::string& why);
  void Reap();
  void WriteMetricsLocked();  // the textfile, if configured
  std::string MetricsTextLocked();
  void Schedule();  // next_us of every job, and the timer
  void RunDue();
  void Reload();
  void Log(int priority, const std::string& job, const std::string& message);
  void Notify(const std::string& state);
  std::string Summary();

  AgentOptions options_;
  // options_.next_run, else the schedule (see AgentOptions::next_run); `after_due`: right
  // after a due time was handled.
  std::optional<int64_t> NextRun(const JobConfig& job, int64_t now_us, bool after_due);

  Clock* clock_;
  int64_t started_us_ = 0;
  std::unique_ptr<ChangeKeeper> keeper_;
  std::unique_ptr<ControlServer> control_;
  std::optional<MetricsServer> metrics_;  // AgentConfig::metrics_listen
  UniqueFd signal_fd_, timer_fd_, wake_fd_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::map<std::string, JobState> jobs_;
};

}  // namespace hotsnap

#endif  // HOTSNAP_DAEMON_AGENT_H_
