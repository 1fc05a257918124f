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
// The agent's runner: each source backed up into the job's repository (repo/repository.h:
// a delta on the source's newest image, or a full one every `full_every` deltas), the change
// keeper arming, feeding and recording each backup; then, if the job has a retention policy,
// the repository pruned by it (repo/prune.h). Sources are backed up one after another.
JobRunner RepositoryJobRunner();

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
