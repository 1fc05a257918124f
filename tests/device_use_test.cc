// Tests for snapshot/device_use.h and snapshot/proc_tables.h: the mountinfo and swaps parsers
// on literal text, then InspectDeviceUse / OpenExclusiveForWrite on real loop devices, mounts
// and swap areas (privileged).
#include "snapshot/device_use.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::CommandResult;
using ::hotsnap::testing::LoopDevice;
using ::hotsnap::testing::MountPoint;
using ::hotsnap::testing::Quote;
using ::hotsnap::testing::RunOk;
using ::hotsnap::testing::TempDir;

// Inside TEST bodies a plain Run() would name ::testing::Test::Run.
CommandResult Shell(const std::string& command) { return ::hotsnap::testing::Run(command); }

constexpr uint64_t kMiB = 1024 * 1024;

// ---- ParseMountInfo -------------------------------------------------------------------------

TEST(ParseMountInfoTest, ParsesAllFieldsOfTheProcManExample) {
  std::vector<MountInfoEntry> entries = ParseMountInfo(
      "36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n");
  ASSERT_EQ(entries.size(), 1u);
  const MountInfoEntry& e = entries[0];
  EXPECT_EQ(e.mount_id, 36);
  EXPECT_EQ(e.parent_id, 35);
  EXPECT_EQ(e.major, 98u);
  EXPECT_EQ(e.minor, 0u);
  EXPECT_EQ(e.root, "/mnt1");
  EXPECT_EQ(e.mount_point, "/mnt/parent");
  EXPECT_EQ(e.mount_options, "rw,noatime");
  EXPECT_EQ(e.optional_fields, std::vector<std::string>{"master:1"});
  EXPECT_EQ(e.fs_type, "ext3");
  EXPECT_EQ(e.source, "/dev/root");
  EXPECT_EQ(e.super_options, "rw,errors=continue");
  EXPECT_TRUE(e.read_write());
}

TEST(ParseMountInfoTest, HandlesZeroAndSeveralOptionalFields) {
  std::vector<MountInfoEntry> entries = ParseMountInfo(
      "21 26 0:20 / /proc rw,relatime - proc proc rw\n"
      "40 26 7:3 / /mnt/a rw,relatime shared:5 master:2 propagate_from:1 unbindable - xfs "
      "/dev/loop3 rw,attr2\n");
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_TRUE(entries[0].optional_fields.empty());
  EXPECT_EQ(entries[0].fs_type, "proc");
  EXPECT_EQ(entries[1].optional_fields,
            (std::vector<std::string>{"shared:5", "master:2", "propagate_from:1", "unbindable"}));
  EXPECT_EQ(entries[1].fs_type, "xfs");
  EXPECT_EQ(entries[1].source, "/dev/loop3");
  EXPECT_EQ(entries[1].minor, 3u);
}

TEST(ParseMountInfoTest, DecodesOctalEscapesInPathsAndSource) {
  std::vector<MountInfoEntry> entries = ParseMountInfo(
      "50 26 7:1 /sub\\040dir /mnt/my\\040data\\011tab\\134back rw - ext4 "
      "/dev/disk/by-label/a\\040b rw\n");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].root, "/sub dir");
  EXPECT_EQ(entries[0].mount_point, "/mnt/my data\ttab\\back");
  EXPECT_EQ(entries[0].source, "/dev/disk/by-label/a b");
}

TEST(ParseMountInfoTest, ReadWriteOnlyWhenTheMountOptionsSayRw) {
  std::vector<MountInfoEntry> entries = ParseMountInfo(
      // A read-only bind mount of a writable superblock: not writable through this mount.
      "60 26 7:1 / /mnt/robind ro,relatime - ext4 /dev/loop1 rw\n"
      // A plain read-only mount.
      "61 26 7:2 / /mnt/ro ro,relatime - ext4 /dev/loop2 ro\n"
      // A superblock that went read-only after an error: not writable by any mount.
      "62 26 7:3 / /mnt/errored rw,relatime - ext4 /dev/loop3 ro,errors=remount-ro\n"
      // "rw" must be a whole option, not a prefix of another one.
      "63 26 7:4 / /mnt/odd ro,rwfoo - ext4 /dev/loop4 rw\n"
      "64 26 7:5 / /mnt/rw noatime,rw - ext4 /dev/loop5 rw\n");
  ASSERT_EQ(entries.size(), 5u);
  EXPECT_FALSE(entries[0].read_write());
  EXPECT_FALSE(entries[1].read_write());
  EXPECT_FALSE(entries[2].read_write());
  EXPECT_FALSE(entries[3].read_write());
  EXPECT_TRUE(entries[4].read_write());
}

