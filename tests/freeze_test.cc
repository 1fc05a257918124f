// Freezing on real filesystems: FrozenFilesystem and its watchdog (unit level, through
// snapshot/freeze.h), and the backup command's promises around a freeze (end to end, for
// --snapshot freeze and tracked): SIGKILL or a hang while frozen, someone else's freeze
// (EBUSY), tmpfs, output on the frozen filesystem, and the hooks.
//
// Whether a filesystem is frozen is read from the kernel, never from hotsnap: a write to it
// (in a child process, WriteProbe) blocks while it is frozen.
#include "snapshot/freeze.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::ChildPids;
using testing::CommandResult;
using testing::Hotsnap;
using testing::ListDir;
using testing::MountedLoopFs;
using testing::PathExists;
using testing::Quote;
using testing::ReadAll;
using testing::RunOk;
using testing::Spawn;
using testing::TempDir;
using testing::ThawOnExit;
using testing::WaitExit;
using testing::WaitUntil;
using testing::WritableWithin;
using testing::WriteProbe;

constexpr uint64_t kMiB = 1 << 20;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void SleepFor(double seconds) { std::this_thread::sleep_for(std::chrono::duration<double>(seconds)); }

// A probe that is still blocked after `seconds` proves the filesystem is frozen.
void ExpectFrozen(WriteProbe* probe, const std::string& what) {
  SleepFor(0.4);
  EXPECT_FALSE(probe->Done()) << what << ": a write completed, so the filesystem is not frozen";
}

// A tmpfs of `size` at `dir`, unmounted on destruction.
class TmpfsMount {
 public:
  TmpfsMount(std::string dir, const std::string& size) : path_(std::move(dir)) {
    mounted_ = RunOk("mkdir -p " + Quote(path_) + " && mount -t tmpfs -o size=" + size + " tmpfs " +
                     Quote(path_)).exit_code == 0;
  }
  ~TmpfsMount() {
    if (mounted_) testing::Run("umount " + Quote(path_) + " || umount -l " + Quote(path_));
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool mounted_ = false;
};

// ---- FrozenFilesystem, unit level ----------------------------------------------------------

TEST(FrozenFilesystemTest, FreezeBlocksWritesUntilThaw) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 64 * kMiB);
  ASSERT_TRUE(WritableWithin(fs.mount_point(), 5));
  auto frozen = FrozenFilesystem::Freeze(fs.mount_point(), std::chrono::seconds(20));
  ASSERT_TRUE(frozen.ok()) << frozen.status().message();
  EXPECT_TRUE(frozen->frozen());
  WriteProbe probe(fs.mount_point());
  ExpectFrozen(&probe, "after Freeze()");
  Status thawed = frozen->Thaw();
  EXPECT_TRUE(thawed.ok()) << thawed.message();
  EXPECT_TRUE(probe.Wait(2)) << "the write still blocks after Thaw()";
  EXPECT_EQ(probe.status(), 0);
  EXPECT_GE(frozen->held().count(), 400);
  EXPECT_EQ(ChildPids(), std::vector<int>{}) << "the watchdog outlived Thaw()";
}

// Forwards to the real freezer and records every call, to count thaws.
class RecordingFreezer : public Freezer {
 public:
  int Freeze(int fd) override { return RealFreezer()->Freeze(fd); }
  int Thaw(int fd) override {
    thaw_fds.push_back(fd);
    return RealFreezer()->Thaw(fd);
  }
  std::vector<int> thaw_fds;
};

TEST(FrozenFilesystemTest, OnlyTheLastOwnerThawsAndItsDestructorDoes) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 64 * kMiB);
  RecordingFreezer freezer;
  std::optional<FrozenFilesystem> owner;
  {
    auto frozen = FrozenFilesystem::Freeze(fs.mount_point(), std::chrono::seconds(20), &freezer);
    ASSERT_TRUE(frozen.ok()) << frozen.status().message();
    owner.emplace(std::move(frozen.value()));
  }  // the moved-from owners are gone: none of them may thaw (or call FITHAW at all)
  EXPECT_EQ(freezer.thaw_fds, std::vector<int>{}) << "a moved-from FrozenFilesystem called Thaw()";
  ASSERT_TRUE(owner->frozen());
  WriteProbe probe(fs.mount_point());
  ExpectFrozen(&probe, "after moving the owner");
  owner.reset();
  EXPECT_TRUE(probe.Wait(2)) << "the destructor did not thaw";
  ASSERT_EQ(freezer.thaw_fds.size(), 1u);
  EXPECT_GE(freezer.thaw_fds[0], 0);
  EXPECT_EQ(ChildPids(), std::vector<int>{});
}

