// The agent (daemon/agent.h) with its real parts: the control socket answering status, job list
// and job run; a job backing up a real loop device, its second run a delta driven by the change
// log; a trigger while the job runs refused; a non-root peer refused by SO_PEERCRED; SIGTERM
// in an agent process ending with STOPPING=1 on the notify socket and the logs kept; the
// temporary files of dead runs removed at start.
#include "daemon/agent.h"
#include "repo/repository.h"

#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "daemon/control_socket.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::LoopDevice;
using testing::TempDir;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kChunk = 4 * kMiB;
constexpr uint64_t kDevice = 32 * kMiB;

struct AgentSetup {
  TempDir dir;
  LoopDevice loop{dir.path(), kDevice};
  std::string repo = dir.File("repo"), state = dir.File("state"),
              socket = dir.File("run/agent.sock");
  AgentSetup() {
    testing::FillRegion(loop.device(), 0, kDevice);
    ::mkdir(repo.c_str(), 0700);
  }
  AgentConfig Config() const {
    AgentConfig c;
    c.path = dir.File("hotsnap.toml");
    c.state_dir = state;
    c.socket_path = socket;
    JobConfig j;
    j.name = "disk";
    j.sources = {loop.device()};
    j.repository = repo;
    j.schedule = "daily";
    j.snapshot = SnapshotMode::kNone;
    j.level = 1;
    c.jobs = {j};
    return c;
  }
};

// A gate a job's runner waits at until the test opens it (to hold a run "running").
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> l(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

nlohmann::json Ask(const std::string& socket, const nlohmann::json& request) {
  auto a = ControlRequest(socket, request);
  EXPECT_TRUE(a.ok()) << a.status().message();
  return a.ok() ? *a : nlohmann::json();
}

// Waits for the job's run number `runs` to finish (its "last" changes), by asking the agent.
nlohmann::json WaitForRun(const std::string& socket, int64_t after_finished_us) {
  nlohmann::json last;
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        nlohmann::json s = Ask(socket, {{"request", "status"}});
        if (!s.contains("jobs")) return false;
        last = s["jobs"][0]["last"];
        return !last.is_null() && last["finished_utc_us"].get<int64_t>() > after_finished_us &&
               !s["jobs"][0]["running"].get<bool>();
      },
      120));
  return last;
}

