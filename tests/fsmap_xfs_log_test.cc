// The XFS log check of the used-block map, on real loop XFS: a filesystem shut down with
// allocations only in its log is read whole, and its restored copy replays to the same files
// as the original; clean, frozen and read-only-remounted filesystems still map used blocks.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <string>

#include "base/unique_fd.h"
#include "fsmap/used_block_map.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::Hotsnap;
using testing::LoopDevice;
using testing::MountPoint;
using testing::Quote;
using testing::RunOk;
using testing::TempDir;
using testing::ThawOnExit;

constexpr uint64_t kMiB = 1 << 20;

CommandResult Shell(const std::string& command) { return ::hotsnap::testing::Run(command); }

// Maps `device` as a backup would: a fresh descriptor, cached pages of the device dropped
// (the filesystem writes around the block device's page cache).
Result<UsedBlockMap> MapDevice(const std::string& device, std::string* notice) {
  UniqueFd fd(open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status(Code::kSource, "open " + device);
  uint64_t bytes = 0;
  if (ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) return Status(Code::kSource, "size " + device);
  posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  return ComputeUsedBlockMap(fd.get(), device, bytes, notice);
}

// sha256 of every regular file under `dir`, by relative path, as one sorted text.
std::string FileDigests(const std::string& dir) {
  return RunOk("cd " + Quote(dir) + " && find . -type f -print0 | sort -z | xargs -0 sha256sum")
      .out;
}

uint64_t NumberAfter(const std::string& text, const std::string& key) {
  size_t at = text.find(key);
  if (at == std::string::npos) return UINT64_MAX;
  return std::stoull(text.substr(at + key.size()));
}

// Files written and synced long before; then a file written, fsynced and the filesystem shut
// down at once, in one xfs_io run: its allocation is in the log, not yet in the AGF and bnobt.
void WriteThenShutDown(const std::string& device, const std::string& mnt) {
  MountPoint m(device, mnt);
  for (int i = 0; i < 8; ++i) {
    RunOk("xfs_io -f -c 'pwrite -q -S 0x" + std::to_string(10 + i) + " 0 1m' " +
          Quote(m.path() + "/early" + std::to_string(i)));
  }
  RunOk("sync");
  RunOk("xfs_io -x -f -c 'pwrite -q -b 1m -S 0xab 0 24m' -c fsync -c 'shutdown -f' " +
        Quote(m.path() + "/late"));
  m.Unmount();
}

TEST(FsmapXfsLog, ShutDownLogReadsEveryBlockAndRestoreReplaysSameFiles) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice source(dir.path(), 512 * kMiB, "source.img");
  RunOk("mkfs.xfs -q -f " + Quote(source.device()));
  WriteThenShutDown(source.device(), dir.File("mnt"));
  // xfs_repair -n refuses a filesystem whose log needs replaying: the premise holds.
  CommandResult repair = Shell("xfs_repair -n " + Quote(source.device()));
  ASSERT_NE(repair.exit_code, 0) << "log is clean after the shutdown:\n" << repair.err;

  std::string notice;
  auto map = MapDevice(source.device(), &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_TRUE(map->all_blocks()) << "a dirty log was trusted; used " << map->used_bytes();
  EXPECT_NE(notice.find("log needs recovery"), std::string::npos) << notice;

  std::string image = dir.File("fs.zst");
  CommandResult b =
      Shell(Hotsnap("backup " + Quote(source.device()) + " --snapshot none -o " + Quote(image)));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.err.find("log needs recovery"), std::string::npos) << b.err;
  CommandResult info = Shell(Hotsnap("info " + Quote(image) + " --json"));
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.out.find("\"used_map\": \"all blocks\""), std::string::npos) << info.out;
  EXPECT_EQ(NumberAfter(info.out, "\"used_bytes\": "), 512 * kMiB) << info.out;

  LoopDevice target(dir.path(), 512 * kMiB, "target.img");
  CommandResult r =
      Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target.device()) + " --force"));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // Both copies replay their log at mount; the files they then hold must be the same.
  std::string original, restored;
  {
    MountPoint m(source.device(), dir.File("orig"));
    original = FileDigests(m.path());
    EXPECT_EQ(testing::SizeOf(m.path() + "/late"), 24 * kMiB);
    EXPECT_EQ(RunOk("tr -d '\\253' < " + Quote(m.path() + "/late") + " | wc -c").out, "0\n")
        << "the original did not replay the late file";
  }
  {
    MountPoint m(target.device(), dir.File("copy"), "nouuid");
    restored = FileDigests(m.path());
  }
  EXPECT_NE(original.find("./late"), std::string::npos) << original;
  EXPECT_EQ(restored, original);
}