TEST(ParseMountInfoTest, EmptySourceAndMalformedLinesAndMissingNewline) {
  std::vector<MountInfoEntry> entries = ParseMountInfo(
      "this is not mountinfo\n"
      "70 26 0:40 / /mnt/nosource rw - tmpfs  rw,size=10k\n"  // empty source field
      "71 26 x:1 / /bad rw - ext4 /dev/x rw\n"                // bad device number
      "72 26 8:1 / /no-separator rw ext4 /dev/sda1 rw\n"      // no " - "
      "\n"
      "73 26 8:1 / /last rw - ext4 /dev/sda1 rw");  // no final newline
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].mount_point, "/mnt/nosource");
  EXPECT_EQ(entries[0].source, "");
  EXPECT_EQ(entries[0].super_options, "rw,size=10k");
  EXPECT_EQ(entries[1].mount_point, "/last");
  EXPECT_EQ(entries[1].major, 8u);
}

TEST(UnescapeOctalTest, DecodesOnlyThreeDigitOctal) {
  EXPECT_EQ(UnescapeOctal("a\\040b"), "a b");
  EXPECT_EQ(UnescapeOctal("\\012\\134"), "\n\\");
  EXPECT_EQ(UnescapeOctal("keep\\x41\\9\\04"), "keep\\x41\\9\\04");  // not escapes: kept
  EXPECT_EQ(UnescapeOctal("end\\"), "end\\");
}

// ---- ParseSwaps -----------------------------------------------------------------------------

TEST(ParseSwapsTest, ParsesEntriesAndSkipsHeader) {
  std::vector<SwapEntry> entries = ParseSwaps(
      "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
      "/dev/zram0                              partition\t8388604\t\t1024\t\t100\n"
      "/var/swap\\040file                       file\t\t1048572\t\t0\t\t-2\n"
      "/old/swapfile (deleted)                 file\t\t4096\t\t0\t\t-3\n");
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].path, "/dev/zram0");
  EXPECT_EQ(entries[0].type, "partition");
  EXPECT_EQ(entries[0].size_kib, 8388604u);
  EXPECT_EQ(entries[0].used_kib, 1024u);
  EXPECT_EQ(entries[0].priority, 100);
  EXPECT_EQ(entries[1].path, "/var/swap file");
  EXPECT_EQ(entries[1].type, "file");
  EXPECT_EQ(entries[1].priority, -2);
  EXPECT_EQ(entries[2].path, "/old/swapfile (deleted)");
  EXPECT_EQ(entries[2].priority, -3);
}

TEST(ParseSwapsTest, EmptyTableAndGarbage) {
  EXPECT_TRUE(ParseSwaps("Filename\tType\tSize\tUsed\tPriority\n").empty());
  EXPECT_TRUE(ParseSwaps("").empty());
  EXPECT_TRUE(ParseSwaps("/dev/sda2 partition many 0 -2\n/dev/sda3 partition 1\n").empty());
}

// ---- DeviceUse ------------------------------------------------------------------------------

TEST(DeviceUseTest, DescribeAndPredicates) {
  DeviceUse none;
  EXPECT_FALSE(none.in_use());
  EXPECT_FALSE(none.mounted_read_write());
  EXPECT_EQ(none.Describe(), "not in use");

  DeviceUse ro;
  ro.mounts.push_back({"/dev/loop3p1", "/mnt/data", "ext4", false});
  EXPECT_TRUE(ro.in_use());
  EXPECT_FALSE(ro.mounted_read_write());
  EXPECT_EQ(ro.Describe(), "mounted read-only at /mnt/data (/dev/loop3p1, ext4)");

  DeviceUse all = ro;
  all.mounts.push_back({"/dev/loop3p2", "/srv", "xfs", true});
  all.swaps.push_back("/dev/loop3p3");
  all.holders.push_back("dm-0");
  EXPECT_TRUE(all.mounted_read_write());
  EXPECT_EQ(all.Describe(),
            "mounted read-only at /mnt/data (/dev/loop3p1, ext4); mounted read-write at /srv "
            "(/dev/loop3p2, xfs); active swap /dev/loop3p3; held by dm-0");

  DeviceUse held;
  held.holders.push_back("dm-1");
  EXPECT_TRUE(held.in_use());
  DeviceUse swap;
  swap.swaps.push_back("/dev/loop1");
  EXPECT_TRUE(swap.in_use());
}

