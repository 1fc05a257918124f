// Consistency groups: a backup of a whole disk freezes every filesystem mounted read-write
// from its partitions together (freeze mode for the whole copy, tracked mode at each of its
// freezes), on a real partitioned loop disk with ext4 and XFS mounted and busy.
//
// - A while-frozen hook proves each member is frozen at the final moment: a write to each
//   member, started by the hook in its own session, has not finished while the hook runs
//   (and finishes once the backup thawed). With one member frozen, the other's write lands.
// - A cross-filesystem oracle: a writer appends transfer j to a log on the ext4, then to a
//   log on the XFS, fsyncing each. A copy of both at one moment holds
//   count(XFS) <= count(ext4) <= count(XFS) + 1.
// - A member that cannot be frozen (NTFS through FUSE) refuses the backup, in the dry run as in the
// run,
//   naming it; --allow-crash-consistent lets it through and the image's report records it.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/group_probes.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::CrossWriter;
using testing::LastResultEvent;
using testing::Lines;
using testing::ProbeHook;
using testing::Hotsnap;
using testing::LiveWriter;
using testing::MountPoint;
using testing::PartitionedLoopDevice;
using testing::Quote;
using testing::ReadAll;
using testing::RunOk;
using testing::TempDir;
using testing::ThawOnExit;

constexpr uint64_t kMiB = 1024 * 1024;

CommandResult Sh(const std::string& command) { return testing::Run(command); }

// p1 ext4 (160 MiB), p2 xfs (320 MiB), p3 a small NTFS (mounted with ntfs-3g as fuseblk: a
// filesystem without freeze support that this kernel can mount; it has no vfat), on an MBR
// loop disk.
const std::vector<std::pair<uint64_t, uint64_t>> kLayout = {
    {1 * kMiB, 160 * kMiB}, {161 * kMiB, 320 * kMiB}, {481 * kMiB, 30 * kMiB}};
constexpr uint64_t kDiskBytes = 512 * kMiB;

class GroupDisk {
 public:
  explicit GroupDisk(const std::string& dir) : dir_(dir), disk_(dir, kDiskBytes, kLayout) {
    testing::MakeFilesystem("ext4", disk_.partition(1));
    testing::MakeFilesystem("xfs", disk_.partition(2));
    RunOk("mkntfs -Q -F " + Quote(disk_.partition(3)) + " >/dev/null");
    ext4_.emplace(disk_.partition(1), dir + "/ext4");
    xfs_.emplace(disk_.partition(2), dir + "/xfs");
  }
  const std::string& device() const { return disk_.device(); }
  std::string partition(int n) const { return disk_.partition(n); }
  std::string ext4() const { return ext4_->path(); }
  std::string xfs() const { return xfs_->path(); }

 private:
  std::string dir_;
  PartitionedLoopDevice disk_;
  std::optional<MountPoint> ext4_;
  std::optional<MountPoint> xfs_;
};

class ConsistencyGroupTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ConsistencyGroupTest, EveryMemberIsFrozenAtTheFinalMoment) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  GroupDisk disk(dir.path());
  ThawOnExit thaw_ext4(disk.ext4()), thaw_xfs(disk.xfs());
  LiveWriter w1(disk.ext4()), w2(disk.xfs());
  ASSERT_TRUE(w1.WaitForRecords(8, 60));
  ASSERT_TRUE(w2.WaitForRecords(8, 60));
  const std::string out = dir.File("probes");
  const std::string hook = dir.File("hook.sh");
  testing::WriteFile(hook, ProbeHook(out, {disk.ext4(), disk.xfs()}));
  CommandResult r = Sh("timeout 600 " +
                       Hotsnap("backup " + Quote(disk.device()) + " -o " +
                               Quote(dir.File("disk.zst")) + " --snapshot " + GetParam() +
                               " --max-freeze 60 --while-frozen " + Quote("sh " + hook) + " -q"));
  w1.Stop();
  w2.Stop();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadAll(out + "/result"), "0 blocked\n1 blocked\n")
      << "0 is the ext4, 1 the XFS: a member whose write was taken was not frozen";
  EXPECT_EQ(ReadAll(out + "/env"), disk.ext4() + "\n" + disk.xfs() + "\n");
  // After the thaw, both writes go through.
  EXPECT_TRUE(testing::WaitUntil(
      [&] {
        return access((out + "/0.done").c_str(), F_OK) == 0 &&
               access((out + "/1.done").c_str(), F_OK) == 0;
      },
      60))
      << "a probe write never finished: a member stayed frozen";
}