TEST(FrozenFilesystemTest, WatchdogThawsAtTheDeadline) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 64 * kMiB);
  auto start = Clock::now();
  auto frozen = FrozenFilesystem::Freeze(fs.mount_point(), std::chrono::milliseconds(800));
  ASSERT_TRUE(frozen.ok()) << frozen.status().message();
  WriteProbe probe(fs.mount_point());
  SleepFor(0.3);
  EXPECT_FALSE(probe.Done()) << "not frozen";
  // Only the watchdog can have thawed it: this process calls Thaw() below. How soon after
  // the deadline the probe notices depends on the machine's load, so only a hang fails here.
  ASSERT_TRUE(probe.Wait(20)) << "the watchdog did not thaw within 20 s of a 0.8 s deadline";
  double writable_after = Since(start);
  EXPECT_GE(writable_after, 0.7) << "thawed before the deadline";
  EXPECT_TRUE(frozen->past_deadline());
  Status thawed = frozen->Thaw();
  EXPECT_EQ(thawed.code(), Code::kSource) << thawed.message();
  EXPECT_NE(thawed.message().find("max-freeze"), std::string::npos) << thawed.message();
  EXPECT_EQ(ChildPids(), std::vector<int>{});
}

TEST(FrozenFilesystemTest, EbusyLeavesSomeoneElsesFreezeAlone) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "xfs", 320 * kMiB);
  RunOk("fsfreeze -f " + Quote(fs.mount_point()));
  ThawOnExit thaw(fs.mount_point());
  auto frozen = FrozenFilesystem::Freeze(fs.mount_point(), std::chrono::milliseconds(300));
  ASSERT_FALSE(frozen.ok());
  EXPECT_EQ(frozen.status().code(), Code::kSource);
  EXPECT_NE(frozen.status().message().find("already frozen"), std::string::npos)
      << frozen.status().message();
  EXPECT_EQ(ChildPids(), std::vector<int>{}) << "the watchdog is still running";
  // Well past the 300 ms deadline: still frozen (nobody thawed the other freeze).
  WriteProbe probe(fs.mount_point());
  SleepFor(1.0);
  EXPECT_FALSE(probe.Done()) << "hotsnap (or its watchdog) thawed someone else's freeze";
  RunOk("fsfreeze -u " + Quote(fs.mount_point()));
  EXPECT_TRUE(probe.Wait(2));
}

TEST(FrozenFilesystemTest, TmpfsIsUnsupportedWithAClearMessage) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  TmpfsMount tmpfs(dir.File("tmpfs"), "4m");
  CommandResult type = RunOk("stat -f -c %T " + Quote(tmpfs.path()));
  ASSERT_EQ(type.out, "tmpfs\n");
  auto frozen = FrozenFilesystem::Freeze(tmpfs.path(), std::chrono::seconds(5));
  ASSERT_FALSE(frozen.ok());
  EXPECT_EQ(frozen.status().code(), Code::kUnsupported) << frozen.status().message();
  EXPECT_NE(frozen.status().message().find(tmpfs.path()), std::string::npos) << frozen.status().message();
  EXPECT_NE(frozen.status().message().find("cannot be frozen"), std::string::npos)
      << frozen.status().message();
  EXPECT_EQ(ChildPids(), std::vector<int>{}) << "the watchdog is still running";
}

// A freezer that fails as a broken kernel or device would.
class FailingFreezer : public Freezer {
 public:
  int Freeze(int) override { return EIO; }
  int Thaw(int) override { return 0; }
};

TEST(FrozenFilesystemTest, FreezeErrorStopsTheWatchdog) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 64 * kMiB);
  FailingFreezer failing;
  auto frozen = FrozenFilesystem::Freeze(fs.mount_point(), std::chrono::seconds(5), &failing);
  ASSERT_FALSE(frozen.ok());
  EXPECT_EQ(frozen.status().code(), Code::kSource);
  EXPECT_EQ(ChildPids(), std::vector<int>{});
  EXPECT_TRUE(WritableWithin(fs.mount_point(), 2));
}

