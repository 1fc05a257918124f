// The agent's Prometheus metrics: per-job state rendered in the text exposition format
// 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/), written for
// node_exporter's textfile collector and served on a local /metrics (daemon/metrics_server.h).
//
// Names follow the Prometheus conventions: the `hotsnap_` prefix, base units in the name
// (`_seconds`, `_bytes`), `_total` on counters, `_timestamp_seconds` on Unix times. Every
// per-job series carries the label job="NAME" (the job's name from the config, escaped).
// Timestamps are Unix seconds; byte counts are bytes (never sectors).
//
//   hotsnap_agent_info{version}                       gauge, always 1
//   hotsnap_agent_start_timestamp_seconds             gauge
//   hotsnap_agent_jobs                                gauge, jobs configured
//   hotsnap_job_running{job}                          gauge 0/1
//   hotsnap_job_runs_total{job,result}                counter, result="success"|"failure"
//   hotsnap_job_last_success_timestamp_seconds{job}   gauge, 0 if the job never succeeded
//   hotsnap_job_last_start_timestamp_seconds{job}     gauge, only once the job has started
//   hotsnap_job_last_end_timestamp_seconds{job}       gauge  | only once a run has
//   hotsnap_job_last_duration_seconds{job}            gauge  | finished: the last
//   hotsnap_job_last_exit_code{job}                   gauge  | finished run's values
//   hotsnap_job_last_read_bytes{job}                  gauge  |
//   hotsnap_job_last_written_bytes{job}               gauge  |
//   hotsnap_job_read_bytes_total{job}                 counter, since the agent started
//   hotsnap_job_written_bytes_total{job}              counter, since the agent started
//   hotsnap_job_change_log_valid{job}                 gauge 0/1
//
// A never-succeeded job reports last success 0, so an alert on
// `time() - hotsnap_job_last_success_timestamp_seconds > 86400` fires for it too. Note that
// Prometheus renames a scraped `job` label to `exported_job` unless the scrape config sets
// honor_labels: true (the `job` label of the scrape target wins otherwise).
#ifndef HOTSNAP_DAEMON_METRICS_H_
#define HOTSNAP_DAEMON_METRICS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

// One job's state as the agent knows it. All times are Unix seconds (0: never).
struct JobMetrics {
  std::string name;  // any UTF-8 string; escaped on output
  bool running = false;
  uint64_t runs_succeeded = 0;  // since the agent started
  uint64_t runs_failed = 0;
  int64_t last_success_s = 0;  // end of the last successful run; 0: never
  int64_t last_start_s = 0;    // start of the last (or current) run; 0: never started
  // The last finished run; last_end_s == 0 means none finished yet and the fields below
  // (except the totals) are not rendered.
  int64_t last_end_s = 0;
  double last_duration_s = 0;
  int last_exit_code = 0;           // as `hotsnap backup` would exit (cli/exit_codes.h)
  uint64_t last_read_bytes = 0;     // bytes read from the sources
  uint64_t last_written_bytes = 0;  // image bytes written
  uint64_t read_bytes_total = 0;    // since the agent started, over all runs
  uint64_t written_bytes_total = 0;
  // 1 if the job's change log is valid, so the next run can be a delta from it.
  bool change_log_valid = false;
};

struct AgentMetrics {
  std::string version;  // e.g. "0.1.0"
  int64_t start_s = 0;  // when the agent started, Unix seconds
};

// The text exposition format (Content-Type "text/plain; version=0.0.4; charset=utf-8"),
// HELP and TYPE lines first for each metric family, jobs in the order given. Passes
// `promtool check metrics` (tests/metrics_test.cc runs it). Jobs with the same name are a
// caller bug: their series would clash; the config forbids it.
std::string RenderPrometheus(const std::vector<JobMetrics>& jobs, const AgentMetrics& agent);

// A label value as the text format wants it: backslash, double quote and newline escaped,
// invalid UTF-8 replaced by U+FFFD (the format is UTF-8).
std::string EscapeLabelValue(const std::string& value);

// Replaces `path` atomically with `text`, for node_exporter's textfile collector (which
// reads only *.prom files): writes ".NAME.hotsnap-PID.tmp" in the same directory (a name
// io/stale_temp_files.h cleans up after a crash, and that the collector ignores), fsyncs
// it, makes it mode 0644 (node_exporter does not run as root), renames it over `path` and
// fsyncs the directory. A reader sees the old file or the new one, never a part. kTarget
// on failure, with the temporary file removed. The temporary name is one per process and
// path: calls for the same path must not run concurrently (the agent writes from its loop).
Status WriteTextfile(const std::string& path, const std::string& text);

}  // namespace hotsnap

#endif  // HOTSNAP_DAEMON_METRICS_H_
