#include "cli/agent_commands.h"

#include <signal.h>
#include <time.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>

#include "agent/snapshot_mode.h"
#include "cli/exit_codes.h"
#include "cli/parse.h"
#include "daemon/agent.h"
#include "daemon/calendar.h"
#include "daemon/config.h"
#include "daemon/control_socket.h"
#include "daemon/schedule.h"
#include "daemon/time_span.h"

namespace po = boost::program_options;

namespace hotsnap {
namespace {

constexpr const char* kDefaultConfig = "/etc/hotsnap/hotsnap.toml";

struct AgentSubcommand {
  const char* name;
  const char* summary;
  Status (*run)(const std::vector<std::string>& args);
};

std::string FormatLocalTime(int64_t us) {
  time_t t = static_cast<time_t>(us / 1000000);
  struct tm tm;
  localtime_r(&t, &tm);
  char buffer[64];
  strftime(buffer, sizeof buffer, "%a %Y-%m-%d %H:%M:%S %Z", &tm);
  return buffer;
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : " ") + item;
  return out;
}

std::string DescribeKeep(const RetentionPolicy& k) {
  if (k.Empty()) return "everything (no pruning)";
  std::string out;
  auto add = [&out](const char* name, int n) {
    if (n > 0) out += (out.empty() ? "" : ", ") + std::string(name) + " " + std::to_string(n);
  };
  add("last", k.keep_last);
  add("hourly", k.keep_hourly);
  add("daily", k.keep_daily);
  add("weekly", k.keep_weekly);
  add("monthly", k.keep_monthly);
  add("yearly", k.keep_yearly);
  return out;
}

// The machine id seeds the jobs' randomized delays (daemon/schedule.h), as the agent does.
std::string MachineId() {
  FILE* f = std::fopen("/etc/machine-id", "re");
  if (f == nullptr) return "";
  char buffer[64] = {};
  if (std::fgets(buffer, sizeof buffer, f) == nullptr) buffer[0] = '\0';
  std::fclose(f);
  std::string id(buffer);
  while (!id.empty() && (id.back() == '\n' || id.back() == ' ')) id.pop_back();
  return id;
}

constexpr char kDefaultSocket[] = "/run/hotsnap/agent.sock";

std::string UtcTime(const nlohmann::json& us) {
  if (!us.is_number()) return "-";
  time_t s = static_cast<time_t>(us.get<int64_t>() / 1000000);
  tm t;
  gmtime_r(&s, &t);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &t);
  return buf;
}

std::string LastResult(const nlohmann::json& job) {
  if (job.value("running", false)) return "running since " + UtcTime(job["started_utc_us"]);
  const nlohmann::json& last = job["last"];
  if (last.is_null()) return "never run";
  return std::string(last["ok"].get<bool>() ? "ok" : "FAILED") + " at " +
         UtcTime(last["finished_utc_us"]) + ": " + last["message"].get<std::string>();
}

// The socket options shared by the client commands, and the request sent.
struct ClientArgs {
  std::string socket = kDefaultSocket;
  bool json = false;
};

void AddClientOptions(po::options_description* d, ClientArgs* c) {
  d->add_options()("socket", po::value<std::string>(&c->socket)->default_value(kDefaultSocket),
                   "the agent's control socket")("json", po::bool_switch(&c->json),
                                                 "print the agent's answer as JSON");
}

