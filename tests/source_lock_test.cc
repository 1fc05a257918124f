// SourceLock (snapshot/source_lock.h): one hotsnap run per device. Unit tests on regular files
// with a private lock dir (real flock, real processes), then two real backups of one mounted
// ext4 on a loop device.
#include "snapshot/source_lock.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

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
using testing::WaitExit;
using testing::WaitUntil;
using testing::WriteFile;
using testing::WriteProbe;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A child process that takes the lock on `path` and holds it until the pipe it reads closes.
class LockHoldingChild {
 public:
  LockHoldingChild(const std::string& path, const std::string& lock_dir) {
    int release[2], ready[2];
    if (::pipe(release) != 0 || ::pipe(ready) != 0) ADD_FAILURE() << "pipe";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(release[1]);
      ::close(ready[0]);
      auto lock = SourceLock::Acquire(path, "backup", lock_dir);
      char ok = lock.ok() ? 'y' : 'n';
      if (::write(ready[1], &ok, 1) != 1) _exit(3);
      char c;
      while (::read(release[0], &c, 1) > 0) {
      }
      _exit(lock.ok() ? 0 : 2);  // the lock is not released: the file stays, as after a crash
    }
    ::close(release[0]);
    ::close(ready[1]);
    release_ = release[1];
    char ok = 0;
    locked_ = ::read(ready[0], &ok, 1) == 1 && ok == 'y';
    ::close(ready[0]);
  }
  ~LockHoldingChild() { Exit(); }
  bool locked() const { return locked_; }
  pid_t pid() const { return pid_; }
  // Ends the child without releasing (like a crash): returns its exit status.
  int Exit() {
    if (release_ >= 0) ::close(release_);
    release_ = -1;
    if (pid_ <= 0) return -1;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  int release_ = -1;
  bool locked_ = false;
};

struct LockCase {
  LockCase() { WriteFile(source, "some image bytes"); }
  TempDir dir;
  std::string source = dir.File("vm.raw");
  std::string lock_dir = dir.File("locks");
};

TEST(SourceLockTest, SecondAcquireIsBusyNamesTheHolderAndLeavesItAlone) {
  LockCase c;
  auto first = SourceLock::Acquire(c.source, "backup", c.lock_dir);
  ASSERT_TRUE(first.ok()) << first.status().message();
  ASSERT_TRUE(first->held());
  std::string holder_file = ReadAll(first->file());

  auto second = SourceLock::Acquire(c.source, "backup", c.lock_dir);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kBusy);
  const std::string& msg = second.status().message();
  EXPECT_TRUE(
      Contains(msg, c.source + " is being backed up by hotsnap pid " + std::to_string(::getpid())))
      << msg;
  EXPECT_TRUE(Contains(msg, "run id " + first->run_id())) << msg;
  EXPECT_TRUE(Contains(msg, "wait for it to finish or stop it")) << msg;
  EXPECT_EQ(ReadAll(first->file()), holder_file) << "the failed attempt changed the lock file";
  EXPECT_EQ(SourceLock::CheckFree(c.source, c.lock_dir).code(), Code::kBusy);

  std::string file = first->file();
  ASSERT_TRUE(first->Release().ok());
  EXPECT_FALSE(PathExists(file)) << "released lock left its file";
  EXPECT_TRUE(SourceLock::CheckFree(c.source, c.lock_dir).ok());
  auto third = SourceLock::Acquire(c.source, "restore", c.lock_dir);
  EXPECT_TRUE(third.ok()) << third.status().message();
}

