// Crash points (base/crash_point.h): hotsnap SIGKILLs itself at a named phase, and each test
// checks what a crash there leaves: no filesystem frozen past the deadline, nothing published
// under the final name, and `hotsnap cleanup DIR` removing the temporary file — only those of
// dead processes. The next run then succeeds.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "base/crash_point.h"
#include "io/sink.h"
#include "io/stale_temp_files.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::CommandResult;
using ::hotsnap::testing::FillMixedChunks;
using ::hotsnap::testing::Hotsnap;
using ::hotsnap::testing::ListDir;
using ::hotsnap::testing::LoopDevice;
using ::hotsnap::testing::MountedLoopFs;
using ::hotsnap::testing::PathExists;
using ::hotsnap::testing::Quote;
using ::hotsnap::testing::RunOk;
using ::hotsnap::testing::TempDir;
using ::hotsnap::testing::WritableWithin;

CommandResult Shell(const std::string& command) { return ::hotsnap::testing::Run(command); }

constexpr uint64_t kMiB = 1024 * 1024;
constexpr int kSigkillExit = 128 + SIGKILL;

std::string CrashAt(const std::string& phase, const std::string& args) {
  return "HOTSNAP_CRASH_AT=" + phase + " " + Hotsnap(args);
}

// The names in `dir` that are hotsnap temporary files.
std::vector<std::string> TemporaryFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const std::string& n : ListDir(dir)) {
    if (TemporaryFilePid(n) > 0) out.push_back(n);
  }
  return out;
}

// After a crash of a run writing `final_path` in `dir`: nothing published, the temporary file
// left, `hotsnap cleanup DIR` removes it and nothing else.
void ExpectCleanupRemovesTheLeftover(const std::string& dir, const std::string& final_path) {
  EXPECT_FALSE(PathExists(final_path)) << "a killed run published " << final_path;
  std::vector<std::string> left = TemporaryFiles(dir);
  EXPECT_EQ(left.size(), 1u) << "expected the killed run's temporary file in " << dir;
  CommandResult c = Shell(Hotsnap("cleanup " + Quote(dir)));
  EXPECT_EQ(c.exit_code, 0) << c.out << c.err;
  for (const std::string& n : left) EXPECT_NE(c.out.find(n), std::string::npos) << c.out;
  EXPECT_TRUE(TemporaryFiles(dir).empty()) << "cleanup left a dead run's temporary file";
  EXPECT_FALSE(PathExists(final_path));
}

TEST(CrashPointTest, InertUnlessNamed) {
  // In this (test) process HOTSNAP_CRASH_AT is unset: calling any phase returns.
  ASSERT_EQ(getenv("HOTSNAP_CRASH_AT"), nullptr);
  CrashPoint("mid-read");
  CrashPoint("before-rename");
  SUCCEED();
}

TEST(CrashPointTest, KillsAtTheNamedPhaseAndCountsHits) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("HOTSNAP_CRASH_AT", "here:3", 1);
    CrashPoint("elsewhere");
    CrashPoint("here");
    CrashPoint("here");
    _exit(0);  // the third hit never comes: a clean exit means the count is wrong
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "killed before the third hit";
  pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    setenv("HOTSNAP_CRASH_AT", "here:2", 1);
    CrashPoint("here");
    CrashPoint("here");
    _exit(0);
  }
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "not SIGKILLed at hit 2";
}

// A plain backup of a file (no root needed) killed at each data-path phase.
class BackupCrashTest : public ::testing::TestWithParam<const char*> {};
INSTANTIATE_TEST_SUITE_P(Phases, BackupCrashTest,
                         ::testing::Values("mid-read", "mid-compress", "mid-read:4", "before-rename"));

