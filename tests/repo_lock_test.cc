// RepoLock (repo/lock.h): the lease REPO/lock. Real processes hold it (fork); stale leases are
// those of a process that died (SIGKILL, so nothing released it), of a reused pid and of an
// earlier boot; another host's lease and a file that is not a lease are never broken.
#include "repo/lock.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "repo/catalog.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::PathExists;
using testing::ReadAll;
using testing::TempDir;
using testing::WriteFile;

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A child process that takes the repository lock and holds it until its pipe closes (then
// releases it and exits 0), or until it is killed (then the lease stays, as after a crash).
class LeaseHoldingChild {
 public:
  explicit LeaseHoldingChild(const std::string& repo) {
    int release[2], ready[2];
    if (::pipe(release) != 0 || ::pipe(ready) != 0) ADD_FAILURE() << "pipe";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(release[1]);
      ::close(ready[0]);
      auto lock = RepoLock::Acquire(repo, "backup");
      char ok = lock.ok() ? 'y' : 'n';
      if (::write(ready[1], &ok, 1) != 1) _exit(3);
      char c;
      while (::read(release[0], &c, 1) > 0) {
      }
      if (!lock.ok()) _exit(2);
      _exit(lock->Release().ok() ? 0 : 4);
    }
    ::close(release[0]);
    ::close(ready[1]);
    release_ = release[1];
    char ok = 0;
    locked_ = ::read(ready[0], &ok, 1) == 1 && ok == 'y';
    ::close(ready[0]);
  }
  ~LeaseHoldingChild() {
    if (pid_ > 0) ::kill(pid_, SIGKILL);
    Wait();
  }
  bool locked() const { return locked_; }
  pid_t pid() const { return pid_; }
  // Lets the child release and exit; its exit status.
  int Finish() {
    if (release_ >= 0) ::close(release_);
    release_ = -1;
    return Wait();
  }
  // Kills it holding the lease; waits until it is gone (reaped).
  void Crash() {
    ::kill(pid_, SIGKILL);
    Wait();
  }

 private:
  int Wait() {
    if (release_ >= 0) ::close(release_);
    release_ = -1;
    if (pid_ <= 0) return -1;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  pid_t pid_ = -1;
  int release_ = -1;
  bool locked_ = false;
};

// A lease as another run would have written it.
void WriteLease(const std::string& repo, RepoLease lease) { WriteFile(repo + "/lock", EncodeRepoLease(lease)); }

RepoLease ThisHostLease() {
  return RepoLease{HostName(), ProcessIdentity::Current(), "0123456789ab", "backup", "2026-12-04T10:00:00Z"};
}

TEST(RepoLockTest, LeaseNamesItsHolderAndReleaseRemovesIt) {
  TempDir repo;
  auto lock = RepoLock::Acquire(repo.path(), "prune");
  ASSERT_TRUE(lock.ok()) << lock.status().message();
  auto lease = DecodeRepoLease(ReadAll(repo.File("lock")));
  ASSERT_TRUE(lease.has_value());
  EXPECT_EQ(lease->host, HostName());
  EXPECT_EQ(lease->identity.pid, ::getpid());
  EXPECT_EQ(lease->identity.start_ticks, ProcessIdentity::Current().start_ticks);
  EXPECT_EQ(lease->identity.boot_id, BootId());
  EXPECT_EQ(lease->purpose, "prune");
  // A second acquire, even by the same process, is busy: the lease is exclusive.
  auto second = RepoLock::Acquire(repo.path(), "backup");
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kBusy);
  ASSERT_TRUE(lock->Release().ok());
  EXPECT_FALSE(PathExists(repo.File("lock")));
  EXPECT_EQ(testing::ListDir(repo.path()), std::vector<std::string>{}) << "temporary files left";
}

TEST(RepoLockTest, LiveLeaseOfAnotherProcessIsRefusedAndLeftAlone) {
  TempDir repo;
  LeaseHoldingChild child(repo.path());
  ASSERT_TRUE(child.locked());
  std::string before = ReadAll(repo.File("lock"));
  std::string broken;
  auto mine = RepoLock::Acquire(repo.path(), "backup", &broken);
  ASSERT_FALSE(mine.ok());
  EXPECT_EQ(mine.status().code(), Code::kBusy);
  EXPECT_TRUE(Contains(mine.status().message(), "locked by hotsnap pid " + std::to_string(child.pid()) + " on " +
                                                    HostName() + " (backup"))
      << mine.status().message();
  EXPECT_TRUE(Contains(mine.status().message(), "wait for it to finish or stop it")) << mine.status().message();
  EXPECT_TRUE(broken.empty()) << broken;
  EXPECT_EQ(ReadAll(repo.File("lock")), before) << "the refused attempt changed the lease";
  EXPECT_EQ(child.Finish(), 0) << "the holder could not release its own lease";
  EXPECT_FALSE(PathExists(repo.File("lock")));
  EXPECT_TRUE(RepoLock::Acquire(repo.path(), "backup").ok());
}