TEST_P(ConsistencyGroupTest, RestoredLogsOfBothFilesystemsAreFromOneMoment) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  GroupDisk disk(dir.path());
  ThawOnExit thaw_ext4(disk.ext4()), thaw_xfs(disk.xfs());
  const std::string image = dir.File("disk.zst");
  nlohmann::json result;
  {
    CrossWriter transfers(disk.ext4(), disk.xfs());
    LiveWriter busy(disk.xfs());  // XFS busy on its own as well
    ASSERT_TRUE(
        testing::WaitUntil([&] { return Lines(disk.ext4() + "/transfers.log") >= 50; }, 60));
    CommandResult r =
        Sh("timeout 600 " + Hotsnap("backup " + Quote(disk.device()) + " -o " + Quote(image) +
                                    " --snapshot " + GetParam() + " --max-freeze 60 --json"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    result = LastResultEvent(r.err);
  }
  ASSERT_TRUE(result.is_object()) << "no result event";
  EXPECT_EQ(result["frozen"], nlohmann::json::array({disk.ext4(), disk.xfs()}));
  // Onto a disk of the same layout (its partition nodes cover the same byte ranges).
  const std::string target_dir = dir.File("target");
  RunOk("mkdir -p " + Quote(target_dir));
  PartitionedLoopDevice target(target_dir, kDiskBytes, kLayout);
  RunOk(Hotsnap("restore " + Quote(image) + " " + Quote(target.device()) + " --force -q"));
  RunOk("blockdev --flushbufs " + Quote(target.partition(1)) + " " + Quote(target.partition(2)));
  // What the filesystems used at the copy's moment (the restored ones, by their own tools):
  // the backup must read about that, not the whole disk. The unmounted NTFS partition is read
  // whole, and the table's first MiB is kept. Tracked mode reads chunks again in rounds.
  uint64_t used = kLayout[2].second + kMiB;
  for (auto [first, end] : testing::UsedRangesOf(target.partition(1), "ext4")) used += end - first;
  for (auto [first, end] : testing::UsedRangesOf(target.partition(2), "xfs")) used += end - first;
  if (GetParam() == "freeze") {
    EXPECT_LE(result["bytes_read"].get<uint64_t>(), used + used / 10)
        << "read " << result["bytes_read"] << " bytes of a " << kDiskBytes << "-byte disk";
  }
  CommandResult fsck = Sh("e2fsck -fn " + Quote(target.partition(1)));
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  // XFS: replay its log (nouuid: the source is still mounted), then check.
  RunOk("mkdir -p " + Quote(dir.File("r1")) + " " + Quote(dir.File("r2")));
  RunOk("mount -o nouuid " + Quote(target.partition(2)) + " " + Quote(dir.File("r2")) +
        " && umount " + Quote(dir.File("r2")));
  CommandResult repair = Sh("xfs_repair -n " + Quote(target.partition(2)));
  EXPECT_EQ(repair.exit_code, 0) << repair.out << repair.err;
  uint64_t ext4_count = 0, xfs_count = 0;
  {
    MountPoint r1(target.partition(1), dir.File("r1"), "ro");
    MountPoint r2(target.partition(2), dir.File("r2"), "ro,nouuid");
    ext4_count = Lines(r1.path() + "/transfers.log");
    xfs_count = Lines(r2.path() + "/transfers.log");
  }
  EXPECT_GE(ext4_count, 50u);
  EXPECT_LE(xfs_count, ext4_count);
  EXPECT_LE(ext4_count, xfs_count + 1) << "the XFS was copied at a later moment than the ext4";
}

INSTANTIATE_TEST_SUITE_P(Modes, ConsistencyGroupTest, ::testing::Values("freeze", "tracked"));

// fuseblk (NTFS) has no FIFREEZE, like vfat: a read-write NTFS partition cannot join, and the
// backup says so before touching anything, in the dry run exactly as in the run. A PART that names
// nothing is a usage error (a typo must not leave a filesystem unfrozen).
TEST(ConsistencyGroupRefusalTest, AMemberThatCannotFreezeIsRefusedUnlessAllowed) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  GroupDisk disk(dir.path());
  ThawOnExit thaw_ext4(disk.ext4()), thaw_xfs(disk.xfs());
  RunOk("mkdir -p " + Quote(dir.File("ntfs")) + " && ntfs-3g " + Quote(disk.partition(3)) + " " +
        Quote(dir.File("ntfs")));
  struct Unmount {
    std::string path;
    ~Unmount() { testing::Run("umount " + Quote(path) + " || umount -l " + Quote(path)); }
  } fat{dir.File("ntfs")};
  const std::string image = dir.File("disk.zst");
  for (const char* mode : {"freeze", "tracked", "auto"}) {
    for (const char* dry : {"", " --dry-run"}) {
      SCOPED_TRACE(std::string(mode) + dry);
      CommandResult r = Sh(Hotsnap("backup " + Quote(disk.device()) + " -o " + Quote(image) +
                                   " --snapshot " + mode + dry));
      EXPECT_EQ(r.exit_code, 3) << r.err;
      EXPECT_NE(r.err.find(disk.partition(3) + " (fuseblk, mounted read-write at " + fat.path),
                std::string::npos)
          << r.err;
      EXPECT_NE(r.err.find("--allow-crash-consistent " + disk.partition(3)), std::string::npos)
          << r.err;
      CommandResult typo =
          Sh(Hotsnap("backup " + Quote(disk.device()) + " -o " + Quote(image) + " --snapshot " +
                     mode + dry + " --allow-crash-consistent " + Quote(disk.partition(2)) +
                     " --allow-crash-consistent /nonexistent"));
      EXPECT_EQ(typo.exit_code, 2) << typo.err;
      EXPECT_NE(typo.err.find("--allow-crash-consistent /nonexistent"), std::string::npos)
          << typo.err;
      EXPECT_FALSE(testing::PathExists(image));
      testing::Run("rm -f " + Quote(image));  // for the next round, if this one failed
    }
  }
  // Allowed by its mount point: the image is made, and says which member was not frozen.
  CommandResult ok = Sh(Hotsnap("backup " + Quote(disk.device()) + " -o " + Quote(image) +
                                " --snapshot freeze --allow-crash-consistent " + Quote(fat.path)));
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.err.find("not frozen (--allow-crash-consistent): " + disk.partition(3) + " at " +
                        fat.path),
            std::string::npos)
      << ok.err;
  auto info = nlohmann::json::parse(RunOk(Hotsnap("info --json " + Quote(image))).out);
  EXPECT_EQ(info["crash_consistent"],
            nlohmann::json::array({disk.partition(3) + " at " + fat.path}));
}

}  // namespace
}  // namespace hotsnap