TEST(SourceLockTest, AnotherNameOfTheSameFileSharesTheLock) {
  LockCase c;
  std::string link = c.dir.File("link.raw");
  ASSERT_EQ(::symlink(c.source.c_str(), link.c_str()), 0);
  auto first = SourceLock::Acquire(c.source, "restore", c.lock_dir);
  ASSERT_TRUE(first.ok()) << first.status().message();
  auto second = SourceLock::Acquire(link, "backup", c.lock_dir);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kBusy);
  EXPECT_TRUE(Contains(second.status().message(),
                       link + " is being restored (as " + c.source + ") by hotsnap pid"))
      << second.status().message();
  // A different file is not locked.
  std::string other = c.dir.File("other.raw");
  WriteFile(other, "x");
  EXPECT_TRUE(SourceLock::Acquire(other, "backup", c.lock_dir).ok());
}

TEST(SourceLockTest, LiveHolderInAnotherProcessIsNeverBroken) {
  LockCase c;
  LockHoldingChild child(c.source, c.lock_dir);
  ASSERT_TRUE(child.locked());
  auto mine = SourceLock::Acquire(c.source, "backup", c.lock_dir);
  ASSERT_FALSE(mine.ok());
  EXPECT_EQ(mine.status().code(), Code::kBusy);
  EXPECT_TRUE(Contains(mine.status().message(), "hotsnap pid " + std::to_string(child.pid())))
      << mine.status().message();
  EXPECT_EQ(SourceLock::CheckFree(c.source, c.lock_dir).code(), Code::kBusy);
  EXPECT_EQ(child.Exit(), 0) << "the holder lost its lock";
}

TEST(SourceLockTest, LockFileOfADeadRunIsTakenOver) {
  LockCase c;
  LockHoldingChild child(c.source, c.lock_dir);
  ASSERT_TRUE(child.locked());
  pid_t dead = child.pid();
  ASSERT_EQ(child.Exit(), 0);  // died holding it: the file stays, naming the dead pid
  std::vector<std::string> files = ListDir(c.lock_dir);
  ASSERT_EQ(files.size(), 1u);
  std::string file = c.lock_dir + "/" + files[0];
  ASSERT_TRUE(Contains(ReadAll(file), "\"pid\": " + std::to_string(dead)));

  EXPECT_TRUE(SourceLock::CheckFree(c.source, c.lock_dir).ok()) << "a dead run reported busy";
  auto mine = SourceLock::Acquire(c.source, "backup", c.lock_dir);
  ASSERT_TRUE(mine.ok()) << mine.status().message();
  EXPECT_EQ(mine->file(), file);
  EXPECT_TRUE(Contains(ReadAll(file), "\"pid\": " + std::to_string(::getpid()))) << ReadAll(file);
}

TEST(SourceLockTest, LockedFileNamingADeadProcessIsStillNotTaken) {
  LockCase c;
  auto name = LockFileName(c.source);
  ASSERT_TRUE(name.ok());
  RunOk("mkdir -p " + Quote(c.lock_dir));
  std::string file = c.lock_dir + "/" + *name;
  // Someone holds the flock (here another open file description of this process), but the
  // file names a pid from another boot.
  WriteFile(file, R"({"pid": 1, "pid_start_ticks": 1, "boot_id": "another-boot", "run_id": "x"})");
  int holder = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(holder, 0);
  ASSERT_EQ(::flock(holder, LOCK_EX | LOCK_NB), 0);
  auto mine = SourceLock::Acquire(c.source, "backup", c.lock_dir);
  EXPECT_FALSE(mine.ok());
  EXPECT_EQ(mine.status().code(), Code::kBusy);
  EXPECT_TRUE(Contains(mine.status().message(), "fuser " + file)) << mine.status().message();
  EXPECT_TRUE(Contains(ReadAll(file), "another-boot")) << "the held file was rewritten";
  ::close(holder);
  EXPECT_TRUE(SourceLock::Acquire(c.source, "backup", c.lock_dir).ok());
}

