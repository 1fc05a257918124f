#include "daemon/job_runner.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/log.h"
#include "base/subprocess.h"
#include "repo/prune.h"
#include "repo/repository.h"

namespace hotsnap {

bool IsLocalRepository(const std::string& repo) {
  return !repo.empty() && repo.find("://") == std::string::npos;
}

std::string CompactUtcStamp(int64_t us) {
  time_t s = static_cast<time_t>(us / 1000000);
  tm t;
  gmtime_r(&s, &t);
  char buf[96];  // room for any int the compiler cannot bound
  std::snprintf(buf, sizeof(buf), "%04d%02d%02dT%02d%02d%02d.%06dZ", t.tm_year + 1900, t.tm_mon + 1,
                t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, static_cast<int>(us % 1000000));
  return buf;
}

Status PingHealthCheck(const std::string& url, const std::string& suffix, const std::string& body) {
  if (url.empty()) return Status::Ok();
  std::vector<std::string> argv = {"curl", "-fsS", "-m", "10", "--retry", "3", "-o", "/dev/null"};
  if (!body.empty()) {
    argv.push_back("--data-raw");
    argv.push_back(body.substr(0, 10000));  // healthchecks.io keeps the first 10 KB
  }
  argv.push_back(url + suffix);
  SubprocessOptions o;
  o.timeout = std::chrono::seconds(60);
  auto r = RunSubprocess(argv, o);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return Status(Code::kTarget,
                  "health check " + url + suffix + ": curl exited " + std::to_string(r->exit_code) +
                      (r->err.empty() ? "" : ": " + r->err.substr(0, r->err.find('\n'))));
  }
  return Status::Ok();
}

JobRunner RepositoryJobRunner() {
  return [](const JobConfig& job, ChangeKeeper* keeper,
            const std::function<Status()>& stop) -> Result<std::vector<BackupReport>> {
    if (!IsLocalRepository(job.repository)) {
      return Status(Code::kUnsupported, "job '" + job.name + "': repository " + job.repository +
                                            " is not a local directory (the only kind yet)");
    }
    std::vector<BackupReport> reports;
    for (const std::string& source : job.sources) {
      if (source == "machine") {
        return Status(Code::kUnsupported,
                      "job '" + job.name + "': the source \"machine\" is not resolved yet");
      }
      // The tracker starts before the backup, so the log covers the new image's consistency
      // point; another job backing this source up now keeps its log to itself (kBusy).
      Status armed = keeper->BeforeBackup(source);
      if (!armed.ok())
        Notice("job '" + job.name + "': " + source + ": no change log: " + armed.message());
      const bool keep_log = armed.code() != Code::kBusy;
      RepoBackupRequest request;
      request.repo = job.repository;
      request.full_every = job.full_every;
      BackupOptions& o = request.options;
      o.source = source;
      o.snapshot = job.snapshot;
      o.level = job.level;
      o.hooks = job.hooks;
      o.rate_limit_bytes_per_s = job.rate_limit_bytes_per_s;
      o.allow_crash_consistent = job.allow_crash_consistent;
      o.ssh_options = job.ssh_options;
      o.stop = stop;
      if (keep_log) o.change_log = keeper->SourceFor(source);
      Result<RepoBackupResult> r = BackupIntoRepository(request);
      if (keep_log) {
        Result<BackupReport> report =
            r.ok() ? Result<BackupReport>(r->report) : Result<BackupReport>(r.status());
        keeper->AfterBackup(source, report);
      }
      if (!r.ok()) return r.status().Wrap(source);
      Notice("job '" + job.name + "': " + source + ": " + r->image.file + " (" + r->why + ")");
      reports.push_back(std::move(r->report));
    }
    // Retention, once every source's image is in: a failed prune fails the run (the images
    // stay published), so that it is seen.
    if (!job.keep.Empty()) {
      PruneOptions prune;
      prune.repo = job.repository;
      prune.policy = job.keep;
      Result<PruneReport> pruned = PruneRepository(prune);
      if (!pruned.ok()) return pruned.status().Wrap("job '" + job.name + "': prune");
      for (const SourcePrune& sp : pruned->sources)
        for (const std::string& line : sp.done) Notice("job '" + job.name + "': prune: " + line);
    }
    return reports;
  };
}

}  // namespace hotsnap
