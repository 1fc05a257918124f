// RunSubprocess / RunShell (base/subprocess.h) and RunHook (snapshot/hooks.h) with real
// processes: the timeout holds whatever the command does with its stdout/stderr, processes it
// leaves in its group are killed when it exits, one that left the group does not keep us
// waiting, and the output is still captured.
//
// Wall times are asserted only as loose guards far below what the defect would take (a 6 s
// or 30 s sleep); what is asserted is the result and which processes are gone.
#include "base/subprocess.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "base/process_identity.h"
#include "snapshot/hooks.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::Quote;
using testing::ReadAll;
using testing::TempDir;
using testing::WaitUntil;
using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The pid a command wrote to `file` (0 if none).
pid_t PidIn(const std::string& file) {
  return static_cast<pid_t>(std::atoi(ReadAll(file).c_str()));
}

// The process `pid` ends (is gone or a zombie) within `seconds`: waits on its state, polling.
bool GoneWithin(pid_t pid, double seconds) {
  return WaitUntil([pid] { return ProcessStartTicks(pid) == 0; }, seconds);
}

TEST(SubprocessTest, TimeoutHoldsWhenTheCommandClosesItsOutput) {
  TempDir dir;
  std::string pid_file = dir.File("shell.pid");
  SubprocessOptions options;
  options.timeout = std::chrono::seconds(1);
  auto start = Clock::now();
  auto r = RunShell("echo $$ > " + Quote(pid_file) + "; exec >/dev/null 2>&1; sleep 6", options);
  double took = SecondsSince(start);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->timed_out) << "exit code " << r->exit_code << " after " << took << " s";
  EXPECT_LT(took, 5.0) << "the 6 s sleep ran out instead of the 1 s timeout";
  EXPECT_EQ(r->exit_code, 128 + SIGTERM);
  pid_t shell = PidIn(pid_file);
  ASSERT_GT(shell, 0);
  // The shell was the group leader: its `sleep 6` child went with it.
  EXPECT_TRUE(WaitUntil([shell] { return ::kill(-shell, 0) != 0; }, 10))
      << "a process of the timed-out group is still running";
}

TEST(SubprocessTest, TimeoutEscalatesToSigkillWhenSigtermIsIgnored) {
  TempDir dir;
  std::string pid_file = dir.File("sleep.pid");
  SubprocessOptions options;
  options.timeout = std::chrono::seconds(1);
  auto start = Clock::now();
  // An ignored signal stays ignored across exec: the sleep ignores SIGTERM too.
  auto r = RunShell(
      "trap '' TERM; exec >/dev/null 2>&1; echo $$ > " + Quote(pid_file) + "; exec sleep 30",
      options);
  double took = SecondsSince(start);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_TRUE(r->timed_out);
  EXPECT_EQ(r->exit_code, 128 + SIGKILL);
  EXPECT_LT(took, 20.0) << "SIGKILL did not follow the ignored SIGTERM";
  EXPECT_TRUE(GoneWithin(PidIn(pid_file), 10));
}

TEST(SubprocessTest, BackgroundChildHoldingThePipesIsKilledWhenTheCommandExits) {
  TempDir dir;
  std::string pid_file = dir.File("child.pid");
  SubprocessOptions options;
  options.timeout = std::chrono::seconds(20);  // long: returning early must not be the timeout
  auto start = Clock::now();
  auto r = RunShell("echo started; sleep 30 & echo $! > " + Quote(pid_file) + "; exit 0", options);
  double took = SecondsSince(start);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r->timed_out) << "waited for the background child's pipes";
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out, "started\n");
  EXPECT_LT(took, 10.0);
  pid_t child = PidIn(pid_file);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(GoneWithin(child, 10)) << "the hook's background `sleep 30` outlived it";
  if (ProcessStartTicks(child) != 0) ::kill(child, SIGKILL);
}

TEST(SubprocessTest, ProcessThatLeftTheGroupDoesNotKeepUsWaiting) {
  TempDir dir;
  std::string pid_file = dir.File("escaped.pid");
  SubprocessOptions options;
  options.timeout = std::chrono::seconds(20);
  auto start = Clock::now();
  // setsid in a non-leader execs in place: $! is the escaped sleep itself, and it keeps the
  // pipes. The command waits until the sleep runs (so it has left the group) before exiting.
  auto r = RunShell("setsid sleep 30 & p=$!; echo $p > " + Quote(pid_file) +
                        "; until [ \"$(cat /proc/$p/comm)\" = sleep ]; do :; done; echo done",
                    options);
  double took = SecondsSince(start);
  pid_t escaped = PidIn(pid_file);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r->timed_out) << "waited for a process outside the group";
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->out, "done\n");
  EXPECT_LT(took, 10.0);
  // Documented: a process in a session of its own is left alone.
  ASSERT_GT(escaped, 0);
  EXPECT_NE(ProcessStartTicks(escaped), 0u) << "a process outside the group was killed";
  ::kill(escaped, SIGKILL);
}

TEST(SubprocessTest, CapturesStdoutStderrAndExitCode) {
  auto r = RunShell("printf 'to out\\n'; printf 'to err\\n' >&2; exit 3");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r->timed_out);
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "to out\n");
  EXPECT_EQ(r->err, "to err\n");
}

TEST(SubprocessTest, CapturesLargeOutputAndCapsItPerStream) {
  auto whole = RunShell("head -c 3000000 /dev/zero | tr '\\0' a");
  ASSERT_TRUE(whole.ok()) << whole.status().message();
  EXPECT_EQ(whole->exit_code, 0);
  EXPECT_EQ(whole->out, std::string(3000000, 'a'));

  SubprocessOptions capped;
  capped.max_output_bytes = 1000;
  auto r = RunShell(
      "head -c 300000 /dev/zero | tr '\\0' b; head -c 5000 /dev/zero | tr '\\0' c >&2", capped);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->exit_code, 0) << "the command was stopped instead of its output dropped";
  EXPECT_EQ(r->out, std::string(1000, 'b'));
  EXPECT_EQ(r->err, std::string(1000, 'c'));
}

TEST(SubprocessTest, CommandThatCannotStartIsAnError) {
  auto r = RunSubprocess({"/nonexistent/hotsnap-no-such-command"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInternal);
  EXPECT_NE(r.status().message().find("/nonexistent/hotsnap-no-such-command"), std::string::npos);
}

TEST(HookTest, HookThatClosesItsOutputIsReportedAsTimedOut) {
  HookSet hooks;
  hooks.timeout = std::chrono::seconds(1);
  auto start = Clock::now();
  Status s = RunHook("pre-freeze", "exec >/dev/null 2>&1; sleep 6", hooks, "/dev/null", "/");
  double took = SecondsSince(start);
  EXPECT_EQ(s.code(), Code::kSource) << s.message();
  EXPECT_NE(s.message().find("pre-freeze hook 'exec >/dev/null 2>&1; sleep 6' timed out after 1 s"),
            std::string::npos)
      << s.message();
  EXPECT_LT(took, 5.0);
}

TEST(HookTest, HookSeesItsPhaseAndFailureQuotesStderr) {
  HookSet hooks;
  Status s = RunHook("post-thaw", "echo \"$HOTSNAP_PHASE $HOTSNAP_SOURCE\" >&2; exit 4", hooks,
                     "/dev/loop9", "/mnt/x");
  EXPECT_EQ(s.code(), Code::kSource);
  EXPECT_NE(s.message().find("exit code 4: post-thaw /dev/loop9"), std::string::npos)
      << s.message();
}

}  // namespace
}  // namespace hotsnap