TEST(FsmapXfsLog, CleanFrozenAndReadOnlyLogsStillMapUsedBlocks) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 512 * kMiB);
  RunOk("mkfs.xfs -q -f " + Quote(loop.device()));
  std::string notice;
  {
    MountPoint m(loop.device(), dir.File("mnt"));
    RunOk("xfs_io -f -c 'pwrite -q -S 0x61 0 16m' -c fsync " + Quote(m.path() + "/a"));
    {
      // Frozen: the log is covered (superblock-only records), not unmounted.
      RunOk("fsfreeze -f " + Quote(m.path()));
      ThawOnExit thaw(m.path());
      auto frozen = MapDevice(loop.device(), &notice);
      ASSERT_TRUE(frozen.ok()) << frozen.status().message();
      EXPECT_FALSE(frozen->all_blocks()) << "frozen xfs fell back: " << notice;
      EXPECT_LT(frozen->used_bytes(), 128 * kMiB);
      EXPECT_GE(frozen->used_bytes(), 16 * kMiB);
    }
    RunOk("xfs_io -f -c 'pwrite -q -S 0x62 0 8m' -c fsync " + Quote(m.path() + "/b"));
    RunOk("mount -o remount,ro " + Quote(m.path()));
    auto read_only = MapDevice(loop.device(), &notice);
    ASSERT_TRUE(read_only.ok()) << read_only.status().message();
    EXPECT_FALSE(read_only->all_blocks()) << "read-only xfs fell back: " << notice;
    EXPECT_GE(read_only->used_bytes(), 24 * kMiB);
  }
  auto clean = MapDevice(loop.device(), &notice);
  ASSERT_TRUE(clean.ok()) << clean.status().message();
  EXPECT_FALSE(clean->all_blocks()) << "cleanly unmounted xfs fell back: " << notice;
  EXPECT_EQ(notice, "");
  EXPECT_LT(clean->used_bytes(), 128 * kMiB);
}

// A freeze soon after another one, with writes between, covers the log with one superblock
// record whose tail is the record of those writes (inode changes, written back by the freeze):
// what tracked mode's second and later freezes see. The used blocks are still mapped. An
// inode change not written back (the filesystem shut down right after it) is still dirty.
TEST(FsmapXfsLog, InodesWrittenBackByASecondFreezeStillMapUsedBlocks) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 512 * kMiB);
  RunOk("mkfs.xfs -q -f " + Quote(loop.device()));
  std::string notice;
  {
    MountPoint m(loop.device(), dir.File("mnt"));
    const std::string log = Quote(m.path() + "/log");
    RunOk("xfs_io -f -c 'pwrite -q -S 0x61 0 16m' -c fsync " + Quote(m.path() + "/a"));
    for (int round = 0; round < 3; ++round) {
      SCOPED_TRACE("freeze " + std::to_string(round + 1));
      RunOk("for i in $(seq 1 20); do echo $i | dd of=" + log +
            " oflag=append conv=notrunc,fsync status=none; done");
      RunOk("fsfreeze -f " + Quote(m.path()));
      ThawOnExit thaw(m.path());
      auto frozen = MapDevice(loop.device(), &notice);
      ASSERT_TRUE(frozen.ok()) << frozen.status().message();
      EXPECT_FALSE(frozen->all_blocks()) << "frozen xfs fell back: " << notice;
      EXPECT_LT(frozen->used_bytes(), 128 * kMiB);
      EXPECT_GE(frozen->used_bytes(), 16 * kMiB);
    }
    // Everything written back by a freeze; then one inode change (chmod) committed to the log
    // and the filesystem shut down (the log flushed first) before the inode is written back.
    RunOk("fsfreeze -f " + Quote(m.path()) + " && fsfreeze -u " + Quote(m.path()));
    RunOk("chmod 0600 " + log + " && xfs_io -x -c 'shutdown -f' " + log);
    m.Unmount();
  }
  auto shut = MapDevice(loop.device(), &notice);
  ASSERT_TRUE(shut.ok()) << shut.status().message();
  EXPECT_TRUE(shut->all_blocks()) << "an inode change only in the log was taken as written back";
  EXPECT_NE(notice.find("not yet written in place"), std::string::npos) << notice;
}

}  // namespace
}  // namespace hotsnap