TEST(AgentTest, AnswersOnItsSocketAndRunsJobsOneAtATimeWithAChangeLog) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  AgentSetup s;
  // A temporary file of a dead run (its pid reaped) in the repository.
  pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ::waitpid(dead, nullptr, 0);
  const std::string stale = s.repo + "/.loop.zst.hotsnap-" + std::to_string(dead) + ".tmp";
  testing::WriteFile(stale, "partial");

  Gate gate;
  std::atomic<int> runs{0};
  AgentOptions o;
  o.config = s.Config();
  o.handle_signals = false;
  JobRunner direct = RepositoryJobRunner();
  o.runner = [&](const JobConfig& job, ChangeKeeper* keeper, const std::function<Status()>& stop) {
    if (runs++ == 0) gate.Wait();  // the first run is held until the test lets it go
    return direct(job, keeper, stop);
  };
  auto agent = Agent::Start(std::move(o));
  ASSERT_TRUE(agent.ok()) << agent.status().message();
  EXPECT_FALSE(testing::PathExists(stale)) << "the dead run's temporary file is removed at start";
  struct stat st;
  ASSERT_EQ(::stat(s.socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(s.dir.File("run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  Status ran;
  std::thread loop([&] { ran = (*agent)->Run(); });

  nlohmann::json status = Ask(s.socket, {{"request", "status"}});
  EXPECT_FALSE(status["version"].get<std::string>().empty());
  EXPECT_EQ(status["pid"], ::getpid());
  ASSERT_EQ(status["jobs"].size(), 1u);
  EXPECT_EQ(status["jobs"][0]["name"], "disk");
  EXPECT_TRUE(status["jobs"][0]["last"].is_null());
  nlohmann::json list = Ask(s.socket, {{"request", "job list"}});
  EXPECT_EQ(list["jobs"][0]["repository"], s.repo);

  EXPECT_EQ(Ask(s.socket, {{"request", "job run"}, {"job", "disk"}})["started"], true);
  auto again = ControlRequest(s.socket, {{"request", "job run"}, {"job", "disk"}});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::kBusy);
  EXPECT_NE(again.status().message().find("already running"), std::string::npos)
      << again.status().message();
  EXPECT_TRUE(Ask(s.socket, {{"request", "status"}})["jobs"][0]["running"].get<bool>());
  auto unknown = ControlRequest(s.socket, {{"request", "job run"}, {"job", "nope"}});
  EXPECT_FALSE(unknown.ok());
  gate.Open();
  nlohmann::json first = WaitForRun(s.socket, 0);
  ASSERT_TRUE(first["ok"].get<bool>()) << first.dump();
  EXPECT_EQ(first["images"][0]["bytes_read"], kDevice);

  // A write, and the second run: a delta reading only the written chunk.
  testing::FillRegion(s.loop.device(), 5 * kChunk + 4096, 4096);
  EXPECT_EQ(Ask(s.socket, {{"request", "job run"}, {"job", "disk"}})["started"], true);
  nlohmann::json second = WaitForRun(s.socket, first["finished_utc_us"].get<int64_t>());
  ASSERT_TRUE(second["ok"].get<bool>()) << second.dump();
  EXPECT_EQ(second["images"][0]["change_source"], "change log") << second.dump();
  EXPECT_EQ(second["images"][0]["changed_chunks"], 1);
  EXPECT_EQ(second["images"][0]["bytes_read"], kChunk);
  EXPECT_EQ(runs.load(), 2);

  (*agent)->RequestStop();
  loop.join();
  EXPECT_TRUE(ran.ok()) << ran.message();
  EXPECT_FALSE(testing::PathExists(s.socket)) << "the socket is removed at stop";
  EXPECT_TRUE(
      testing::PathExists(s.state + "/changelog/" + ChangeLogFileName(s.loop.device()) + ".json"));
}

// What a peer running as `nobody` gets from the socket: the first line, or "connect: ERROR".
std::string AskAsNobody(const std::string& socket) {
  int p[2];
  if (::pipe(p) != 0) return "pipe";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    std::string said;
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) {
      said = "setresuid failed";
    } else {
      auto a = ControlRequest(socket, {{"request", "status"}});
      said = a.ok() ? a->dump() : a.status().message();
    }
    (void)!::write(p[1], said.data(), said.size());
    ::_exit(0);
  }
  ::close(p[1]);
  std::string out;
  char buf[512];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof(buf))) > 0;)
    out.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  ::waitpid(pid, nullptr, 0);
  return out;
}

TEST(AgentTest, OnlyRootIsServed) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  AgentSetup s;
  AgentOptions o;
  o.config = s.Config();
  o.handle_signals = false;
  auto agent = Agent::Start(std::move(o));
  ASSERT_TRUE(agent.ok()) << agent.status().message();
  std::thread loop([&] { (void)(*agent)->Run(); });
  // The directory's mode keeps others out before they reach the socket...
  std::string said = AskAsNobody(s.socket);
  EXPECT_NE(said.find("Permission denied"), std::string::npos) << said;
  // ...and with the modes widened by mistake, SO_PEERCRED still does.
  ASSERT_EQ(::chmod(s.dir.File("run").c_str(), 0755), 0);
  ASSERT_EQ(::chmod(s.socket.c_str(), 0666), 0);
  ASSERT_EQ(::chmod(s.dir.path().c_str(), 0755), 0);
  said = AskAsNobody(s.socket);
  EXPECT_NE(said.find("answers only root (uid 65534"), std::string::npos) << said;
  EXPECT_EQ(Ask(s.socket, {{"request", "status"}})["ok"], true) << "root is still served";
  (*agent)->RequestStop();
  loop.join();
}

