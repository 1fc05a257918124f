// toml++ parses; this file walks the tree and turns every node into a field, or into an error
// that names the file, the line, the job and the key. toml++ reports syntax errors by throwing
// toml::parse_error: the one place it can throw is caught here and becomes a Status.
#include "daemon/config.h"

#include <toml++/toml.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "agent/snapshot_mode.h"
#include "daemon/time_span.h"

namespace hotsnap {
namespace {

const char* TypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date or time";
  }
}

int LineOf(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

// Walks one file; the first error wins.
class ConfigReader {
 public:
  ConfigReader(std::string path, const ScheduleValidator& validate_schedule)
      : path_(std::move(path)), validate_schedule_(validate_schedule) {}

  Result<AgentConfig> Read(const std::string& text) {
    toml::table root;
    try {
      root = toml::parse(text, path_);
    } catch (const toml::parse_error& error) {
      return Status(Code::kUsage, path_ + ":" + std::to_string(error.source().begin.line) + ": " +
                                      std::string(error.description()));
    }
    AgentConfig config;
    config.path = path_;
    for (auto&& [key, node] : root) {
      const std::string name(key.str());
      if (name == "agent") {
        HOTSNAP_RETURN_IF_ERROR(ReadAgent(node, &config));
      } else if (name == "job") {
        HOTSNAP_RETURN_IF_ERROR(ReadJobs(node, &config));
      } else {
        return Error(LineOf(node), "", name, "unknown key (expected [agent] or [[job]])");
      }
    }
    return config;
  }

 private:
  // "<file>:<line>: job '<job>': <key>: <message>"
  Status Error(int line, const std::string& job, const std::string& key,
               const std::string& message) const {
    std::string text = path_ + ":" + std::to_string(line) + ": ";
    if (!job.empty()) text += "job '" + job + "': ";
    if (!key.empty()) text += key + ": ";
    return Status(Code::kUsage, text + message);
  }
  Status TypeError(const toml::node& node, const std::string& job, const std::string& key,
                   const char* expected) const {
    return Error(LineOf(node), job, key,
                 std::string("expected ") + expected + ", found " + TypeName(node));
  }

  Status GetString(const toml::node& node, const std::string& job, const std::string& key,
                   std::string* out) const {
    const auto* value = node.as_string();
    if (value == nullptr) return TypeError(node, job, key, "a string");
    *out = value->get();
    return Status::Ok();
  }
  Status GetBool(const toml::node& node, const std::string& job, const std::string& key,
                 bool* out) const {
    const auto* value = node.as_boolean();
    if (value == nullptr) return TypeError(node, job, key, "true or false");
    *out = value->get();
    return Status::Ok();
  }
  Status GetInt(const toml::node& node, const std::string& job, const std::string& key, int64_t min,
                int64_t max, int64_t* out) const {
    const auto* value = node.as_integer();
    if (value == nullptr) return TypeError(node, job, key, "an integer");
    if (value->get() < min || value->get() > max) {
      return Error(LineOf(node), job, key,
                   "must be between " + std::to_string(min) + " and " + std::to_string(max) +
                       ", found " + std::to_string(value->get()));
    }
    *out = value->get();
    return Status::Ok();
  }
  Status GetStrings(const toml::node& node, const std::string& job, const std::string& key,
                    std::vector<std::string>* out) const {
    const auto* array = node.as_array();
    if (array == nullptr) return TypeError(node, job, key, "an array of strings");
    out->clear();
    for (const toml::node& element : *array) {
      const auto* value = element.as_string();
      if (value == nullptr) return TypeError(element, job, key, "an array of strings");
      out->push_back(value->get());
    }
    return Status::Ok();
  }
  // A systemd time span ("15min") or a number of seconds.
  Status GetSpan(const toml::node& node, const std::string& job, const std::string& key,
                 std::chrono::microseconds* out) const {
    if (const auto* integer = node.as_integer()) {
      if (integer->get() < 0 || integer->get() > int64_t{1} << 40) {
        return Error(LineOf(node), job, key, "out of range");
      }
      *out = std::chrono::seconds(integer->get());
      return Status::Ok();
    }
    if (const auto* number = node.as_floating_point()) {
      if (!(number->get() >= 0 && number->get() < 1e12)) {
        return Error(LineOf(node), job, key, "out of range");
      }
      *out = std::chrono::microseconds(std::llround(number->get() * 1e6));
      return Status::Ok();
    }
    const auto* text = node.as_string();
    if (text == nullptr) return TypeError(node, job, key, "a time span (\"15min\") or seconds");
    Result<std::chrono::microseconds> span = ParseTimeSpan(text->get());
    if (!span.ok()) return Error(LineOf(node), job, key, span.status().message());
    *out = *span;
    return Status::Ok();
  }

  Status ReadAgent(const toml::node& node, AgentConfig* config) {
    const toml::table* table = node.as_table();
    if (table == nullptr) return TypeError(node, "", "agent", "a table ([agent])");
    for (auto&& [key, value] : *table) {
      const std::string name(key.str());
      const std::string where = "agent." + name;
      if (name == "state_dir") {
        HOTSNAP_RETURN_IF_ERROR(GetString(value, "", where, &config->state_dir));
        HOTSNAP_RETURN_IF_ERROR(Absolute(value, where, config->state_dir));
      } else if (name == "socket") {
        HOTSNAP_RETURN_IF_ERROR(GetString(value, "", where, &config->socket_path));
        HOTSNAP_RETURN_IF_ERROR(Absolute(value, where, config->socket_path));
      } else if (name == "metrics_textfile") {
        HOTSNAP_RETURN_IF_ERROR(GetString(value, "", where, &config->metrics_textfile));
        if (!config->metrics_textfile.empty()) {
          HOTSNAP_RETURN_IF_ERROR(Absolute(value, where, config->metrics_textfile));
        }
      } else if (name == "metrics_listen") {
        HOTSNAP_RETURN_IF_ERROR(GetString(value, "", where, &config->metrics_listen));
        HOTSNAP_RETURN_IF_ERROR(CheckListen(value, where, config->metrics_listen));
      } else {
        return Error(LineOf(value), "", where,
                     "unknown key (expected state_dir, socket, metrics_textfile, "
                     "metrics_listen)");
      }
    }
    return Status::Ok();
  }

  Status Absolute(const toml::node& node, const std::string& key, const std::string& path) {
    if (path.empty() || path[0] != '/') {
      return Error(LineOf(node), "", key, "expected an absolute path, found \"" + path + "\"");
    }
    return Status::Ok();
  }

  // "HOST:PORT" or "[V6]:PORT"; "" is off.
  Status CheckListen(const toml::node& node, const std::string& key, const std::string& listen) {
    if (listen.empty()) return Status::Ok();
    size_t colon = listen.rfind(':');
    bool ok = colon != std::string::npos && colon > 0 && colon + 1 < listen.size();
    if (ok) {
      std::string port = listen.substr(colon + 1);
      ok = port.size() <= 5 && port.find_first_not_of("0123456789") == std::string::npos &&
           std::stoi(port) > 0 && std::stoi(port) < 65536;
    }
    if (!ok) {
      return Error(LineOf(node), "", key,
                   "expected HOST:PORT (e.g. \"127.0.0.1:9977\"), found \"" + listen + "\"");
    }
    return Status::Ok();
  }

  Status ReadJobs(const toml::node& node, AgentConfig* config) {
    if (const toml::array* array = node.as_array()) {  // [[job]]
      for (const toml::node& element : *array) {
        const toml::table* table = element.as_table();
        if (table == nullptr) return TypeError(element, "", "job", "[[job]] tables");
        HOTSNAP_RETURN_IF_ERROR(ReadJob(*table, "", config));
      }
      return Status::Ok();
    }
    if (const toml::table* jobs = node.as_table()) {  // [job.NAME]
      for (auto&& [key, element] : *jobs) {
        const toml::table* table = element.as_table();
        if (table == nullptr) {
          return Error(LineOf(element), "", "job." + std::string(key.str()),
                       "expected a [job.NAME] table (or use [[job]] tables), found " +
                           std::string(TypeName(element)));
        }
        HOTSNAP_RETURN_IF_ERROR(ReadJob(*table, std::string(key.str()), config));
      }
      return Status::Ok();
    }
    return TypeError(node, "", "job", "[[job]] tables");
  }

  Status ReadKeep(const toml::table& table, const std::string& job, RetentionPolicy* keep) {
    for (auto&& [key, value] : table) {
      const std::string name(key.str());
      int* field = KeepField("keep_" + name, keep);
      if (field == nullptr) {
        return Error(LineOf(value), job, "keep." + name,
                     "unknown key (expected last, hourly, daily, weekly, monthly, yearly)");
      }
      int64_t count = 0;
      HOTSNAP_RETURN_IF_ERROR(GetInt(value, job, "keep." + name, 0, 1000000, &count));
      *field = static_cast<int>(count);
    }
    return Status::Ok();
  }

  static int* KeepField(const std::string& key, RetentionPolicy* keep) {
    if (key == "keep_last") return &keep->keep_last;
    if (key == "keep_hourly") return &keep->keep_hourly;
    if (key == "keep_daily") return &keep->keep_daily;
    if (key == "keep_weekly") return &keep->keep_weekly;
    if (key == "keep_monthly") return &keep->keep_monthly;
    if (key == "keep_yearly") return &keep->keep_yearly;
    return nullptr;
  }

  // pre_freeze, while_frozen, post_thaw, hook_timeout, crash_consistent: in the job's table
  // or in its [job.hooks] subtable. Returns false when `name` is none of them.
  bool IsHookKey(const std::string& name) {
    return name == "pre_freeze" || name == "while_frozen" || name == "post_thaw" ||
           name == "hook_timeout" || name == "crash_consistent";
  }
  Status ReadHook(const std::string& name, const toml::node& value, const std::string& job,
                  const std::string& where, HookSet* hooks) {
    if (name == "pre_freeze") return GetString(value, job, where, &hooks->pre_freeze);
    if (name == "while_frozen") return GetString(value, job, where, &hooks->while_frozen);
    if (name == "post_thaw") return GetString(value, job, where, &hooks->post_thaw);
    if (name == "crash_consistent") return GetBool(value, job, where, &hooks->crash_consistent_ok);
    std::chrono::microseconds timeout{0};
    HOTSNAP_RETURN_IF_ERROR(GetSpan(value, job, where, &timeout));
    // The same bounds as `backup --hook-timeout`.
    if (timeout <= std::chrono::microseconds(0) || timeout > std::chrono::hours(24)) {
      return Error(LineOf(value), job, where, "must be more than 0 and at most 1 day");
    }
    hooks->timeout = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
    return Status::Ok();
  }

  // "50M" (MB/s, MB = 1,000,000 bytes, as `backup --rate-limit 50`), "512K", "1G", "1.5M",
  // or a number of MB/s; an optional "B" or "B/s" after the suffix.
  Status ReadRateLimit(const toml::node& value, const std::string& job, uint64_t* out) {
    double mb = 0;
    if (const auto* integer = value.as_integer()) {
      mb = static_cast<double>(integer->get());
    } else if (const auto* number = value.as_floating_point()) {
      mb = number->get();
    } else if (const auto* text = value.as_string()) {
      std::string s = text->get();
      size_t end = 0;
      while (end < s.size() &&
             (std::isdigit(static_cast<unsigned char>(s[end])) || s[end] == '.')) {
        ++end;
      }
      std::string suffix = s.substr(end);
      for (const char* tail : {"B/s", "/s", "B"}) {
        std::string t = tail;
        if (suffix.size() >= t.size() &&
            suffix.compare(suffix.size() - t.size(), t.size(), t) == 0) {
          suffix.resize(suffix.size() - t.size());
          break;
        }
      }
      double scale = suffix.empty() ? 1e-6 : 0;  // a bare "1000000" string: bytes per second
      if (suffix == "K" || suffix == "k") scale = 1e-3;
      if (suffix == "M") scale = 1;
      if (suffix == "G") scale = 1e3;
      if (end == 0 || scale == 0 || s.substr(0, end) == "." ||
          std::count(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(end), '.') > 1) {
        return Error(LineOf(value), job, "rate_limit",
                     "expected a rate like \"50M\" (MB/s) or \"512K\", found \"" + s + "\"");
      }
      mb = std::stod(s.substr(0, end)) * scale;
    } else {
      return TypeError(value, job, "rate_limit", "a rate like \"50M\"");
    }
    if (!(mb >= 0.1 && mb <= 1e6)) {
      return Error(LineOf(value), job, "rate_limit",
                   "must be between 0.1 and 1000000 MB/s (like --rate-limit)");
    }
    *out = static_cast<uint64_t>(std::llround(mb * 1e6));
    return Status::Ok();
  }

  struct SeenKeys {
    bool sources = false, repository = false, schedule = false;
    bool keep_keys = false, keep_table = false;
  };

  // One key of a job's table (not "name").
  Status ReadJobKey(const std::string& name, const toml::node& value, JobConfig* job,
                    SeenKeys* seen) {
    const std::string& n = job->name;
    if (name == "sources") {
      seen->sources = true;
      if (value.is_string()) {
        job->sources = {value.as_string()->get()};
      } else {
        HOTSNAP_RETURN_IF_ERROR(GetStrings(value, n, name, &job->sources));
      }
      HOTSNAP_RETURN_IF_ERROR(CheckSources(value, n, job->sources));
    } else if (name == "repository") {
      seen->repository = true;
      HOTSNAP_RETURN_IF_ERROR(GetString(value, n, name, &job->repository));
      if (job->repository.empty() ||
          (job->repository[0] != '/' && job->repository.rfind("ssh://", 0) != 0)) {
        return Error(LineOf(value), n, name,
                     "expected an absolute directory or ssh://[user@]host/path, found \"" +
                         job->repository + "\"");
      }
    } else if (name == "schedule") {
      seen->schedule = true;
      HOTSNAP_RETURN_IF_ERROR(GetString(value, n, name, &job->schedule));
      job->schedule_line = LineOf(value);
      if (validate_schedule_) {
        std::string problem = validate_schedule_(job->schedule);
        if (!problem.empty()) return Error(job->schedule_line, n, name, problem);
      }
    } else if (name == "persistent") {
      HOTSNAP_RETURN_IF_ERROR(GetBool(value, n, name, &job->persistent));
    } else if (name == "randomized_delay") {
      std::chrono::microseconds delay{0};
      HOTSNAP_RETURN_IF_ERROR(GetSpan(value, n, name, &delay));
      if (delay > std::chrono::hours(24 * 7)) {
        return Error(LineOf(value), n, name, "at most a week");
      }
      job->randomized_delay = std::chrono::duration_cast<std::chrono::seconds>(delay);
    } else if (int* field = KeepField(name, &job->keep)) {
      seen->keep_keys = true;
      int64_t count = 0;
      HOTSNAP_RETURN_IF_ERROR(GetInt(value, n, name, 0, 1000000, &count));
      *field = static_cast<int>(count);
    } else if (name == "keep") {
      seen->keep_table = true;
      const toml::table* keep = value.as_table();
      if (keep == nullptr) return TypeError(value, n, name, "a table ([job.keep])");
      HOTSNAP_RETURN_IF_ERROR(ReadKeep(*keep, n, &job->keep));
    } else if (name == "full_every") {
      int64_t every = 0;
      HOTSNAP_RETURN_IF_ERROR(GetInt(value, n, name, 0, 100000, &every));
      job->full_every = static_cast<unsigned>(every);
    } else if (IsHookKey(name)) {
      HOTSNAP_RETURN_IF_ERROR(ReadHook(name, value, n, name, &job->hooks));
    } else if (name == "hooks") {
      const toml::table* hooks = value.as_table();
      if (hooks == nullptr) return TypeError(value, n, name, "a table ([job.hooks])");
      for (auto&& [hook_key, hook_value] : *hooks) {
        const std::string hook(hook_key.str());
        if (!IsHookKey(hook)) {
          return Error(LineOf(hook_value), n, "hooks." + hook,
                       "unknown key (expected pre_freeze, while_frozen, post_thaw, "
                       "hook_timeout, crash_consistent)");
        }
        HOTSNAP_RETURN_IF_ERROR(ReadHook(hook, hook_value, n, "hooks." + hook, &job->hooks));
      }
    } else if (name == "snapshot") {
      std::string mode;
      HOTSNAP_RETURN_IF_ERROR(GetString(value, n, name, &mode));
      Result<SnapshotMode> parsed = ParseSnapshotMode(mode);
      if (!parsed.ok()) return Error(LineOf(value), n, name, parsed.status().message());
      job->snapshot = *parsed;
    } else if (name == "level") {
      int64_t level = 0;
      // zstd's range (ZSTD_minCLevel()..ZSTD_maxCLevel() of libzstd 1.5).
      HOTSNAP_RETURN_IF_ERROR(GetInt(value, n, name, -131072, 22, &level));
      job->level = static_cast<int>(level);
    } else if (name == "rate_limit") {
      HOTSNAP_RETURN_IF_ERROR(ReadRateLimit(value, n, &job->rate_limit_bytes_per_s));
    } else if (name == "allow_crash_consistent") {
      HOTSNAP_RETURN_IF_ERROR(GetStrings(value, n, name, &job->allow_crash_consistent));
    } else if (name == "ssh_options") {
      HOTSNAP_RETURN_IF_ERROR(GetStrings(value, n, name, &job->ssh_options));
    } else if (name == "health_check_url") {
      HOTSNAP_RETURN_IF_ERROR(GetString(value, n, name, &job->health_check_url));
      const std::string& url = job->health_check_url;
      if (!url.empty() && url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
        return Error(LineOf(value), n, name,
                     "expected an http:// or https:// URL, found \"" + url + "\"");
      }
    } else {
      return Error(LineOf(value), n, name, "unknown key");
    }
    return Status::Ok();
  }

  Status ReadJob(const toml::table& table, const std::string& table_name, AgentConfig* config) {
    JobConfig job;
    job.line = LineOf(table);
    job.name = table_name;
    // The name first, so that every later message can say which job it is about.
    if (const toml::node* name = table.get("name")) {
      std::string given;
      HOTSNAP_RETURN_IF_ERROR(GetString(*name, table_name, "name", &given));
      if (!table_name.empty() && given != table_name) {
        return Error(LineOf(*name), table_name, "name",
                     "\"" + given + "\" differs from the table's name [job." + table_name + "]");
      }
      job.name = given;
      HOTSNAP_RETURN_IF_ERROR(CheckJobName(*name, job.name));
    }
    if (job.name.empty()) return Error(job.line, "", "name", "missing (every job needs a name)");
    SeenKeys seen;
    for (auto&& [key, value] : table) {
      const std::string name(key.str());
      if (name == "name") continue;
      HOTSNAP_RETURN_IF_ERROR(ReadJobKey(name, value, &job, &seen));
    }
    const std::string& n = job.name;
    if (seen.keep_keys && seen.keep_table) {
      return Error(job.line, n, "keep", "give keep_* keys or a [job.keep] table, not both");
    }
    for (auto [given, key] :
         {std::pair{seen.sources, "sources"}, std::pair{seen.repository, "repository"},
          std::pair{seen.schedule, "schedule"}}) {
      if (!given) return Error(job.line, n, key, "missing (every job needs one)");
    }
    for (const JobConfig& other : config->jobs) {
      if (other.name == job.name) {
        return Error(
            job.line, n, "name",
            "duplicate job name (first defined at line " + std::to_string(other.line) + ")");
      }
    }
    config->jobs.push_back(std::move(job));
    return Status::Ok();
  }

  // A job's name becomes part of file names (stamps, metrics labels): letters, digits, "-_.".
  Status CheckJobName(const toml::node& node, const std::string& name) {
    bool ok = !name.empty() && name.size() <= 64 && name[0] != '.' &&
              std::all_of(name.begin(), name.end(), [](unsigned char c) {
                return std::isalnum(c) || c == '-' || c == '_' || c == '.';
              });
    if (!ok) {
      return Error(LineOf(node), "", "name",
                   "\"" + name + "\": use 1 to 64 letters, digits, '-', '_' or '.' (not first)");
    }
    return Status::Ok();
  }

  Status CheckSources(const toml::node& node, const std::string& job,
                      const std::vector<std::string>& sources) {
    if (sources.empty()) return Error(LineOf(node), job, "sources", "empty");
    std::set<std::string> seen;
    for (const std::string& source : sources) {
      if (source == "machine") {
        if (sources.size() != 1) {
          return Error(LineOf(node), job, "sources",
                       "\"machine\" stands for every disk and cannot be combined with devices");
        }
      } else if (source.empty() || source[0] != '/') {
        return Error(LineOf(node), job, "sources",
                     "expected device paths or \"machine\", found \"" + source + "\"");
      }
      if (!seen.insert(source).second) {
        return Error(LineOf(node), job, "sources", "\"" + source + "\" is given twice");
      }
    }
    return Status::Ok();
  }

  std::string path_;
  const ScheduleValidator& validate_schedule_;
};

}  // namespace

Result<AgentConfig> ParseAgentConfig(const std::string& text, const std::string& path,
                                     const ScheduleValidator& validate_schedule) {
  return ConfigReader(path, validate_schedule).Read(text);
}

Result<AgentConfig> LoadAgentConfig(const std::string& path,
                                    const ScheduleValidator& validate_schedule) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::FromErrno(Code::kUsage, errno, "reading " + path);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::FromErrno(Code::kUsage, errno, "reading " + path);
  return ParseAgentConfig(text.str(), path, validate_schedule);
}

}  // namespace hotsnap