TEST(InspectDeviceUseTest, MissingPathIsAnErrorNamingIt) {
  Result<DeviceUse> use = InspectDeviceUse("/nonexistent/hotsnap-device", Code::kSource);
  ASSERT_FALSE(use.ok());
  EXPECT_EQ(use.status().code(), Code::kSource);
  EXPECT_NE(use.status().message().find("/nonexistent/hotsnap-device"), std::string::npos);
  EXPECT_EQ(use.status().err(), ENOENT);

  Result<UniqueFd> fd = OpenExclusiveForWrite("/nonexistent/hotsnap-device", 0);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), Code::kTarget);
}

TEST(InspectDeviceUseTest, DirectoryIsRefused) {
  TempDir dir;
  Result<DeviceUse> use = InspectDeviceUse(dir.path(), Code::kTarget);
  ASSERT_FALSE(use.ok());
  EXPECT_EQ(use.status().code(), Code::kTarget);
  EXPECT_NE(use.status().message().find(dir.path()), std::string::npos);
}

TEST(InspectDeviceUseTest, UnattachedRegularFileIsNotInUse) {
  TempDir dir;
  std::string file = dir.File("plain.img");
  RunOk("truncate -s 1M " + Quote(file));
  Result<DeviceUse> use = InspectDeviceUse(file);
  ASSERT_TRUE(use.ok()) << use.status().message();
  EXPECT_FALSE(use->in_use()) << use->Describe();
}

// ---- Privileged: real loop devices ----------------------------------------------------------

// A loop device attached with partition scanning (losetup -P) over a file that already holds
// an MBR with one Linux partition from 1 MiB to the end. Detached on destruction.
class PartitionedLoop {
 public:
  PartitionedLoop(const std::string& dir, uint64_t size_bytes) : file_(dir + "/parted.img") {
    RunOk("truncate -s " + std::to_string(size_bytes) + " " + Quote(file_));
    WriteMbr(size_bytes);
    CommandResult r = RunOk("losetup -f --show -P " + Quote(file_));
    device_ = r.out.substr(0, r.out.find('\n'));
    partition_ = device_ + "p1";
    // A kernel built without the MBR parser (CONFIG_MSDOS_PARTITION unset) finds nothing in
    // the scan; then let partx read the table and add the partition with BLKPG.
    if (!device_.empty() && access(partition_.c_str(), F_OK) != 0) {
      RunOk("partx -a " + Quote(device_));
    }
    for (int i = 0; i < 100 && access(partition_.c_str(), F_OK) != 0; ++i) usleep(20000);
  }
  ~PartitionedLoop() {
    if (!device_.empty()) Shell("losetup -d " + Quote(device_));
    unlink(file_.c_str());
  }
  PartitionedLoop(const PartitionedLoop&) = delete;
  PartitionedLoop& operator=(const PartitionedLoop&) = delete;
  const std::string& device() const { return device_; }
  const std::string& partition() const { return partition_; }

 private:
  // sfdisk/parted are not always installed; an MBR with one entry is 16 bytes and a signature.
  void WriteMbr(uint64_t size_bytes) {
    unsigned char sector[512] = {};
    uint32_t first_lba = 2048;
    uint32_t sectors = static_cast<uint32_t>(size_bytes / 512) - first_lba;
    unsigned char* entry = sector + 446;
    entry[4] = 0x83;                        // Linux
    std::memcpy(entry + 8, &first_lba, 4);  // little-endian on x86/arm
    std::memcpy(entry + 12, &sectors, 4);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    std::fstream out(file_, std::ios::in | std::ios::out | std::ios::binary);
    out.write(reinterpret_cast<const char*>(sector), sizeof(sector));
    ASSERT_TRUE(out.good()) << "writing MBR to " << file_;
  }

  std::string file_;
  std::string device_;
  std::string partition_;
};

// swapon in the constructor, swapoff in the destructor.
class ActiveSwap {
 public:
  explicit ActiveSwap(const std::string& device) : device_(device) {
    RunOk("mkswap " + Quote(device_));
    active_ = RunOk("swapon " + Quote(device_)).exit_code == 0;
  }
  ~ActiveSwap() {
    if (active_) Shell("swapoff " + Quote(device_));
  }
  ActiveSwap(const ActiveSwap&) = delete;
  ActiveSwap& operator=(const ActiveSwap&) = delete;
  bool active() const { return active_; }