// The notify socket systemd gives a Type=notify service: a datagram socket; Await() finds the
// next notification (in order) that contains `want`.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    timeval limit{120, 0};  // only against a hang: each message comes as soon as its event
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  }
  ~NotifySocket() { ::close(fd_); }
  bool Await(const std::string& want) {
    char buf[4096];
    size_t found;
    while ((found = all_.find(want, pos_)) == std::string::npos) {
      ssize_t got = ::recv(fd_, buf, sizeof(buf), 0);
      if (got <= 0) return false;
      all_.append(buf, static_cast<size_t>(got));
      all_ += "\n";
    }
    pos_ = found + want.size();
    return true;
  }
  const std::string& all() const { return all_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  std::string all_;
  size_t pos_ = 0;
};

TEST(AgentTest, SigtermStopsTheAgentProcessWithStoppingAndKeepsTheLogs) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  AgentSetup s;
  // The notify socket systemd would give: the agent's sd_notify writes to it.
  NotifySocket notify(s.dir.File("notify.sock"));
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setenv("NOTIFY_SOCKET", notify.path().c_str(), 1);
    AgentOptions o;
    o.config = s.Config();
    auto agent = Agent::Start(std::move(o));
    if (!agent.ok()) ::_exit(2);
    if (!(*agent)->TriggerJob("disk").ok()) ::_exit(3);
    Status ran = (*agent)->Run();
    ::_exit(ran.ok() ? 0 : 1);
  }
  EXPECT_TRUE(notify.Await("READY=1")) << notify.all();
  // The job's run ends (0 running again; only the loop after READY reaps runs) before the stop.
  EXPECT_TRUE(notify.Await("1 jobs, 0 running, 0 failed")) << notify.all();
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  EXPECT_TRUE(notify.Await("STOPPING=1")) << notify.all();
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(
      testing::PathExists(s.state + "/changelog/" + ChangeLogFileName(s.loop.device()) + ".json"));
  EXPECT_FALSE(testing::PathExists(s.socket));
}

TEST(AgentTest, AJobRunsWhenDueAndADueRunWhileItRunsIsSkipped) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  AgentSetup s;
  Gate gate;
  std::atomic<int> runs{0};
  std::atomic<int> asked{0};
  AgentOptions o;
  o.config = s.Config();
  o.handle_signals = false;
  JobRunner direct = RepositoryJobRunner();
  o.runner = [&](const JobConfig& job, ChangeKeeper* keeper, const std::function<Status()>& stop) {
    if (runs++ == 0) gate.Wait();
    return direct(job, keeper, stop);
  };
  // Due 50 ms after the start, and again 50 ms after that (while the first run is held).
  o.next_run = [&](const JobConfig&, int64_t after_us) -> std::optional<int64_t> {
    if (asked++ < 2) return after_us + 50000;
    return std::nullopt;
  };
  auto agent = Agent::Start(std::move(o));
  ASSERT_TRUE(agent.ok()) << agent.status().message();
  std::thread loop([&] { (void)(*agent)->Run(); });
  // The first due time starts the run; the second comes while it is held, and is skipped.
  ASSERT_TRUE(testing::WaitUntil([&] { return asked.load() >= 3; }, 60))
      << "the timer never fired twice";
  // The run's thread reaches the runner in its own time; the agent counts it running at once.
  EXPECT_TRUE(testing::WaitUntil([&] { return runs.load() == 1; }, 60));
  EXPECT_TRUE(Ask(s.socket, {{"request", "status"}})["jobs"][0]["running"].get<bool>());
  gate.Open();
  nlohmann::json last = WaitForRun(s.socket, 0);
  EXPECT_TRUE(last["ok"].get<bool>()) << last.dump();
  EXPECT_EQ(runs.load(), 1) << "the run due while the job ran was skipped, not queued";
  EXPECT_TRUE(Ask(s.socket, {{"request", "status"}})["jobs"][0]["next_run_utc_us"].is_null());
  (*agent)->RequestStop();
  loop.join();
}

// Files in `dir` whose name contains `part`.
std::vector<std::string> FilesWith(const std::string& dir, const std::string& part) {
  std::vector<std::string> found;
  for (const std::string& name : testing::ListDir(dir)) {
    if (name.find(part) != std::string::npos) found.push_back(name);
  }
  return found;
}