TEST_P(BackupCrashTest, PublishesNothingAndCleanupRemovesTheTemporaryFile) {
  TempDir dir;
  std::string source = dir.File("disk.raw");
  FillMixedChunks(source, 24 * kMiB);
  RunOk("mkdir " + Quote(dir.File("out")));
  std::string image = dir.File("out/disk.zst");
  CommandResult r = Shell(CrashAt(GetParam(), "backup " + Quote(source) + " -o " + Quote(image) +
                                                  " --snapshot none --all-blocks --workers 2 -q"));
  ASSERT_EQ(r.exit_code, kSigkillExit) << "the crash point did not fire: " << r.err;
  EXPECT_NE(r.err.find("HOTSNAP_CRASH_AT"), std::string::npos) << r.err;
  if (std::string(GetParam()) == "before-rename") {
    // The temporary file is complete and synced, yet it is not the image until renamed.
    std::vector<std::string> left = TemporaryFiles(dir.File("out"));
    ASSERT_EQ(left.size(), 1u);
    CommandResult v = Shell(Hotsnap("verify " + Quote(dir.File("out/" + left[0])) + " -q"));
    EXPECT_EQ(v.exit_code, 0) << "before-rename should have a complete temporary image: " << v.err;
  }
  ExpectCleanupRemovesTheLeftover(dir.File("out"), image);
  // The next run is not disturbed by anything the crash left.
  CommandResult again = Shell(Hotsnap("backup " + Quote(source) + " -o " + Quote(image) +
                                      " --snapshot none --all-blocks -q"));
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(Shell("zstd -q -dc " + Quote(image) + " | cmp - " + Quote(source)).exit_code, 0);
}

TEST(CleanupTest, RemovesOnlyTemporaryFilesOfDeadProcesses) {
  TempDir dir;
  // A live process (this test) and a dead one (a reaped child).
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  ASSERT_GT(dead, 0);
  waitpid(dead, nullptr, 0);
  std::string live_tmp = TemporaryNameFor(dir.File("live.zst"), getpid());
  std::string dead_tmp = TemporaryNameFor(dir.File("dead.zst"), dead);
  std::string lookalike = dir.File(".dead.zst.hotsnap-x1.tmp");
  std::string image = dir.File("kept.zst");
  std::string dead_link = TemporaryNameFor(dir.File("link.zst"), dead);
  for (const std::string& f : {live_tmp, dead_tmp, lookalike, image}) RunOk("echo x > " + Quote(f));
  ASSERT_EQ(symlink(image.c_str(), dead_link.c_str()), 0);
  CommandResult c = Shell(Hotsnap("cleanup " + Quote(dir.path())));
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_FALSE(PathExists(dead_tmp)) << c.out;
  EXPECT_TRUE(PathExists(live_tmp)) << "removed the temporary file of a running process";
  EXPECT_TRUE(PathExists(lookalike));
  EXPECT_TRUE(PathExists(image));
  EXPECT_TRUE(PathExists(dead_link)) << "a symlink is never ours to remove";
  EXPECT_NE(c.out.find("kept: " + live_tmp), std::string::npos) << c.out;
  // A directory that cannot be read is a target error, not a silent success.
  CommandResult missing = Shell(Hotsnap("cleanup " + Quote(dir.File("missing"))));
  EXPECT_EQ(missing.exit_code, 4) << missing.out << missing.err;
}

TEST(CleanupTest, TemporaryFilePidParsesOnlyOurNames) {
  EXPECT_EQ(TemporaryFilePid(".a.zst.hotsnap-123.tmp"), 123);
  EXPECT_EQ(TemporaryFilePid(".a.hotsnap-9.zst.hotsnap-77.tmp"), 77);
  EXPECT_EQ(TemporaryFilePid("a.zst.hotsnap-123.tmp"), -1);
  EXPECT_EQ(TemporaryFilePid(".a.zst.hotsnap-.tmp"), -1);
  EXPECT_EQ(TemporaryFilePid(".a.zst.hotsnap-12a.tmp"), -1);
  EXPECT_EQ(TemporaryFilePid(".a.zst.hotsnap-123.tmp2"), -1);
  EXPECT_EQ(TemporaryFilePid(".hotsnap-123.tmp"), -1);
  EXPECT_EQ(TemporaryFilePid(".a.zst.hotsnap-0.tmp"), -1);
}

