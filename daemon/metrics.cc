#include "daemon/metrics.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <functional>

#include "base/unique_fd.h"

namespace hotsnap {
namespace {

// The label every per-job series carries.
constexpr const char* kJobLabel = "job";

// The length of the valid UTF-8 sequence starting at s[i], or 0 if it is not one
// (overlong forms, surrogates and code points past U+10FFFF are invalid).
size_t Utf8SequenceLength(const std::string& s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b0 = byte(i);
  if (b0 < 0x80) return 1;
  size_t len;
  uint32_t cp;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

std::string FormatDouble(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);  // shortest round trip
  return std::string(buf, end);
}

// Builds the exposition one metric family at a time: HELP and TYPE, then its samples.
class Exposition {
 public:
  void Family(const char* name, const char* type, const char* help) {
    name_ = name;
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;  // constant text: no backslash or newline to escape
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // A sample of the current family; `labels` is already rendered ("" or {a="b"}).
  void Sample(const std::string& labels, const std::string& value) {
    out_ += name_;
    out_ += labels;
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
  const char* name_ = "";
};

std::string JobLabels(const JobMetrics& job, const std::string& extra = "") {
  std::string labels = "{";
  labels += kJobLabel;
  labels += "=\"" + EscapeLabelValue(job.name) + "\"";
  if (!extra.empty()) labels += "," + extra;
  return labels + "}";
}

using JobValue = std::function<std::string(const JobMetrics&)>;

// One per-job family: a sample for each job that `has` accepts (all by default).
void JobFamily(Exposition& e, const std::vector<JobMetrics>& jobs, const char* name,
               const char* type, const char* help, const JobValue& value,
               const std::function<bool(const JobMetrics&)>& has = nullptr) {
  e.Family(name, type, help);
  for (const JobMetrics& job : jobs) {
    if (!has || has(job)) e.Sample(JobLabels(job), value(job));
  }
}

std::string Int(int64_t v) { return std::to_string(v); }
std::string Uint(uint64_t v) { return std::to_string(v); }
bool Started(const JobMetrics& job) { return job.last_start_s != 0; }
bool Finished(const JobMetrics& job) { return job.last_end_s != 0; }

}  // namespace

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size();) {
    size_t len = Utf8SequenceLength(value, i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      ++i;
      continue;
    }
    char c = value[i];
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.append(value, i, len);
    }
    i += len;
  }
  return out;
}

std::string RenderPrometheus(const std::vector<JobMetrics>& jobs, const AgentMetrics& agent) {
  Exposition e;
  e.Family("hotsnap_agent_info", "gauge", "The hotsnap agent's version, as a label; always 1.");
  e.Sample("{version=\"" + EscapeLabelValue(agent.version) + "\"}", "1");
  e.Family("hotsnap_agent_start_timestamp_seconds", "gauge",
           "When the agent started, in seconds since the Unix epoch.");
  e.Sample("", Int(agent.start_s));
  e.Family("hotsnap_agent_jobs", "gauge", "Jobs in the agent's configuration.");
  e.Sample("", Uint(jobs.size()));

  JobFamily(e, jobs, "hotsnap_job_running", "gauge", "1 while a run of the job is in progress.",
            [](const JobMetrics& j) { return Int(j.running ? 1 : 0); });
  e.Family("hotsnap_job_runs_total", "counter",
           "Finished runs of the job since the agent started, by result.");
  for (const JobMetrics& job : jobs) {
    e.Sample(JobLabels(job, "result=\"success\""), Uint(job.runs_succeeded));
    e.Sample(JobLabels(job, "result=\"failure\""), Uint(job.runs_failed));
  }
  JobFamily(e, jobs, "hotsnap_job_last_success_timestamp_seconds", "gauge",
            "End of the job's last successful run, in seconds since the Unix epoch; 0 if none.",
            [](const JobMetrics& j) { return Int(j.last_success_s); });
  JobFamily(
      e, jobs, "hotsnap_job_last_start_timestamp_seconds", "gauge",
      "Start of the job's last or current run, in seconds since the Unix epoch.",
      [](const JobMetrics& j) { return Int(j.last_start_s); }, Started);
  JobFamily(
      e, jobs, "hotsnap_job_last_end_timestamp_seconds", "gauge",
      "End of the job's last finished run, in seconds since the Unix epoch.",
      [](const JobMetrics& j) { return Int(j.last_end_s); }, Finished);
  JobFamily(
      e, jobs, "hotsnap_job_last_duration_seconds", "gauge",
      "How long the job's last finished run took.",
      [](const JobMetrics& j) { return FormatDouble(j.last_duration_s); }, Finished);
  JobFamily(
      e, jobs, "hotsnap_job_last_exit_code", "gauge",
      "Exit code of the job's last finished run, as hotsnap backup would exit (0: success).",
      [](const JobMetrics& j) { return Int(j.last_exit_code); }, Finished);
  JobFamily(
      e, jobs, "hotsnap_job_last_read_bytes", "gauge",
      "Bytes the job's last finished run read from its sources.",
      [](const JobMetrics& j) { return Uint(j.last_read_bytes); }, Finished);
  JobFamily(
      e, jobs, "hotsnap_job_last_written_bytes", "gauge",
      "Image bytes the job's last finished run wrote.",
      [](const JobMetrics& j) { return Uint(j.last_written_bytes); }, Finished);
  JobFamily(e, jobs, "hotsnap_job_read_bytes_total", "counter",
            "Bytes the job's runs read from its sources since the agent started.",
            [](const JobMetrics& j) { return Uint(j.read_bytes_total); });
  JobFamily(e, jobs, "hotsnap_job_written_bytes_total", "counter",
            "Image bytes the job's runs wrote since the agent started.",
            [](const JobMetrics& j) { return Uint(j.written_bytes_total); });
  JobFamily(e, jobs, "hotsnap_job_change_log_valid", "gauge",
            "1 if the job's change log is valid, so its next run can be a delta from it.",
            [](const JobMetrics& j) { return Int(j.change_log_valid ? 1 : 0); });
  return e.Take();
}

Status WriteTextfile(const std::string& path, const std::string& text) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  std::string temp = dir + "/." + base + ".hotsnap-" + std::to_string(getpid()) + ".tmp";
  std::string what = "writing metrics file " + path;

  // A file under our own PID's temporary name is a leftover of this process: replace it.
  unlink(temp.c_str());
  UniqueFd fd(open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return Status::FromErrno(Code::kTarget, errno, what + ": creating " + temp);
  auto fail = [&](const std::string& step) {
    Status status = Status::FromErrno(Code::kTarget, errno, what + ": " + step);
    unlink(temp.c_str());
    return status;
  };
  for (size_t done = 0; done < text.size();) {
    ssize_t n = write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail("writing " + temp);
    done += static_cast<size_t>(n);
  }
  // The umask may have narrowed the mode; the collector's user must be able to read it.
  if (fchmod(fd.get(), 0644) != 0) return fail("chmod " + temp);
  if (fsync(fd.get()) != 0) return fail("fsync " + temp);
  if (close(fd.Release()) != 0) return fail("closing " + temp);
  if (rename(temp.c_str(), path.c_str()) != 0) return fail("renaming " + temp);
  UniqueFd dir_fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd.valid() || fsync(dir_fd.get()) != 0) {
    return Status::FromErrno(Code::kTarget, errno, what + ": fsync " + dir);
  }
  return Status::Ok();
}

}  // namespace hotsnap