TEST(SourceLockTest, MovedLockStaysHeldUntilItsLastOwnerGoes) {
  LockCase c;
  auto acquired = SourceLock::Acquire(c.source, "backup", c.lock_dir);
  ASSERT_TRUE(acquired.ok());
  std::string file = acquired->file();
  {
    SourceLock moved = std::move(acquired.value());
    EXPECT_FALSE(SourceLock::Acquire(c.source, "backup", c.lock_dir).ok());
  }
  EXPECT_FALSE(PathExists(file));
  EXPECT_TRUE(SourceLock::Acquire(c.source, "backup", c.lock_dir).ok());
}

TEST(SourceLockTest, MissingSourceIsASourceError) {
  LockCase c;
  auto r = SourceLock::Acquire(c.dir.File("missing"), "backup", c.lock_dir);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kSource);
  EXPECT_TRUE(Contains(r.status().message(), c.dir.File("missing")));
}

// ---- Two real backups of one source ----------------------------------------------------------

// The first backup freezes the filesystem and blocks in its while-frozen hook until the test
// writes to a FIFO; meanwhile a second backup (and a dry run) of the same device must exit 7
// naming the first, without touching its freeze. Then the first completes.
TEST(SourceLockE2eTest, SecondBackupOfTheSameSourceExitsBusyAndTheFirstCompletes) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 64ull << 20);
  RunOk("head -c 4M /dev/urandom > " + Quote(fs.mount_point() + "/data.bin") + " && sync");
  std::string fifo = dir.File("release");
  std::string in_hook = dir.File("in-hook");
  RunOk("mkfifo " + Quote(fifo));
  std::string first_image = dir.File("first.zst"), second_image = dir.File("second.zst");
  int first =
      Spawn(Hotsnap("backup " + Quote(fs.device()) + " -o " + Quote(first_image) +
                    " --snapshot freeze --max-freeze 600 --hook-timeout 600 -q "
                    "--while-frozen " +
                    Quote("touch " + Quote(in_hook) + "; cat " + Quote(fifo) + " >/dev/null")),
            dir.File("first.out"), dir.File("first.err"));
  ASSERT_TRUE(WaitUntil([&] { return PathExists(in_hook); }, 120))
      << "the first backup never reached its while-frozen hook: " << ReadAll(dir.File("first.err"));
  WriteProbe probe(fs.mount_point());  // blocked while the first run's freeze holds

  CommandResult second = testing::Run(Hotsnap("backup " + Quote(fs.device()) + " -o " +
                                              Quote(second_image) + " --snapshot freeze -q"));
  EXPECT_EQ(second.exit_code, 7) << second.err;
  EXPECT_TRUE(Contains(second.err,
                       fs.device() + " is being backed up by hotsnap pid " + std::to_string(first)))
      << second.err;
  EXPECT_FALSE(PathExists(second_image));
  CommandResult dry = testing::Run(Hotsnap("backup " + Quote(fs.device()) + " -o " +
                                           Quote(second_image) + " --snapshot freeze --dry-run"));
  EXPECT_EQ(dry.exit_code, 7) << dry.out << dry.err;
  EXPECT_TRUE(Contains(dry.err, "hotsnap pid " + std::to_string(first))) << dry.err;
  EXPECT_FALSE(probe.Done()) << "the filesystem was thawed under the first backup";

  // Release the first run's hook: it finishes the backup.
  int fd = -1;
  ASSERT_TRUE(
      WaitUntil([&] { return (fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK)) >= 0; }, 60));
  ::close(fd);
  int rc = WaitExit(first);
  EXPECT_EQ(rc, 0) << ReadAll(dir.File("first.err"));
  EXPECT_TRUE(probe.Wait(60));
  CommandResult verify = testing::Run(Hotsnap("verify " + Quote(first_image)));
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;

  // Released: the next backup runs.
  CommandResult third = testing::Run(Hotsnap("backup " + Quote(fs.device()) + " -o " +
                                             Quote(second_image) + " --snapshot freeze -q"));
  EXPECT_EQ(third.exit_code, 0) << third.err;
}

}  // namespace
}  // namespace hotsnap