Status JobSub(
    const std::vector<std::string>& args, const std::string& group,
    const std::vector<std::pair<std::string, Status (*)(const std::vector<std::string>&)>>& subs) {
  std::string names;
  for (const auto& [name, fn] : subs) names += (names.empty() ? "" : "|") + name;
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::printf("usage: hotsnap %s %s [OPTIONS]\n", group.c_str(), names.c_str());
    return args.empty() ? Status(Code::kUsage, "hotsnap " + group + ": which of " + names + "?")
                        : Status::Ok();
  }
  for (const auto& [name, fn] : subs) {
    if (args[0] == name) return fn(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  return Status(Code::kUsage,
                "hotsnap " + group + ": unknown subcommand '" + args[0] + "' (" + names + ")");
}

Status RunCheckConfig(const std::vector<std::string>& args) {
  po::options_description d("check-config options");
  std::string path;
  d.add_options()("config,c", po::value<std::string>(&path)->default_value(kDefaultConfig),
                  "the configuration file");
  auto p = Parse(args, "hotsnap agent check-config [--config FILE]",
                 "Validate the agent's configuration (default " + std::string(kDefaultConfig) +
                     ") and print each job\n"
                     "with its normalized schedule and next run. Errors name FILE:LINE, the job "
                     "and the key.",
                 d, {});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  Result<AgentConfig> config = LoadAgentConfig(path, CalendarEventError);
  if (!config.ok()) return config.status();

  const int64_t now = SystemClock().NowUs();
  const StampStore stamps(config->state_dir);
  const std::string seed = MachineId();
  std::printf("%s: OK, %zu job%s\n", config->path.c_str(), config->jobs.size(),
              config->jobs.size() == 1 ? "" : "s");
  std::printf("  state_dir:  %s\n  socket:     %s\n", config->state_dir.c_str(),
              config->socket_path.c_str());
  if (!config->metrics_textfile.empty()) {
    std::printf("  metrics:    %s\n", config->metrics_textfile.c_str());
  }
  if (!config->metrics_listen.empty()) {
    std::printf("  metrics on: http://%s/metrics\n", config->metrics_listen.c_str());
  }
  for (const JobConfig& job : config->jobs) {
    Result<CalendarEvent> event = CalendarEvent::Parse(job.schedule);
    if (!event.ok()) return event.status();  // (validated above; kept for safety)
    JobSchedule schedule(*event, job.persistent, job.randomized_delay, job.name, seed);
    ScheduleState state;
    state.agent_start_us = now;
    // The stamp is what the running agent goes by; an unreadable one is shown, not fatal here.
    Result<std::optional<int64_t>> last = stamps.Load(job.name);
    std::string last_text = "never";
    if (last.ok() && last->has_value()) {
      state.last_start_us = **last;
      last_text = FormatLocalTime(**last);
    } else if (!last.ok()) {
      last_text = "unknown (" + last.status().message() + ")";
    }
    std::optional<DueTime> due = schedule.NextDue(now, state);
    std::string next = "never";
    if (due) {
      next = due->at_us <= now
                 ? "now (catching up the run of " + FormatLocalTime(due->elapse_us) + ")"
                 : FormatLocalTime(due->at_us);
    }
    std::printf("\njob %s (line %d)\n", job.name.c_str(), job.line);
    std::printf("  sources:    %s\n", Join(job.sources).c_str());
    std::printf("  repository: %s\n", job.repository.c_str());
    std::printf("  schedule:   %s\n", event->Normalized().c_str());
    std::printf("  next run:   %s\n", next.c_str());
    if (job.randomized_delay.count() > 0) {
      std::printf(
          "  delay:      %s of at most %s\n",
          FormatTimeSpan(std::chrono::duration_cast<std::chrono::seconds>(schedule.offset()))
              .c_str(),
          FormatTimeSpan(job.randomized_delay).c_str());
    }
    std::printf("  last run:   %s\n", last_text.c_str());
    std::printf("  persistent: %s\n", job.persistent ? "yes" : "no");
    std::printf("  keep:       %s\n", DescribeKeep(job.keep).c_str());
    std::printf("  snapshot:   %s, level %d, a full image every %u\n",
                SnapshotModeName(job.snapshot), job.level, job.full_every);
  }
  return Status::Ok();
}

// The table of `hotsnap agent` subcommands.
const std::vector<AgentSubcommand>& AgentSubcommands() {
  static const std::vector<AgentSubcommand> subcommands = {
      {"run", "the daemon: run the jobs on their schedules and on request", RunAgentRunCommand},
      {"status", "what the running agent does: each job's last result and next run",
       RunAgentStatusCommand},
      {"check-config", "validate the configuration and show each job's next run", RunCheckConfig},
  };
  return subcommands;
}

std::string AgentUsage() {
  std::string usage = "usage: hotsnap agent SUBCOMMAND [options]\nsubcommands:\n";
  for (const AgentSubcommand& s : AgentSubcommands()) {
    char line[160];
    std::snprintf(line, sizeof line, "  %-14s %s\n", s.name, s.summary);
    usage += line;
  }
  return usage;
}

}  // namespace

Status RunAgentCommand(const std::vector<std::string>& args) {
  if (args.empty()) return Status(Code::kUsage, "missing agent subcommand\n" + AgentUsage());
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::fputs(AgentUsage().c_str(), stdout);
    return Status::Ok();
  }
  for (const AgentSubcommand& s : AgentSubcommands()) {
    if (args[0] == s.name) return s.run(std::vector<std::string>(args.begin() + 1, args.end()));
  }
  return Status(Code::kUsage, "unknown agent subcommand '" + args[0] + "'\n" + AgentUsage());
}

