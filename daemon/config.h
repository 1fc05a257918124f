// The agent's configuration: /etc/hotsnap/hotsnap.toml, parsed with toml++.
//
// One file holds the agent's own settings ([agent]) and its jobs ([[job]] tables, or
// [job.NAME] tables). Every error names the file, the line and the key:
//   "/etc/hotsnap/hotsnap.toml:12: job 'db': schedule: ..."
// Unknown keys are errors (a typo must not silently become a default).
//
// Keys (dist/hotsnap.toml.example shows each): [agent] state_dir, socket (absolute paths),
// metrics_textfile, metrics_listen ("HOST:PORT"). A job: name (letters, digits, "-_.", it
// names stamp files), sources (an array of device paths, or "machine"), repository (absolute,
// or ssh://), schedule (checked by the caller's ScheduleValidator), persistent,
// randomized_delay (a systemd time span, "15min", or seconds, at most a week), keep_last ...
// keep_yearly or a [job.keep] table (last, hourly, daily, weekly, monthly, yearly) but not
// both, full_every, pre_freeze/while_frozen/post_thaw/hook_timeout/crash_consistent (also in a
// [job.hooks] table), snapshot (the --snapshot names), level, rate_limit ("50M" = 50 MB/s,
// "512K", "1G", or a number of MB/s, as --rate-limit), allow_crash_consistent, ssh_options,
// health_check_url (http:// or https://). Required: name, sources, repository, schedule.
// A duplicate job name is an error naming the first one's line.
#ifndef HOTSNAP_DAEMON_CONFIG_H_
#define HOTSNAP_DAEMON_CONFIG_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agent/backup_job.h"
#include "base/status.h"
#include "repo/retention.h"
#include "snapshot/hooks.h"

namespace hotsnap {

struct JobConfig {
  std::string name;
  int line = 0;  // where the job's table starts in the file (for messages)
  // Devices (paths), or the single word "machine": every disk holding a mounted filesystem.
  std::vector<std::string> sources;
  std::string repository;  // a directory, or ssh://[user@]host/path
  std::string schedule;    // a systemd calendar event (daemon/calendar.h), e.g. "daily"
  int schedule_line = 0;
  bool persistent = true;                    // catch up a run missed while the agent was down
  std::chrono::seconds randomized_delay{0};  // like systemd's RandomizedDelaySec
  RetentionPolicy keep;                      // pruned after each successful run; empty: none
  unsigned full_every = 7;                   // a full image after this many deltas
  HookSet hooks;
  // Options of `backup` (same names, same defaults).
  SnapshotMode snapshot = SnapshotMode::kAuto;
  int level = 3;
  uint64_t rate_limit_bytes_per_s = 0;
  std::vector<std::string> allow_crash_consistent;
  std::vector<std::string> ssh_options;
  std::string health_check_url;  // pinged on start (/start), success, failure (/fail); "" none
};

struct AgentConfig {
  std::string path;                            // the file it was read from
  std::string state_dir = "/var/lib/hotsnap";  // change logs, last-run stamps, metrics
  std::string socket_path = "/run/hotsnap/agent.sock";
  std::string metrics_textfile;  // a node_exporter textfile-collector .prom file; "" none
  std::string metrics_listen;    // "127.0.0.1:9977" serves /metrics; "" none
  std::vector<JobConfig> jobs;
};

// Checks a schedule expression; returns an error message, or "" when it is valid.
using ScheduleValidator = std::function<std::string(const std::string&)>;

// Parses `text` (read from `path`, used in messages). Code kUsage on any error.
Result<AgentConfig> ParseAgentConfig(const std::string& text, const std::string& path,
                                     const ScheduleValidator& validate_schedule);
Result<AgentConfig> LoadAgentConfig(const std::string& path,
                                    const ScheduleValidator& validate_schedule);

}  // namespace hotsnap

#endif  // HOTSNAP_DAEMON_CONFIG_H_