// Freezes for real; every thaw fails with EIO, as a broken kernel or device would.
class ThawFailingFreezer : public Freezer {
 public:
  int Freeze(int fd) override { return RealFreezer()->Freeze(fd); }
  int Thaw(int) override {
    ++thaws;
    return EIO;
  }
  int thaws = 0;
};

TEST(FrozenFilesystemTest, FailedThawIsAnErrorAndTheWatchdogThaws) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 64 * kMiB);
  ThawOnExit guard(fs.mount_point());  // if the watchdog did not thaw, do not leave it frozen
  ThawFailingFreezer freezer;
  // A deadline far beyond the test: only a thaw on request can make the fs writable.
  auto frozen = FrozenFilesystem::Freeze(fs.mount_point(), std::chrono::seconds(600), &freezer);
  ASSERT_TRUE(frozen.ok()) << frozen.status().message();
  WriteProbe probe(fs.mount_point());
  ExpectFrozen(&probe, "after Freeze()");
  Status thawed = frozen->Thaw();
  EXPECT_EQ(freezer.thaws, 1);
  EXPECT_EQ(thawed.code(), Code::kSource) << thawed.message();
  EXPECT_EQ(thawed.err(), EIO) << thawed.message();
  EXPECT_NE(thawed.message().find("thawing " + fs.mount_point()), std::string::npos)
      << thawed.message();
  EXPECT_NE(thawed.message().find("watchdog thawed it"), std::string::npos) << thawed.message();
  EXPECT_TRUE(probe.Wait(10)) << "the filesystem is still frozen after a failed thaw";
  EXPECT_EQ(probe.status(), 0);
  EXPECT_FALSE(frozen->frozen());
  EXPECT_EQ(ChildPids(), std::vector<int>{}) << "the watchdog outlived the thaw";
}

TEST(FrozenFilesystemTest, DestructorAfterAFailedThawLeavesItThawed) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 64 * kMiB);
  ThawOnExit guard(fs.mount_point());
  ThawFailingFreezer freezer;
  {
    auto frozen = FrozenFilesystem::Freeze(fs.mount_point(), std::chrono::seconds(600), &freezer);
    ASSERT_TRUE(frozen.ok()) << frozen.status().message();
  }  // the owner's destructor thaws (and logs the failure)
  EXPECT_EQ(freezer.thaws, 1);
  EXPECT_TRUE(WritableWithin(fs.mount_point(), 10)) << "left frozen by the destructor";
  EXPECT_EQ(ChildPids(), std::vector<int>{});
}

// ---- The backup command, end to end --------------------------------------------------------

// A mounted ext4 with some data, an output directory outside it, and marker files for hooks.
struct BackupCase {
  explicit BackupCase(uint64_t fs_bytes = 128 * kMiB) : fs(dir.path(), "ext4", fs_bytes) {
    RunOk("head -c 24M /dev/urandom > " + Quote(fs.mount_point() + "/data.bin") + " && sync");
    RunOk("mkdir " + Quote(out_dir()));
  }
  std::string out_dir() const { return dir.File("out"); }
  std::string image() const { return out_dir() + "/img.zst"; }
  std::string marker(const std::string& name) const { return dir.File("mark-" + name); }
  std::string Backup(const std::string& mode, const std::string& extra) const {
    return Hotsnap("backup " + Quote(fs.device()) + " -o " + Quote(image()) + " --snapshot " + mode +
                   " --level 1 " + extra);
  }
  TempDir dir;
  MountedLoopFs fs;
};

class FreezeModesTest : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Modes, FreezeModesTest, ::testing::Values("freeze", "tracked"));