 private:
  std::string device_;
  bool active_ = false;
};

void MakeExt4(const std::string& device) { RunOk("mkfs.ext4 -q -F " + Quote(device)); }

TEST(InspectDeviceUsePrivilegedTest, UnmountedLoopDeviceIsNotInUse) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 32 * kMiB);
  MakeExt4(loop.device());
  Result<DeviceUse> use = InspectDeviceUse(loop.device());
  ASSERT_TRUE(use.ok()) << use.status().message();
  EXPECT_FALSE(use->in_use()) << use->Describe();
  EXPECT_FALSE(use->mounted_read_write());
  EXPECT_EQ(use->Describe(), "not in use");
}

TEST(InspectDeviceUsePrivilegedTest, MountedReadWriteExt4) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 32 * kMiB);
  MakeExt4(loop.device());
  MountPoint mount(loop.device(), dir.File("mnt"));
  Result<DeviceUse> use = InspectDeviceUse(loop.device());
  ASSERT_TRUE(use.ok()) << use.status().message();
  ASSERT_EQ(use->mounts.size(), 1u) << use->Describe();
  EXPECT_TRUE(use->mounted_read_write());
  EXPECT_TRUE(use->in_use());
  EXPECT_EQ(use->mounts[0].mount_point, mount.path());
  EXPECT_EQ(use->mounts[0].device, loop.device());
  EXPECT_EQ(use->mounts[0].fs_type, "ext4");
  EXPECT_EQ(use->Describe(),
            "mounted read-write at " + mount.path() + " (" + loop.device() + ", ext4)");

  // Once unmounted, the same device is free again.
  mount.Unmount();
  use = InspectDeviceUse(loop.device());
  ASSERT_TRUE(use.ok()) << use.status().message();
  EXPECT_FALSE(use->in_use()) << use->Describe();
}

TEST(InspectDeviceUsePrivilegedTest, MountedReadOnlyIsMountedButNotReadWrite) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 32 * kMiB);
  MakeExt4(loop.device());
  MountPoint mount(loop.device(), dir.File("mnt"), "ro");
  Result<DeviceUse> use = InspectDeviceUse(loop.device());
  ASSERT_TRUE(use.ok()) << use.status().message();
  ASSERT_EQ(use->mounts.size(), 1u) << use->Describe();
  EXPECT_FALSE(use->mounts[0].read_write);
  EXPECT_FALSE(use->mounted_read_write());
  EXPECT_TRUE(use->in_use());
  EXPECT_NE(use->Describe().find("mounted read-only at " + mount.path()), std::string::npos);
}

TEST(InspectDeviceUsePrivilegedTest, MatchesByDeviceNumberThroughAliasesAndEscapedPaths) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 32 * kMiB);
  MakeExt4(loop.device());
  // A mount point whose name the kernel escapes in mountinfo (\040, \011).
  MountPoint mount(loop.device(), dir.File("with space\tand tab"));
  // A symlink, like /dev/disk/by-*, and a second device node with another name.
  std::string link = dir.File("by-alias");
  ASSERT_EQ(symlink(loop.device().c_str(), link.c_str()), 0) << strerror(errno);
  struct stat st {};
  ASSERT_EQ(stat(loop.device().c_str(), &st), 0);
  std::string node = dir.File("othernode");
  ASSERT_EQ(mknod(node.c_str(), S_IFBLK | 0600, st.st_rdev), 0) << strerror(errno);

  for (const std::string& path : {link, node}) {
    Result<DeviceUse> use = InspectDeviceUse(path);
    ASSERT_TRUE(use.ok()) << path << ": " << use.status().message();
    ASSERT_EQ(use->mounts.size(), 1u) << path << ": " << use->Describe();
    EXPECT_EQ(use->mounts[0].mount_point, mount.path()) << path;
    EXPECT_EQ(use->mounts[0].device, loop.device()) << path;
    EXPECT_TRUE(use->mounted_read_write()) << path;
  }
}