// An agent process (forked) running a slow job (rate-limited), and what happened to it.
pid_t StartSlowAgent(const AgentSetup& s) {
  pid_t pid = ::fork();
  if (pid == 0) {
    AgentOptions o;
    o.config = s.Config();
    o.config.jobs[0].rate_limit_bytes_per_s = 4 * kMiB;  // 8 s for the 32 MiB
    auto agent = Agent::Start(std::move(o));
    if (!agent.ok() || !(*agent)->TriggerJob("disk").ok()) ::_exit(2);
    ::_exit((*agent)->Run().ok() ? 0 : 1);
  }
  return pid;
}

TEST(AgentTest, SigtermDuringABackupEndsItCleanlyAndKillNineLeavesNothingTheNextStartKeeps) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  AgentSetup s;
  // The source's images are written in its directory of the repository (repo/repository.h).
  const std::string images = s.repo + "/" + RepoSourceName(s.loop.device());
  auto catalogued = [&] {
    Result<std::vector<RepoImage>> list = ListRepository(s.repo);
    return list.ok() ? list->size() : size_t{0};
  };
  // SIGTERM while the job writes its image: the backup stops, nothing is published, and the
  // temporary file is gone.
  pid_t pid = StartSlowAgent(s);
  ASSERT_TRUE(testing::WaitUntil([&] { return !FilesWith(images, ".tmp").empty(); }, 60))
      << "the job never started writing";
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_TRUE(testing::ListDir(images).empty()) << "a stopped backup left files";
  EXPECT_EQ(catalogued(), 0u);

  // kill -9 while it writes: the temporary file stays behind, and the next agent removes it.
  pid = StartSlowAgent(s);
  ASSERT_TRUE(testing::WaitUntil([&] { return !FilesWith(images, ".tmp").empty(); }, 60));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  std::vector<std::string> left = FilesWith(images, ".tmp");
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(testing::ListDir(images).size(), 1u) << "only the temporary file: nothing published";
  EXPECT_EQ(catalogued(), 0u);
  AgentOptions o;
  o.config = s.Config();
  o.handle_signals = false;
  auto agent = Agent::Start(std::move(o));
  ASSERT_TRUE(agent.ok()) << agent.status().message();
  EXPECT_TRUE(testing::ListDir(images).empty()) << left[0] << " survived the next start";
  // The killed run's lease is stale (its process is gone): the next run breaks it and succeeds.
  ASSERT_TRUE((*agent)->TriggerJob("disk").ok());
  std::thread loop([&] { (void)(*agent)->Run(); });
  EXPECT_TRUE(testing::WaitUntil([&] { return catalogued() == 1; }, 120))
      << "the run after the kill published no image";
  (*agent)->RequestStop();
  loop.join();
}