// Kills hotsnap with SIGKILL while the filesystem is frozen (in the while-frozen hook): the
// watchdog sees its owner die and thaws at once, long before the deadline.
TEST_P(FreezeModesTest, SigkillWhileFrozenThawsAtOnceAndPublishesNothing) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  BackupCase c;
  const double max_freeze = 5;
  std::string pid_file = c.marker("hook-pid");
  auto spawned = Clock::now();
  int pid = Spawn(c.Backup(GetParam(), "--max-freeze 5 --hook-timeout 60 --while-frozen " +
                                           Quote("echo $$ > " + Quote(pid_file) + "; exec sleep 30")),
                  c.dir.File("stdout"), c.dir.File("stderr"));
  ASSERT_TRUE(WaitUntil([&] { return testing::SizeOf(pid_file) > 0; }, 120))
      << "the while-frozen hook never ran: " << ReadAll(c.dir.File("stderr"));
  auto hook_started = Clock::now();
  int hook_pid = std::atoi(ReadAll(pid_file).c_str());
  WriteProbe probe(c.fs.mount_point());
  ExpectFrozen(&probe, "during the while-frozen hook");
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  auto killed = Clock::now();
  bool writable = probe.Wait(max_freeze + 3);
  double after_kill = Since(killed), after_hook = Since(hook_started), after_spawn = Since(spawned);
  std::printf("[ measured ] %s: writable %.3f s after SIGKILL, %.3f s after the freeze's hook "
              "started, %.3f s after hotsnap started (--max-freeze %.0f)\n",
              GetParam().c_str(), after_kill, after_hook, after_spawn, max_freeze);
  ::testing::Test::RecordProperty("writable_after_sigkill_ms", static_cast<int>(after_kill * 1000));
  EXPECT_TRUE(writable);
  EXPECT_EQ(probe.status(), 0);
  EXPECT_LE(after_hook, max_freeze + 1.0) << "not thawed within the deadline plus one second";
  EXPECT_LE(after_kill, 1.0) << "the watchdog did not thaw when its owner died";
  EXPECT_EQ(WaitExit(pid), 128 + SIGKILL);
  if (hook_pid > 0) ::kill(hook_pid, SIGKILL);  // the orphaned `sleep 30`
  // Nothing under the final name. A SIGKILLed process cannot remove its temporary file: by
  // design (io/stale_temp_files.h) it is ".img.zst.hotsnap-PID.tmp" with the dead PID, and
  // `hotsnap cleanup DIR` removes it.
  std::vector<std::string> left = ListDir(c.out_dir());
  EXPECT_FALSE(PathExists(c.image()));
  for (const std::string& name : left) {
    EXPECT_EQ(name, ".img.zst.hotsnap-" + std::to_string(pid) + ".tmp") << "unexpected file left";
  }
  CommandResult cleanup = RunOk(Hotsnap("cleanup " + Quote(c.out_dir())));
  EXPECT_EQ(ListDir(c.out_dir()), std::vector<std::string>{}) << cleanup.out << cleanup.err;
}

// hotsnap alive but stuck past --max-freeze (a hung while-frozen hook): the watchdog thaws at
// the deadline; the backup then fails and publishes nothing.
TEST_P(FreezeModesTest, HungPastMaxFreezeIsThawedAndFails) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  BackupCase c;
  const double max_freeze = 2;
  std::string started = c.marker("hook-started");
  auto spawned = Clock::now();
  int pid = Spawn(c.Backup(GetParam(), "--max-freeze 2 --hook-timeout 60 --while-frozen " +
                                           Quote("touch " + Quote(started) + "; sleep 8")),
                  c.dir.File("stdout"), c.dir.File("stderr"));
  ASSERT_TRUE(WaitUntil([&] { return PathExists(started); }, 120)) << ReadAll(c.dir.File("stderr"));
  auto hook_started = Clock::now();
  WriteProbe probe(c.fs.mount_point());
  SleepFor(0.2);
  EXPECT_FALSE(probe.Done()) << "not frozen while the hook runs";
  bool writable = probe.Wait(max_freeze + 3);
  double after_hook = Since(hook_started), after_spawn = Since(spawned);
  std::printf("[ measured ] %s: writable %.3f s after the while-frozen hook started, %.3f s after "
              "hotsnap started (--max-freeze %.0f)\n",
              GetParam().c_str(), after_hook, after_spawn, max_freeze);
  EXPECT_TRUE(writable);
  EXPECT_LE(after_hook, max_freeze + 1.0);
  int rc = WaitExit(pid);
  std::string err = ReadAll(c.dir.File("stderr"));
  EXPECT_NE(rc, 0) << err;
  EXPECT_NE(rc, 128 + SIGKILL);
  EXPECT_NE(err.find("max-freeze"), std::string::npos) << err;
  EXPECT_EQ(ListDir(c.out_dir()), std::vector<std::string>{});
}

// Someone else froze the filesystem: hotsnap fails saying so and leaves it frozen.
TEST_P(FreezeModesTest, AlreadyFrozenFailsAndStaysFrozen) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  BackupCase c;
  RunOk("fsfreeze -f " + Quote(c.fs.mount_point()));
  ThawOnExit thaw(c.fs.mount_point());
  CommandResult r = testing::Run("timeout 120 " + c.Backup(GetParam(), "--max-freeze 1"));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("already frozen"), std::string::npos) << r.err;
  WriteProbe probe(c.fs.mount_point());
  SleepFor(1.5);  // past hotsnap's own 1 s deadline too
  EXPECT_FALSE(probe.Done()) << "hotsnap thawed a freeze it did not make";
  RunOk("fsfreeze -u " + Quote(c.fs.mount_point()));
  EXPECT_TRUE(probe.Wait(3));
  EXPECT_EQ(ListDir(c.out_dir()), std::vector<std::string>{});
}