// btrfs reports an anonymous device number (0:NN) in mountinfo, not the device's; the mount
// must still be found, through the source device node.
TEST(InspectDeviceUsePrivilegedTest, BtrfsMountWithAnonymousDeviceNumber) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  if (Shell("command -v mkfs.btrfs && grep -qw btrfs /proc/filesystems").exit_code != 0) {
    if (::hotsnap::testing::InCi()) FAIL() << "CI=true but " << "needs mkfs.btrfs (btrfs-progs) and btrfs in the kernel";
    GTEST_SKIP() << "needs mkfs.btrfs (btrfs-progs) and btrfs in the kernel";
  }
  TempDir dir;
  LoopDevice loop(dir.path(), 128 * kMiB);
  RunOk("mkfs.btrfs -q -f " + Quote(loop.device()));
  MountPoint mount(loop.device(), dir.File("mnt"));
  struct stat st {};
  ASSERT_EQ(stat(mount.path().c_str(), &st), 0);
  struct stat dev_st {};
  ASSERT_EQ(stat(loop.device().c_str(), &dev_st), 0);
  ASSERT_NE(st.st_dev, dev_st.st_rdev) << "btrfs no longer uses an anonymous device number";

  Result<DeviceUse> use = InspectDeviceUse(loop.device());
  ASSERT_TRUE(use.ok()) << use.status().message();
  ASSERT_EQ(use->mounts.size(), 1u) << use->Describe();
  EXPECT_EQ(use->mounts[0].mount_point, mount.path());
  EXPECT_EQ(use->mounts[0].fs_type, "btrfs");
  EXPECT_TRUE(use->mounted_read_write());
}

TEST(InspectDeviceUsePrivilegedTest, WholeDiskReportsItsMountedPartition) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  PartitionedLoop disk(dir.path(), 48 * kMiB);
  ASSERT_FALSE(disk.device().empty());
  ASSERT_EQ(access(disk.partition().c_str(), F_OK), 0)
      << "partition scan gave no " << disk.partition();
  MakeExt4(disk.partition());

  Result<DeviceUse> before = InspectDeviceUse(disk.device());
  ASSERT_TRUE(before.ok()) << before.status().message();
  EXPECT_FALSE(before->in_use()) << before->Describe();

  MountPoint mount(disk.partition(), dir.File("mnt"));
  for (const std::string& path : {disk.device(), disk.partition()}) {
    Result<DeviceUse> use = InspectDeviceUse(path);
    ASSERT_TRUE(use.ok()) << path << ": " << use.status().message();
    ASSERT_EQ(use->mounts.size(), 1u) << path << ": " << use->Describe();
    EXPECT_EQ(use->mounts[0].device, disk.partition()) << path;
    EXPECT_EQ(use->mounts[0].mount_point, mount.path()) << path;
    EXPECT_TRUE(use->mounted_read_write()) << path;
  }
  Result<UniqueFd> fd = OpenExclusiveForWrite(disk.device(), 0);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), Code::kTarget);
  EXPECT_NE(fd.status().message().find(disk.device()), std::string::npos);
  EXPECT_NE(fd.status().message().find("mounted read-write at " + mount.path()), std::string::npos)
      << fd.status().message();
}

TEST(InspectDeviceUsePrivilegedTest, RegularFileBehindMountedLoopDevice) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 32 * kMiB, "vm disk.img");
  MakeExt4(loop.device());

  Result<DeviceUse> attached = InspectDeviceUse(loop.backing_file());
  ASSERT_TRUE(attached.ok()) << attached.status().message();
  EXPECT_FALSE(attached->in_use()) << "attached but unmounted: " << attached->Describe();

  MountPoint mount(loop.device(), dir.File("mnt"), "ro");
  // Through the file path, and through a symlink to it.
  std::string link = dir.File("link.img");
  ASSERT_EQ(symlink(loop.backing_file().c_str(), link.c_str()), 0);
  for (const std::string& path : {loop.backing_file(), link}) {
    Result<DeviceUse> use = InspectDeviceUse(path);
    ASSERT_TRUE(use.ok()) << use.status().message();
    ASSERT_EQ(use->mounts.size(), 1u) << path << ": " << use->Describe();
    EXPECT_EQ(use->mounts[0].device, loop.device());
    EXPECT_EQ(use->mounts[0].mount_point, mount.path());
    EXPECT_FALSE(use->mounted_read_write());
  }

  Result<UniqueFd> fd = OpenExclusiveForWrite(loop.backing_file(), 0);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), Code::kTarget);
  EXPECT_NE(fd.status().message().find("mounted read-only at " + mount.path()), std::string::npos)
      << fd.status().message();
}