TEST(AgentTest, TheBinaryRunsAJobOnRequestUnderSystemdNotifyAndStopsOnSigterm) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  AgentSetup s;
  const std::string config = s.dir.File("hotsnap.toml");
  testing::WriteFile(config, "[agent]\nstate_dir = \"" + s.state + "\"\nsocket = \"" + s.socket +
                                 "\"\nmetrics_textfile = \"" + s.dir.File("hotsnap.prom") +
                                 "\"\n\n[[job]]\nname = \"disk\"\nsources = [\"" + s.loop.device() +
                                 "\"]\nrepository = \"" + s.repo +
                                 "\"\nschedule = \"daily\"\nsnapshot = \"none\"\nlevel = 1\n");
  NotifySocket notify(s.dir.File("notify.sock"));
  int pid =
      testing::Spawn("env NOTIFY_SOCKET=" + testing::Quote(notify.path()) + " " +
                         testing::HotsnapBinary() + " agent run --config " + testing::Quote(config),
                     s.dir.File("agent.out"), s.dir.File("agent.err"));
  ASSERT_TRUE(notify.Await("READY=1")) << notify.all() << testing::ReadAll(s.dir.File("agent.err"));
  const std::string sock = " --socket " + testing::Quote(s.socket);
  testing::CommandResult status = testing::RunOk(testing::Hotsnap("agent status" + sock));
  EXPECT_NE(status.out.find("never run"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find(" 00:00:00 UTC"), std::string::npos) << "daily: next at midnight\n"
                                                                 << status.out;
  // A peer that is not root: the socket's directory keeps it out.
  testing::CommandResult nobody =
      testing::Run("setpriv --reuid=65534 --regid=65534 --clear-groups " +
                   testing::Hotsnap("agent status" + sock));
  EXPECT_NE(nobody.exit_code, 0);
  EXPECT_NE(nobody.err.find("Permission denied"), std::string::npos) << nobody.err;

  testing::RunOk(testing::Hotsnap("job run disk" + sock));
  EXPECT_TRUE(notify.Await("1 running")) << notify.all();
  EXPECT_TRUE(notify.Await("0 running, 0 failed")) << notify.all();
  nlohmann::json st =
      nlohmann::json::parse(testing::RunOk(testing::Hotsnap("agent status --json" + sock)).out);
  ASSERT_TRUE(st["jobs"][0]["last"]["ok"].get<bool>()) << st.dump();
  EXPECT_EQ(st["jobs"][0]["last"]["images"][0]["bytes_read"], kDevice);
  EXPECT_TRUE(testing::PathExists(st["jobs"][0]["last"]["images"][0]["image"].get<std::string>()));
  EXPECT_TRUE(testing::PathExists(s.state + "/schedule/disk.last-start")) << "the run's stamp";
  const std::string prom = testing::ReadAll(s.dir.File("hotsnap.prom"));
  EXPECT_NE(prom.find("hotsnap_job_runs_total{job=\"disk\",result=\"success\"} 1"),
            std::string::npos)
      << prom;
  EXPECT_NE(prom.find("hotsnap_job_change_log_valid{job=\"disk\"} 1"), std::string::npos) << prom;
  EXPECT_NE(prom.find("hotsnap_job_last_read_bytes{job=\"disk\"} " + std::to_string(kDevice)),
            std::string::npos)
      << prom;

  // SIGHUP: the file is read again (a second job appears; a broken file is refused, the old
  // configuration stays).
  const std::string original = testing::ReadAll(config);
  testing::WriteFile(config, original + "\n[[job]]\nname = \"second\"\nsources = [\"" +
                                 s.loop.device() + "\"]\nrepository = \"" + s.repo +
                                 "\"\nschedule = \"weekly\"\n");
  ASSERT_EQ(::kill(pid, SIGHUP), 0);
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        return Ask(s.socket, {{"request", "job list"}})["jobs"].size() == 2;
      },
      60))
      << "SIGHUP did not reload the configuration";
  testing::WriteFile(config, original + "\nbogus = 1\n");
  ASSERT_EQ(::kill(pid, SIGHUP), 0);
  // The refusal is logged; the loop answers after handling the signal, with both jobs still.
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        return testing::ReadAll(s.dir.File("agent.err")).find("not reloaded") != std::string::npos;
      },
      60))
      << testing::ReadAll(s.dir.File("agent.err"));
  EXPECT_EQ(Ask(s.socket, {{"request", "job list"}})["jobs"].size(), 2u);

  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  EXPECT_TRUE(notify.Await("STOPPING=1")) << notify.all();
  EXPECT_EQ(testing::WaitExit(pid), 0) << testing::ReadAll(s.dir.File("agent.err"));
  EXPECT_TRUE(
      testing::PathExists(s.state + "/changelog/" + ChangeLogFileName(s.loop.device()) + ".json"));
}

