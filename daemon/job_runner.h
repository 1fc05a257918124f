// How the agent runs one job (daemon/agent.h), and what a run tells the outside world: the
// runner that backs up each source, and the health-check pings around a run.
#ifndef HOTSNAP_DAEMON_JOB_RUNNER_H_
#define HOTSNAP_DAEMON_JOB_RUNNER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agent/backup_job.h"
#include "base/status.h"
#include "daemon/change_keeper.h"
#include "daemon/config.h"

namespace hotsnap {

// Runs one job: every source backed up. `stop` returns an error once the agent stops.
using JobRunner = std::function<Result<std::vector<BackupReport>>(
    const JobConfig& job, ChangeKeeper* keeper, const std::function<Status()>& stop)>;
// The runner until repositories (repo/repository.h) land in the agent: each source's image in
// the job's repository directory as SOURCE-YYYYmmddTHHMMSSZ.zst, a delta on the previous one
// this runner made (remembered in STATE_DIR/last/SOURCE) unless `full_every` deltas follow the
// last full image; the change keeper arms, sources and records each backup.
JobRunner DirectJobRunner(const std::string& state_dir);

// Pings a healthchecks.io-style URL: URL + `suffix` ("/start", "" on success, "/fail"), with
// `body` (the run's summary or error) POSTed when not empty; through the curl binary, 10 s per
// try, 3 retries. "" url: nothing. kTarget when the server did not take it.
Status PingHealthCheck(const std::string& url, const std::string& suffix, const std::string& body);

// A repository that is a local directory (not ssh:// or another URL).
bool IsLocalRepository(const std::string& repo);
// "20261204T193221.064813Z": a UTC time (microseconds since the epoch) for file names and logs.
std::string CompactUtcStamp(int64_t us);

}  // namespace hotsnap

#endif  // HOTSNAP_DAEMON_JOB_RUNNER_H_