TEST(InspectDeviceUsePrivilegedTest, NewFileAtTheDeletedBackingFilesPathIsNotInUse) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 32 * kMiB);
  MakeExt4(loop.device());
  MountPoint mount(loop.device(), dir.File("mnt"));
  // The loop device keeps the unlinked file; sysfs now shows "<path> (deleted)".
  ASSERT_EQ(unlink(loop.backing_file().c_str()), 0);
  RunOk("truncate -s 1M " + Quote(loop.backing_file()));
  Result<DeviceUse> use = InspectDeviceUse(loop.backing_file());
  ASSERT_TRUE(use.ok()) << use.status().message();
  EXPECT_FALSE(use->in_use()) << use->Describe();
  // The device itself is of course still mounted.
  Result<DeviceUse> device_use = InspectDeviceUse(loop.device());
  ASSERT_TRUE(device_use.ok());
  EXPECT_TRUE(device_use->mounted_read_write());
}

TEST(InspectDeviceUsePrivilegedTest, ActiveSwapIsReportedAndRefused) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 32 * kMiB);
  ActiveSwap swap(loop.device());
  ASSERT_TRUE(swap.active());

  Result<DeviceUse> use = InspectDeviceUse(loop.device());
  ASSERT_TRUE(use.ok()) << use.status().message();
  ASSERT_EQ(use->swaps.size(), 1u) << use->Describe();
  EXPECT_EQ(use->swaps[0], loop.device());
  EXPECT_TRUE(use->mounts.empty());
  EXPECT_TRUE(use->in_use());
  EXPECT_FALSE(use->mounted_read_write());

  // Through the backing file as well.
  Result<DeviceUse> file_use = InspectDeviceUse(loop.backing_file());
  ASSERT_TRUE(file_use.ok()) << file_use.status().message();
  EXPECT_EQ(file_use->swaps.size(), 1u) << file_use->Describe();

  Result<UniqueFd> fd = OpenExclusiveForWrite(loop.device(), O_DIRECT);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), Code::kTarget);
  EXPECT_NE(fd.status().message().find(loop.device()), std::string::npos);
  EXPECT_NE(fd.status().message().find("swap"), std::string::npos) << fd.status().message();
}

// Holders (device-mapper, md) cannot be created on the host kernel, which has no
// device-mapper, so holder detection has no host test; a VM scenario is the place for one.
TEST(OpenExclusiveForWriteTest, FreeLoopDeviceOpensAndIsClaimed) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 8 * kMiB);
  Result<UniqueFd> fd = OpenExclusiveForWrite(loop.device(), O_DIRECT);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  ASSERT_TRUE(fd->valid());
  int flags = fcntl(fd->get(), F_GETFL);
  EXPECT_EQ(flags & O_ACCMODE, O_WRONLY);
  EXPECT_NE(flags & O_DIRECT, 0);
  EXPECT_NE(fcntl(fd->get(), F_GETFD) & FD_CLOEXEC, 0);
  // It writes.
  alignas(4096) static char block[4096];
  std::memset(block, 0xab, sizeof(block));
  EXPECT_EQ(pwrite(fd->get(), block, sizeof(block), 0), static_cast<ssize_t>(sizeof(block)));

  // While the descriptor is open it holds the exclusive claim: a second exclusive open gets
  // EBUSY, which InspectDeviceUse cannot see and OpenExclusiveForWrite reports as such.
  Result<UniqueFd> second = OpenExclusiveForWrite(loop.device(), 0);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::kTarget);
  EXPECT_EQ(second.status().err(), EBUSY);
  EXPECT_NE(second.status().message().find("EBUSY from O_EXCL"), std::string::npos)
      << second.status().message();
  EXPECT_NE(second.status().message().find(loop.device()), std::string::npos);

  // Closing releases the claim.
  fd->Reset();
  Result<UniqueFd> third = OpenExclusiveForWrite(loop.device(), O_RDWR);
  ASSERT_TRUE(third.ok()) << third.status().message();
  EXPECT_EQ(fcntl(third->get(), F_GETFL) & O_ACCMODE, O_RDWR);
}

TEST(OpenExclusiveForWriteTest, FreeRegularFileOpens) {
  TempDir dir;
  std::string file = dir.File("target.img");
  RunOk("truncate -s 1M " + Quote(file));
  Result<UniqueFd> fd = OpenExclusiveForWrite(file, 0);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  EXPECT_EQ(pwrite(fd->get(), "x", 1, 0), 1);
}

}  // namespace
}  // namespace hotsnap