// Killed right after the freeze (freeze and tracked modes): the watchdog thaws at once,
// nothing is published, cleanup removes the temporary file.
class FreezeCrashTest : public ::testing::TestWithParam<const char*> {};
INSTANTIATE_TEST_SUITE_P(Modes, FreezeCrashTest, ::testing::Values("freeze", "tracked"));

TEST_P(FreezeCrashTest, AfterFreezeTheFilesystemIsThawedAndNothingPublished) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 64 * kMiB);
  RunOk("seq 1 100000 > " + Quote(fs.mount_point() + "/numbers") + " && sync");
  RunOk("mkdir " + Quote(dir.File("out")));
  std::string image = dir.File("out/fs.zst");
  auto started = std::chrono::steady_clock::now();
  CommandResult r = Shell(CrashAt("after-freeze", "backup " + Quote(fs.device()) + " -o " +
                                                      Quote(image) + " --snapshot " + GetParam() +
                                                      " --max-freeze 30 -q"));
  ASSERT_EQ(r.exit_code, kSigkillExit) << r.err;
  // --max-freeze is 30 s: a thaw within 5 s is the watchdog noticing its parent died,
  // not the deadline.
  EXPECT_TRUE(WritableWithin(fs.mount_point(), 5)) << "the filesystem stayed frozen after the crash";
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20));
  ExpectCleanupRemovesTheLeftover(dir.File("out"), image);
  CommandResult again = Shell(Hotsnap("backup " + Quote(fs.device()) + " -o " + Quote(image) +
                                      " --snapshot " + GetParam() + " -q"));
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

// Restore killed after writing a chunk: into a file nothing is published; onto a device the
// image is intact and a second restore completes the device.
TEST(RestoreCrashTest, IntoAFilePublishesNothing) {
  TempDir dir;
  std::string source = dir.File("disk.raw");
  FillMixedChunks(source, 24 * kMiB);
  std::string image = dir.File("disk.zst");
  RunOk(Hotsnap("backup " + Quote(source) + " -o " + Quote(image) + " --all-blocks -q"));
  RunOk("mkdir " + Quote(dir.File("out")));
  std::string target = dir.File("out/restored.raw");
  CommandResult r = Shell(CrashAt("during-restore:2", "restore " + Quote(image) + " " + Quote(target) + " -q"));
  ASSERT_EQ(r.exit_code, kSigkillExit) << r.err;
  ExpectCleanupRemovesTheLeftover(dir.File("out"), target);
  RunOk(Hotsnap("restore " + Quote(image) + " " + Quote(target) + " -q"));
  EXPECT_EQ(Shell("cmp " + Quote(source) + " " + Quote(target)).exit_code, 0);
}

TEST(RestoreCrashTest, OntoADeviceASecondRestoreCompletesIt) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  std::string source = dir.File("disk.raw");
  FillMixedChunks(source, 24 * kMiB);
  std::string image = dir.File("disk.zst");
  RunOk(Hotsnap("backup " + Quote(source) + " -o " + Quote(image) + " --all-blocks -q"));
  LoopDevice target(dir.path(), 24 * kMiB, "target.img");
  CommandResult r = Shell(CrashAt("during-restore:3", "restore " + Quote(image) + " " +
                                                          Quote(target.device()) + " -q"));
  ASSERT_EQ(r.exit_code, kSigkillExit) << r.err;
  EXPECT_EQ(Shell(Hotsnap("verify " + Quote(image) + " -q")).exit_code, 0) << "the image was harmed";
  CommandResult again = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target.device()) + " -q"));
  ASSERT_EQ(again.exit_code, 0) << "the device stayed locked or unusable after the crash: " << again.err;
  EXPECT_EQ(Shell("cmp " + Quote(source) + " " + Quote(target.device())).exit_code, 0);
}

}  // namespace
}  // namespace hotsnap
