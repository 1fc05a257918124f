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

namespace hotsnap {
namespace {

// The last image DirectJobRunner made of a source, and how many deltas follow its full one.
struct LastImage {
  std::string image;
  unsigned deltas = 0;
};

std::string LastImagePath(const std::string& state_dir, const std::string& source) {
  return state_dir + "/last/" + ChangeLogFileName(source) + ".json";
}

std::optional<LastImage> ReadLastImage(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    return LastImage{j.at("image").get<std::string>(), j.at("deltas").get<unsigned>()};
  } catch (const std::exception&) {
    return std::nullopt;  // unreadable: the next image is a full one
  }
}

Status WriteLastImage(const std::string& state_dir, const std::string& path,
                      const LastImage& last) {
  for (const std::string& dir : {state_dir, state_dir + "/last"}) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return Status::FromErrno(Code::kTarget, errno, "creating " + dir);
    }
  }
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << nlohmann::json{{"image", last.image}, {"deltas", last.deltas}}.dump() << "\n";
    out.flush();
    if (!out) return Status(Code::kTarget, "writing " + temp);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0)
    return Status::FromErrno(Code::kTarget, errno, "renaming " + temp);
  return Status::Ok();
}

}  // namespace

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

JobRunner DirectJobRunner(const std::string& state_dir) {
  return [state_dir](const JobConfig& job, ChangeKeeper* keeper,
                     const std::function<Status()>& stop) -> Result<std::vector<BackupReport>> {
    if (!IsLocalRepository(job.repository)) {
      return Status(Code::kUnsupported,
                    "job '" + job.name + "': repository " + job.repository +
                        " is not a local directory (only those until repo/ lands)");
    }
    std::vector<BackupReport> reports;
    for (const std::string& source : job.sources) {
      if (source == "machine") {
        return Status(Code::kUnsupported,
                      "job '" + job.name + "': the source \"machine\" is not resolved yet");
      }
      const std::string last_path = LastImagePath(state_dir, source);
      std::optional<LastImage> last = ReadLastImage(last_path);
      struct stat st;
      bool delta = last && job.full_every > 0 && last->deltas < job.full_every &&
                   ::stat(last->image.c_str(), &st) == 0;
      Status armed = keeper->BeforeBackup(source);
      if (!armed.ok())
        Notice("job '" + job.name + "': " + source + ": no change log: " + armed.message());
      // Another job backs this source up now: its log is not ours to use or to advance.
      const bool keep_log = armed.code() != Code::kBusy;
      BackupOptions o;
      o.source = source;
      o.dest = job.repository + "/" + ChangeLogFileName(source) + "-" +
               CompactUtcStamp(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()) +
               ".zst";
      o.base = delta ? last->image : "";
      o.snapshot = job.snapshot;
      o.level = job.level;
      o.hooks = job.hooks;
      o.rate_limit_bytes_per_s = job.rate_limit_bytes_per_s;
      o.allow_crash_consistent = job.allow_crash_consistent;
      o.ssh_options = job.ssh_options;
      o.stop = stop;
      if (keep_log) o.change_log = keeper->SourceFor(source);
      Result<BackupReport> r = RunBackup(o);
      if (keep_log) keeper->AfterBackup(source, r);
      if (!r.ok()) return r.status().Wrap(source);
      HOTSNAP_RETURN_IF_ERROR(
          WriteLastImage(state_dir, last_path, LastImage{o.dest, delta ? last->deltas + 1 : 0}));
      reports.push_back(std::move(r.value()));
    }
    return reports;
  };
}

}  // namespace hotsnap