TEST(AgentTest, TheCommandsTalkToTheAgent) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  AgentSetup s;
  AgentOptions o;
  o.config = s.Config();
  o.handle_signals = false;
  auto agent = Agent::Start(std::move(o));
  ASSERT_TRUE(agent.ok()) << agent.status().message();
  std::thread loop([&] { (void)(*agent)->Run(); });
  const std::string sock = " --socket " + testing::Quote(s.socket);
  testing::CommandResult status = testing::RunOk(testing::Hotsnap("agent status" + sock));
  EXPECT_NE(status.out.find("hotsnap agent "), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("disk"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("never run"), std::string::npos) << status.out;
  testing::CommandResult list = testing::RunOk(testing::Hotsnap("job list --json" + sock));
  EXPECT_EQ(nlohmann::json::parse(list.out)["jobs"][0]["sources"][0], s.loop.device()) << list.out;
  testing::CommandResult run = testing::RunOk(testing::Hotsnap("job run disk" + sock));
  EXPECT_EQ(run.out, "job 'disk' started\n");
  testing::CommandResult nope = testing::Run(testing::Hotsnap("job run nope" + sock));
  EXPECT_EQ(nope.exit_code, 2) << nope.err;
  EXPECT_NE(nope.err.find("no job 'nope'"), std::string::npos) << nope.err;
  WaitForRun(s.socket, 0);
  status = testing::RunOk(testing::Hotsnap("agent status" + sock));
  EXPECT_NE(status.out.find("ok at "), std::string::npos) << status.out;
  (*agent)->RequestStop();
  loop.join();
  testing::CommandResult down = testing::Run(testing::Hotsnap("agent status" + sock));
  EXPECT_NE(down.exit_code, 0);
  EXPECT_NE(down.err.find("is it running?"), std::string::npos) << down.err;
}

// A one-thread HTTP server on 127.0.0.1 that answers 200 to everything and keeps each
// request's first line and body.
class PingServer {
 public:
  PingServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    socklen_t len = sizeof(a);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    EXPECT_EQ(::listen(fd_, 8), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~PingServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/ping/abc"; }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> l(mu_);
    return requests_;
  }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;  // 50 ms: only how soon the destructor is seen
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string in;
      char buf[4096];
      size_t head_end = std::string::npos, want = 0;
      while (head_end == std::string::npos || in.size() < head_end + 4 + want) {
        ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
        if (head_end == std::string::npos &&
            (head_end = in.find("\r\n\r\n")) != std::string::npos) {
          size_t cl = in.find("Content-Length: ");
          if (cl != std::string::npos && cl < head_end) want = std::stoul(in.substr(cl + 16));
        }
      }
      const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      (void)!::send(c, ok.data(), ok.size(), MSG_NOSIGNAL);
      ::close(c);
      std::string line = in.substr(0, in.find("\r\n"));
      std::string body = head_end == std::string::npos ? "" : in.substr(head_end + 4);
      std::lock_guard<std::mutex> l(mu_);
      requests_.push_back(line + (body.empty() ? "" : " | " + body));
    }
  }
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_;
};

TEST(AgentTest, HealthChecksArePingedAtStartSuccessAndFailure) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  AgentSetup s;
  PingServer server;
  AgentOptions o;
  o.config = s.Config();
  o.config.jobs[0].health_check_url = server.url();
  JobConfig bad = o.config.jobs[0];
  bad.name = "bad";
  bad.sources = {s.dir.File("no-such-device")};
  o.config.jobs.push_back(bad);
  o.handle_signals = false;
  auto agent = Agent::Start(std::move(o));
  ASSERT_TRUE(agent.ok()) << agent.status().message();
  std::thread loop([&] { (void)(*agent)->Run(); });
  ASSERT_TRUE((*agent)->TriggerJob("disk").ok());
  ASSERT_TRUE(testing::WaitUntil([&] { return server.requests().size() >= 2; }, 120));
  ASSERT_TRUE((*agent)->TriggerJob("bad").ok());
  ASSERT_TRUE(testing::WaitUntil([&] { return server.requests().size() >= 4; }, 120));
  (*agent)->RequestStop();
  loop.join();
  std::vector<std::string> r = server.requests();
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0], "GET /ping/abc/start HTTP/1.1");
  EXPECT_EQ(r[1].rfind("POST /ping/abc HTTP/1.1 | 1 image(s) made", 0), 0u) << r[1];
  EXPECT_EQ(r[2], "GET /ping/abc/start HTTP/1.1");
  EXPECT_EQ(r[3].rfind("POST /ping/abc/fail HTTP/1.1 | ", 0), 0u) << r[3];
  EXPECT_NE(r[3].find("no-such-device"), std::string::npos) << r[3];
}

}  // namespace
}  // namespace hotsnap
