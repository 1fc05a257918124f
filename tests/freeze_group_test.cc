// The freeze of a consistency group of several filesystems, on real loop devices with real
// FIFREEZE:
// - members that rest on nothing of each other are frozen at once (each FIFREEZE from its own
//   thread, so the group's freeze lasts as long as its slowest member's, not the sum);
// - a member frozen by someone else fails the group, names it, leaves that freeze alone and
//   thaws the members that froze, whichever its place in the order;
// - a filesystem on a loop device backed by a file on another member is frozen in order,
//   stacked first, and the freeze of such a group completes.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "snapshot/freeze.h"
#include "snapshot/freeze_stacking.h"
#include "tests/group_probes.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::LoopDevice;
using testing::MountPoint;
using testing::Quote;
using testing::RunOk;
using testing::TempDir;
using testing::ThawOnExit;

constexpr uint64_t kMiB = 1024 * 1024;

// True if the filesystem at `mount_point` is frozen: a second FIFREEZE is refused with
// EBUSY (and one that succeeds is undone at once).
bool IsFrozen(const std::string& mount_point) {
  UniqueFd fd(::open(mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return false;
  if (::ioctl(fd.get(), FIFREEZE, 0) == 0) {
    ::ioctl(fd.get(), FITHAW, 0);
    return false;
  }
  return errno == EBUSY;
}

// The real freezer, with a meeting point: each Freeze() waits until `parties` calls have
// entered (at most 20 s, only a hang guard) before freezing. Frozen one after the other, the
// first call waits alone and the meeting is missed.
class MeetingFreezer : public Freezer {
 public:
  explicit MeetingFreezer(int parties) : parties_(parties) {}
  int Freeze(int fd) override {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ++entered_;
      changed_.notify_all();
      if (!changed_.wait_for(lock, std::chrono::seconds(20),
                             [this] { return entered_ >= parties_; })) {
        missed_ = true;
      }
    }
    return RealFreezer()->Freeze(fd);
  }
  int Thaw(int fd) override { return RealFreezer()->Thaw(fd); }
  bool met() {
    std::lock_guard<std::mutex> lock(mutex_);
    return !missed_ && entered_ == parties_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  const int parties_;
  int entered_ = 0;
  bool missed_ = false;
};

// An ext4 and an XFS on two loop devices whose backing files are on the test's directory.
class TwoFilesystems : public testing::TwoLoopFilesystems {
 public:
  explicit TwoFilesystems(const std::string& dir) : TwoLoopFilesystems(dir, 64 * kMiB, 320 * kMiB) {}
};

TEST(FreezeGroupTest, IndependentMembersAreFrozenAtOnce) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  TwoFilesystems fs(dir.path());
  ThawOnExit thaw_ext4(fs.ext4()), thaw_xfs(fs.xfs());
  ASSERT_TRUE(MayFreezeAtOnce({fs.ext4(), fs.xfs()}));
  RunOk("dd if=/dev/urandom of=" + Quote(fs.ext4() + "/dirty") + " bs=1M count=4 status=none");
  MeetingFreezer freezer(2);
  auto frozen = FrozenFilesystem::Freeze({fs.ext4(), fs.xfs()}, std::chrono::seconds(60), &freezer);
  ASSERT_TRUE(frozen.ok()) << frozen.status().message();
  EXPECT_TRUE(freezer.met()) << "the second member's FIFREEZE began only after the first's ended";
  EXPECT_TRUE(IsFrozen(fs.ext4()));
  EXPECT_TRUE(IsFrozen(fs.xfs()));
  ASSERT_TRUE(frozen->Thaw().ok());
  EXPECT_FALSE(IsFrozen(fs.ext4()));
  EXPECT_FALSE(IsFrozen(fs.xfs()));
}

// Someone else's freeze of one member, first or second in the order: the group fails with
// kSource naming it, that freeze is left on, the other member is thawed.
TEST(FreezeGroupTest, AMemberFrozenBySomeoneElseFailsTheGroupAndTheOtherIsThawed) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  TwoFilesystems fs(dir.path());
  ThawOnExit thaw_ext4(fs.ext4()), thaw_xfs(fs.xfs());
  for (bool busy_first : {false, true}) {
    SCOPED_TRACE(busy_first ? "the busy member first" : "the busy member second");
    RunOk("fsfreeze -f " + Quote(fs.xfs()));
    std::vector<std::string> order = busy_first ? std::vector<std::string>{fs.xfs(), fs.ext4()}
                                                : std::vector<std::string>{fs.ext4(), fs.xfs()};
    auto frozen = FrozenFilesystem::Freeze(order, std::chrono::seconds(60));
    ASSERT_FALSE(frozen.ok());
    EXPECT_EQ(frozen.status().code(), Code::kSource);
    EXPECT_NE(frozen.status().message().find(fs.xfs()), std::string::npos)
        << frozen.status().message();
    EXPECT_NE(frozen.status().message().find("EBUSY"), std::string::npos)
        << frozen.status().message();
    EXPECT_FALSE(IsFrozen(fs.ext4())) << "the member that froze was left frozen";
    EXPECT_TRUE(IsFrozen(fs.xfs())) << "someone else's freeze was undone";
    RunOk("fsfreeze -u " + Quote(fs.xfs()));
  }
}

// An XFS on a loop device whose backing file lives on the ext4: the XFS's freeze writes
// through the ext4, so the two are frozen one after the other, the XFS first.
TEST(FreezeGroupTest, AStackedMemberIsFrozenBeforeWhatItRestsOn) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice outer(dir.path(), 512 * kMiB, "outer.img");
  testing::MakeFilesystem("ext4", outer.device());
  MountPoint ext4(outer.device(), dir.File("ext4"));
  ThawOnExit thaw_ext4(ext4.path());
  LoopDevice inner(ext4.path(), 320 * kMiB, "inner.img");
  testing::MakeFilesystem("xfs", inner.device());
  MountPoint xfs(inner.device(), dir.File("xfs"));
  ThawOnExit thaw_xfs(xfs.path());
  EXPECT_FALSE(MayFreezeAtOnce({xfs.path(), ext4.path()}));
  EXPECT_FALSE(MayFreezeAtOnce({ext4.path(), xfs.path()}));
  // Dirty data on the XFS: its freeze has to write it through the ext4.
  RunOk("dd if=/dev/urandom of=" + Quote(xfs.path() + "/dirty") + " bs=1M count=8 status=none");
  auto frozen = FrozenFilesystem::Freeze({xfs.path(), ext4.path()}, std::chrono::seconds(60));
  ASSERT_TRUE(frozen.ok()) << frozen.status().message();
  EXPECT_TRUE(IsFrozen(xfs.path()));
  EXPECT_TRUE(IsFrozen(ext4.path()));
  ASSERT_TRUE(frozen->Thaw().ok());
  EXPECT_FALSE(IsFrozen(xfs.path()));
  EXPECT_FALSE(IsFrozen(ext4.path()));
}

}  // namespace
}  // namespace hotsnap