// The image on the filesystem to be frozen: refused (usage error) before anything is frozen.
TEST_P(FreezeModesTest, OutputOnTheFrozenFilesystemIsRefusedUpFront) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  BackupCase c;
  std::string mnt = c.fs.mount_point();
  std::vector<std::string> before = ListDir(mnt);
  std::string hooks = "--pre-freeze " + Quote("touch " + Quote(c.marker("pre"))) + " --while-frozen " +
                      Quote("touch " + Quote(c.marker("while")));
  CommandResult r = testing::Run("timeout 60 " + Hotsnap("backup " + Quote(c.fs.device()) + " -o " +
                                                Quote(mnt + "/img.zst") + " --snapshot " + GetParam() +
                                                " " + hooks));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("frozen"), std::string::npos) << r.err;
  EXPECT_FALSE(PathExists(c.marker("pre"))) << "pre-freeze ran: the refusal came too late";
  EXPECT_FALSE(PathExists(c.marker("while"))) << "the filesystem was frozen";
  EXPECT_EQ(ListDir(mnt), before) << "something was created on the filesystem";

  // The same with the filesystem already frozen by us: had hotsnap tried to freeze it, it
  // would fail with EBUSY (exit 3); had it written there, it would block (timeout: 124).
  {
    RunOk("fsfreeze -f " + Quote(mnt));
    ThawOnExit thaw(mnt);
    auto t = Clock::now();
    CommandResult frozen = testing::Run("timeout 20 " + Hotsnap("backup " + Quote(c.fs.device()) + " -o " +
                                                       Quote(mnt + "/img.zst") + " --snapshot " +
                                                       GetParam()));
    EXPECT_EQ(frozen.exit_code, 2) << frozen.err;
    EXPECT_LT(Since(t), 10.0);
  }
  EXPECT_EQ(ListDir(mnt), before);

  // stdout redirected into a file on the filesystem.
  CommandResult to_stdout = testing::Run("timeout 60 " + Hotsnap("backup " + Quote(c.fs.device()) + " -o - --snapshot " +
                                                        GetParam() + " " + hooks) +
                                " > " + Quote(mnt + "/stdout.zst"));
  EXPECT_EQ(to_stdout.exit_code, 2) << to_stdout.err;
  EXPECT_EQ(testing::SizeOf(mnt + "/stdout.zst"), 0u);
  EXPECT_FALSE(PathExists(c.marker("pre")));
  EXPECT_FALSE(PathExists(c.marker("while")));
}

// ---- Hooks ---------------------------------------------------------------------------------

std::string HookArgs(const BackupCase& c, const std::string& pre_body) {
  return "--pre-freeze " + Quote(pre_body) + " --while-frozen " +
         Quote("touch " + Quote(c.marker("while"))) + " --post-thaw " +
         Quote("touch " + Quote(c.marker("post")));
}

TEST_P(FreezeModesTest, FailingPreFreezeAbortsAndPostThawStillRuns) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  BackupCase c;
  CommandResult r = testing::Run("timeout 120 " + c.Backup(GetParam(), HookArgs(c, "touch " + Quote(c.marker("pre")) +
                                                                          "; echo flush failed >&2; exit 7")));
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("pre-freeze"), std::string::npos) << r.err;
  EXPECT_TRUE(PathExists(c.marker("pre")));
  EXPECT_FALSE(PathExists(c.marker("while"))) << "frozen although pre-freeze failed";
  EXPECT_TRUE(PathExists(c.marker("post"))) << "post-thaw did not run although pre-freeze ran";
  EXPECT_EQ(ListDir(c.out_dir()), std::vector<std::string>{});
  EXPECT_TRUE(WritableWithin(c.fs.mount_point(), 2));
}