Status RunJobCommand(const std::vector<std::string>& args) {
  return JobSub(args, "job", {{"list", RunJobListCommand}, {"run", RunJobRunCommand}});
}

Status RunAgentRunCommand(const std::vector<std::string>& args) {
  std::string config_path;
  po::options_description d("agent run options");
  d.add_options()("config", po::value<std::string>(&config_path)->default_value(kDefaultConfig),
                  "the configuration file");
  auto p = Parse(
      args, "hotsnap agent run [--config FILE]",
      "Run the agent: the configured jobs on their schedules and on request (hotsnap job run),\n"
      "a change log per source between runs, the control socket. Stops on SIGTERM; SIGHUP\n"
      "reloads the configuration. Meant to run under systemd (Type=notify).",
      d, {});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  auto config = LoadAgentConfig(config_path, CalendarEventError);
  if (!config.ok()) return config.status();
  AgentOptions o;
  o.config = std::move(config.value());
  o.schedule_seed = MachineId();
  o.exit_code_for = [](const Status& s) { return ExitCodeFor(s, SIGTERM); };
  o.reload = [config_path] { return LoadAgentConfig(config_path, CalendarEventError); };
  auto agent = Agent::Start(std::move(o));
  if (!agent.ok()) return agent.status();
  return (*agent)->Run();
}

Status RunAgentStatusCommand(const std::vector<std::string>& args) {
  ClientArgs c;
  po::options_description d("agent status options");
  AddClientOptions(&d, &c);
  auto p = Parse(
      args, "hotsnap agent status [--socket PATH] [--json]",
      "What the running agent does: its version, uptime, and each job's last result and next run.",
      d, {});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  auto answer = ControlRequest(c.socket, {{"request", "status"}});
  if (!answer.ok()) return answer.status();
  if (c.json) {
    std::printf("%s\n", answer->dump(2).c_str());
    return Status::Ok();
  }
  std::printf("hotsnap agent %s, pid %d, up %llds, config %s\n",
              (*answer)["version"].get<std::string>().c_str(), (*answer)["pid"].get<int>(),
              static_cast<long long>((*answer)["uptime_s"].get<int64_t>()),
              (*answer)["config"].get<std::string>().c_str());
  std::printf("%-16s %-24s %s\n", "JOB", "NEXT RUN", "LAST RESULT");
  for (const nlohmann::json& j : (*answer)["jobs"]) {
    std::printf("%-16s %-24s %s\n", j["name"].get<std::string>().c_str(),
                UtcTime(j["next_run_utc_us"]).c_str(), LastResult(j).c_str());
  }
  return Status::Ok();
}

Status RunJobListCommand(const std::vector<std::string>& args) {
  ClientArgs c;
  po::options_description d("job list options");
  AddClientOptions(&d, &c);
  auto p =
      Parse(args, "hotsnap job list [--socket PATH] [--json]", "The running agent's jobs.", d, {});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  auto answer = ControlRequest(c.socket, {{"request", "job list"}});
  if (!answer.ok()) return answer.status();
  if (c.json) {
    std::printf("%s\n", answer->dump(2).c_str());
    return Status::Ok();
  }
  std::printf("%-16s %-20s %-28s %s\n", "JOB", "SCHEDULE", "REPOSITORY", "SOURCES");
  for (const nlohmann::json& j : (*answer)["jobs"]) {
    std::string sources;
    for (const auto& s : j["sources"])
      sources += (sources.empty() ? "" : " ") + s.get<std::string>();
    std::printf("%-16s %-20s %-28s %s\n", j["name"].get<std::string>().c_str(),
                j["schedule"].get<std::string>().c_str(),
                j["repository"].get<std::string>().c_str(), sources.c_str());
  }
  return Status::Ok();
}

Status RunJobRunCommand(const std::vector<std::string>& args) {
  ClientArgs c;
  po::options_description d("job run options");
  AddClientOptions(&d, &c);
  auto p = Parse(args, "hotsnap job run NAME [--socket PATH] [--json]",
                 "Start a job of the running agent now (refused while it runs). Follow it with\n"
                 "hotsnap agent status.",
                 d, {"NAME"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  const std::string name = p->vm["NAME"].as<std::string>();
  auto answer = ControlRequest(c.socket, {{"request", "job run"}, {"job", name}});
  if (!answer.ok()) return answer.status();
  if (c.json) {
    std::printf("%s\n", answer->dump(2).c_str());
  } else {
    std::printf("job '%s' started\n", name.c_str());
  }
  return Status::Ok();
}

}  // namespace hotsnap
