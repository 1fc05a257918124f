#include "cli/agent_commands.h"

#include <cstdio>
#include <ctime>
#include <string>

#include "cli/parse.h"
#include "daemon/agent.h"
#include "daemon/config.h"
#include "daemon/control_socket.h"

namespace hotsnap {
namespace {

namespace po = boost::program_options;

constexpr char kDefaultConfig[] = "/etc/hotsnap/hotsnap.toml";
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

Status Sub(
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

}  // namespace

Status RunAgentCommand(const std::vector<std::string>& args) {
  return Sub(args, "agent", {{"run", RunAgentRunCommand}, {"status", RunAgentStatusCommand}});
}

Status RunJobCommand(const std::vector<std::string>& args) {
  return Sub(args, "job", {{"list", RunJobListCommand}, {"run", RunJobRunCommand}});
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
  // The schedule check belongs to daemon/calendar.h; until it is linked here, schedules are
  // checked by `hotsnap agent check-config` and jobs run on request.
  ScheduleValidator no_check = [](const std::string&) { return std::string(); };
  auto config = LoadAgentConfig(config_path, no_check);
  if (!config.ok()) return config.status();
  AgentOptions o;
  o.config = std::move(config.value());
  o.reload = [config_path, no_check] { return LoadAgentConfig(config_path, no_check); };
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