TEST_P(FreezeModesTest, CrashConsistentGoesOnWhenPreFreezeFails) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  BackupCase c;
  CommandResult r = testing::Run("timeout 120 " + c.Backup(GetParam(), "--crash-consistent " +
                                                                  HookArgs(c, "exit 7")));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(PathExists(c.marker("while")));
  EXPECT_TRUE(PathExists(c.marker("post")));
  EXPECT_EQ(testing::Run(Hotsnap("verify " + Quote(c.image()))).exit_code, 0);
}

TEST_P(FreezeModesTest, HooksSeeTheirPhaseAndMountPoint) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  BackupCase c;
  std::string env = "echo \"$HOTSNAP_PHASE $HOTSNAP_SOURCE $HOTSNAP_MOUNTPOINT\" >> " + Quote(c.marker("env"));
  CommandResult r = testing::Run("timeout 120 " + c.Backup(GetParam(), "--pre-freeze " + Quote(env) + " --while-frozen " +
                                                                  Quote(env) + " --post-thaw " + Quote(env)));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string tail = " " + c.fs.device() + " " + c.fs.mount_point() + "\n";
  EXPECT_EQ(ReadAll(c.marker("env")), "pre-freeze" + tail + "while-frozen" + tail + "post-thaw" + tail);
}

// The copy fails after pre-freeze ran (the destination fills up): post-thaw still runs, the
// filesystem is thawed, nothing is published.
TEST_P(FreezeModesTest, PostThawRunsWhenTheCopyFails) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  BackupCase c;
  TmpfsMount small(c.dir.File("small"), "1m");
  CommandResult r = testing::Run("timeout 120 " + Hotsnap("backup " + Quote(c.fs.device()) + " -o " +
                                                 Quote(small.path() + "/img.zst") + " --snapshot " +
                                                 GetParam() + " --level 1 " +
                                                 HookArgs(c, "touch " + Quote(c.marker("pre")))));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  // freeze: the hooks surround the whole copy. tracked: they surround only the final freeze,
  // which a copy failing in the pre-copy never reaches; either way post-thaw runs exactly
  // when pre-freeze ran.
  if (GetParam() == "freeze") EXPECT_TRUE(PathExists(c.marker("pre")));
  EXPECT_EQ(PathExists(c.marker("post")), PathExists(c.marker("pre")))
      << "post-thaw ran iff pre-freeze ran: " << r.err;
  EXPECT_EQ(ListDir(small.path()), std::vector<std::string>{});
  EXPECT_TRUE(WritableWithin(c.fs.mount_point(), 2));

  // A failure after pre-freeze in both modes: the while-frozen hook fails.
  std::remove(c.marker("pre").c_str());
  std::remove(c.marker("post").c_str());
  r = testing::Run("timeout 120 " + c.Backup(GetParam(), "--pre-freeze " + Quote("touch " + Quote(c.marker("pre"))) +
                                                         " --while-frozen 'exit 9' --post-thaw " +
                                                         Quote("touch " + Quote(c.marker("post")))));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("while-frozen"), std::string::npos) << r.err;
  EXPECT_TRUE(PathExists(c.marker("pre")));
  EXPECT_TRUE(PathExists(c.marker("post"))) << "post-thaw did not run after a failure: " << r.err;
  EXPECT_EQ(ListDir(c.out_dir()), std::vector<std::string>{});
  EXPECT_TRUE(WritableWithin(c.fs.mount_point(), 2));
}

TEST_P(FreezeModesTest, HookTimeoutIsEnforced) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  BackupCase c;
  auto t = Clock::now();
  CommandResult r = testing::Run("timeout 120 " + c.Backup(GetParam(), "--hook-timeout 1 " + HookArgs(c, "sleep 30")));
  double took = Since(t);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("hook-timeout"), std::string::npos) << r.err;
  EXPECT_LT(took, 25.0) << "the 30 s pre-freeze hook was not cut off";
  EXPECT_TRUE(PathExists(c.marker("post")));
  EXPECT_FALSE(PathExists(c.marker("while")));

  // A hung while-frozen hook: cut off at the hook timeout, thawed, nothing published.
  t = Clock::now();
  r = testing::Run("timeout 120 " + c.Backup(GetParam(), "--hook-timeout 1 --max-freeze 60 --while-frozen 'sleep 30'"));
  took = Since(t);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("hook-timeout"), std::string::npos) << r.err;
  EXPECT_LT(took, 25.0);
  EXPECT_TRUE(WritableWithin(c.fs.mount_point(), 2));
  EXPECT_EQ(ListDir(c.out_dir()), std::vector<std::string>{});
}

}  // namespace
}  // namespace hotsnap