TEST(RepoLockTest, LeaseOfAProcessThatDiedIsBroken) {
  TempDir repo;
  LeaseHoldingChild child(repo.path());
  ASSERT_TRUE(child.locked());
  pid_t dead = child.pid();
  child.Crash();
  ASSERT_TRUE(PathExists(repo.File("lock"))) << "a killed holder cannot have released its lease";
  std::string broken;
  auto mine = RepoLock::Acquire(repo.path(), "backup", &broken);
  ASSERT_TRUE(mine.ok()) << mine.status().message();
  EXPECT_TRUE(Contains(broken, "broke the stale lock of hotsnap pid " + std::to_string(dead)) &&
              Contains(broken, "pid " + std::to_string(dead) + " is no longer running"))
      << broken;
  EXPECT_EQ(DecodeRepoLease(ReadAll(repo.File("lock")))->identity.pid, ::getpid());
}

TEST(RepoLockTest, LeaseOfAReusedPidOrAnEarlierBootIsBroken) {
  TempDir repo;
  RepoLease reused = ThisHostLease();
  reused.identity.start_ticks += 1;  // our pid, but not the process that started then
  WriteLease(repo.path(), reused);
  std::string broken;
  {
    auto mine = RepoLock::Acquire(repo.path(), "backup", &broken);
    ASSERT_TRUE(mine.ok()) << mine.status().message();
    EXPECT_TRUE(Contains(broken, "is another process now")) << broken;
  }
  RepoLease earlier_boot = ThisHostLease();
  earlier_boot.identity.boot_id = "00000000-0000-0000-0000-000000000000";
  WriteLease(repo.path(), earlier_boot);
  broken.clear();
  auto mine = RepoLock::Acquire(repo.path(), "backup", &broken);
  ASSERT_TRUE(mine.ok()) << mine.status().message();
  EXPECT_TRUE(Contains(broken, "taken before a reboot")) << broken;
}

TEST(RepoLockTest, AnotherHostsLeaseIsNeverBrokenEvenIfItsPidIsGoneHere) {
  TempDir repo;
  RepoLease other = ThisHostLease();
  other.host = "elsewhere.example";
  other.identity.pid = 999999;  // no such process here, nor its boot
  other.identity.boot_id = "00000000-0000-0000-0000-000000000000";
  WriteLease(repo.path(), other);
  std::string before = ReadAll(repo.File("lock"));
  std::string broken;
  auto mine = RepoLock::Acquire(repo.path(), "backup", &broken);
  ASSERT_FALSE(mine.ok());
  EXPECT_EQ(mine.status().code(), Code::kBusy);
  const std::string& msg = mine.status().message();
  EXPECT_TRUE(Contains(msg, "hotsnap pid 999999 on elsewhere.example")) << msg;
  EXPECT_TRUE(Contains(msg, "never broken automatically")) << msg;
  EXPECT_TRUE(Contains(msg, "remove " + repo.File("lock"))) << msg;
  EXPECT_TRUE(broken.empty()) << broken;
  EXPECT_EQ(ReadAll(repo.File("lock")), before);
}

TEST(RepoLockTest, AFileThatIsNoLeaseIsNeverBroken) {
  TempDir repo;
  WriteFile(repo.File("lock"), "not json");
  auto mine = RepoLock::Acquire(repo.path(), "backup");
  ASSERT_FALSE(mine.ok());
  EXPECT_EQ(mine.status().code(), Code::kBusy);
  EXPECT_TRUE(Contains(mine.status().message(), "is not a hotsnap lease")) << mine.status().message();
  EXPECT_EQ(ReadAll(repo.File("lock")), "not json");
}

TEST(RepoLockTest, ALeaseReplacedByHandIsNotRemovedOnRelease) {
  TempDir repo;
  auto lock = RepoLock::Acquire(repo.path(), "backup");
  ASSERT_TRUE(lock.ok()) << lock.status().message();
  RepoLease other = ThisHostLease();
  other.host = "elsewhere.example";
  WriteLease(repo.path(), other);
  EXPECT_FALSE(lock->Release().ok());
  EXPECT_EQ(DecodeRepoLease(ReadAll(repo.File("lock")))->host, "elsewhere.example");
}

}  // namespace
}  // namespace hotsnap
