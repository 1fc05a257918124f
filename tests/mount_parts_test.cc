// `hotsnap mount IMAGE DIR` of a whole-disk image: every mountable partition at DIR/pN, on a
// real GPT loop disk (ESP vfat + ext4 + XFS + swap) written by sfdisk and the real mkfs tools
// and backed up by hotsnap. Each filesystem's files are hashed with sha256sum on mounts of the
// source disk's partitions (mount -o loop,offset=...), never through hotsnap. Also: the plan
// (which partitions, where, and what is skipped) from metadata alone, unprivileged.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "io/image_index.h"
#include "mount/mount_plan.h"
#include "tests/partitioned_disk.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::HotsnapBinary;
using testing::ListDir;
using testing::LoopDevice;
using testing::MountPoint;
using testing::PathExists;
using testing::Quote;
using testing::RunOk;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kChunk = 4 * kMiB;

// testing::Run under a name that gtest's Test::Run does not hide inside test bodies.
CommandResult Sh(const std::string& command) { return testing::Run(command); }

// ---- The plan, from metadata alone ---------------------------------------------------------

ImagePartition Part(int number, const std::string& fs, uint64_t start_mib, uint64_t size_mib) {
  ImagePartition p;
  p.number = number;
  p.fs_type = fs;
  p.start_bytes = start_mib * kMiB;
  p.size_bytes = size_mib * kMiB;
  return p;
}

ImageMetadata DiskMeta(std::vector<ImagePartition> parts) {
  ImageMetadata meta;
  meta.device_bytes = 1024 * kMiB;
  meta.partition_table.type = "dos";
  meta.partition_table.partitions = std::move(parts);
  return meta;
}

TEST(MountPlanTest, WholeDiskMountsEachMountablePartitionAtItsNumber) {
  ImagePartition extended = Part(4, "", 300, 700);
  extended.extended = true;
  ImageMetadata meta =
      DiskMeta({Part(1, "vfat", 1, 33), Part(2, "ext4", 36, 96), Part(3, "swap", 132, 16), extended,
                Part(5, "xfs", 301, 320), Part(6, "", 622, 10), Part(7, "crypto_LUKS", 633, 50)});
  auto plan = PlanMounts(meta, "disk.zst", 0, "/mnt/x");
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ASSERT_EQ(plan->mounts.size(), 3u);
  EXPECT_TRUE(plan->whole_disk());
  const int numbers[] = {1, 2, 5};
  const char* types[] = {"vfat", "ext4", "xfs"};
  const char* drivers[] = {"vfat", "ext4", "xfs"};
  const uint64_t starts[] = {1, 36, 301};
  const uint64_t sizes[] = {33, 96, 320};
  for (size_t i = 0; i < 3; ++i) {
    const PlannedMount& m = plan->mounts[i];
    EXPECT_EQ(m.partition, numbers[i]);
    EXPECT_EQ(m.fs_type, types[i]);
    EXPECT_EQ(m.how.type, drivers[i]);
    EXPECT_EQ(m.offset_bytes, starts[i] * kMiB);
    EXPECT_EQ(m.size_bytes, sizes[i] * kMiB);
    EXPECT_EQ(m.mount_point, "/mnt/x/p" + std::to_string(numbers[i]));
    EXPECT_TRUE(m.own_directory);
  }
  EXPECT_EQ(plan->mounts[2].Describe(),
            "partition 5 (xfs at byte " + std::to_string(301 * kMiB) + " of the disk)");
  // Swap, no filesystem and LUKS are skipped with a reason; the extended container silently.
  ASSERT_EQ(plan->skipped.size(), 3u);
  const std::string swap =
      "partition 3 (swap at byte " + std::to_string(132 * kMiB) + " of the disk) is not mounted: ";
  const std::string none = "partition 6 (at byte " + std::to_string(622 * kMiB) +
                           " of the disk) is not mounted: it "
                           "holds no filesystem";
  const std::string luks = "partition 7 (crypto_LUKS at byte " + std::to_string(633 * kMiB) +
                           " of the disk) is not mounted";
  EXPECT_EQ(plan->skipped[0].partition, 3);
  EXPECT_EQ(plan->skipped[0].notice.rfind(swap, 0), 0u) << plan->skipped[0].notice;
  EXPECT_EQ(plan->skipped[1].partition, 6);
  EXPECT_EQ(plan->skipped[1].notice.rfind(none, 0), 0u) << plan->skipped[1].notice;
  EXPECT_EQ(plan->skipped[2].partition, 7);
  EXPECT_EQ(plan->skipped[2].notice.rfind(luks, 0), 0u) << plan->skipped[2].notice;
}

TEST(MountPlanTest, PartitionFlagMountsOnePartitionAtTheDirectoryItself) {
  ImageMetadata meta =
      DiskMeta({Part(1, "ext4", 1, 100), Part(2, "xfs", 101, 320), Part(3, "swap", 421, 16)});
  auto plan = PlanMounts(meta, "disk.zst", 2, "/mnt/x");
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ASSERT_EQ(plan->mounts.size(), 1u);
  EXPECT_FALSE(plan->whole_disk());
  EXPECT_EQ(plan->mounts[0].mount_point, "/mnt/x");
  EXPECT_FALSE(plan->mounts[0].own_directory);
  EXPECT_EQ(plan->mounts[0].offset_bytes, 101 * kMiB);
  EXPECT_EQ(plan->mounts[0].size_bytes, 320 * kMiB);

  auto missing = PlanMounts(meta, "disk.zst", 9, "/mnt/x");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kUsage);
  EXPECT_EQ(missing.status().message(), "disk.zst has no partition 9 (mountable: p1 ext4, p2 xfs)");
  auto swap = PlanMounts(meta, "disk.zst", 3, "/mnt/x");
  ASSERT_FALSE(swap.ok());
  EXPECT_EQ(swap.status().code(), Code::kUnsupported);
  EXPECT_NE(swap.status().message().find("partition 3 (swap at byte " + std::to_string(421 * kMiB) +
                                         " of the disk) of disk.zst: "),
            std::string::npos)
      << swap.status().message();
}

TEST(MountPlanTest, OneFilesystemImageMountsAtTheDirectoryAndRefusesPartitionFlag) {
  ImageMetadata meta;
  meta.device_bytes = 64 * kMiB;
  meta.fs_type = "xfs";
  auto plan = PlanMounts(meta, "fs.zst", 0, "/mnt/x");
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ASSERT_EQ(plan->mounts.size(), 1u);
  EXPECT_EQ(plan->mounts[0].mount_point, "/mnt/x");
  EXPECT_EQ(plan->mounts[0].partition, 0);
  EXPECT_EQ(plan->mounts[0].offset_bytes, 0u);
  EXPECT_EQ(plan->mounts[0].size_bytes, 0u);
  EXPECT_FALSE(plan->whole_disk());
  auto flagged = PlanMounts(meta, "fs.zst", 1, "/mnt/x");
  ASSERT_FALSE(flagged.ok());
  EXPECT_EQ(flagged.status().code(), Code::kUsage);
}

TEST(MountPlanTest, DiskWithNothingMountableIsRefusedSayingWhy) {
  auto plan =
      PlanMounts(DiskMeta({Part(1, "swap", 1, 16), Part(2, "", 17, 10)}), "disk.zst", 0, "/mnt/x");
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), Code::kUnsupported);
  EXPECT_NE(plan.status().message().find("whole dos disk with no partition hotsnap can mount; "
                                         "partition 1 (swap at byte 1048576 of "
                                         "the disk) is not mounted"),
            std::string::npos)
      << plan.status().message();
}

// ---- The real disk ----------------------------------------------------------------------------

// One partition of the test disk, in 512-byte sectors.
struct PartSpec {
  int number;
  uint64_t start_sectors;
  uint64_t size_sectors;
  std::string sfdisk_type;  // gpt: "U" ESP, "L" Linux, "S" swap
  std::string fs;           // "vfat", "ext4", "xfs", "swap"
  uint64_t start() const { return start_sectors * 512; }
  uint64_t bytes() const { return size_sectors * 512; }
};

// ESP + ext4 + XFS + swap. The XFS starts on a 4 MiB chunk boundary (chunk 33), so that chunk
// holds XFS bytes only.
const std::vector<PartSpec>& Parts() {
  static const std::vector<PartSpec> parts = {
      {1, 2048, 67584, "U", "vfat"},     // 33 MiB at 1 MiB
      {2, 73728, 196608, "L", "ext4"},   // 96 MiB at 36 MiB
      {3, 270336, 655360, "L", "xfs"},   // 320 MiB at 132 MiB
      {4, 925696, 32768, "S", "swap"}};  // 16 MiB at 452 MiB
  return parts;
}
constexpr uint64_t kDiskBytes = 472 * kMiB;
const PartSpec& Ext4() { return Parts()[1]; }
const PartSpec& Xfs() { return Parts()[2]; }

// sha256 of every regular file under `dir`, "hash  ./path" lines sorted by path.
std::string TreeSums(const std::string& dir) {
  return Sh("cd " + Quote(dir) + " && find . -type f -print0 | sort -z | xargs -0 -r sha256sum")
      .out;
}

// The source disk, its image and the hashes of its files: built once per test suite run.
struct SourceDisk {
  std::unique_ptr<TempDir> dir;
  std::string image;
  std::string ext4_sums;
  std::string xfs_sums;
};
SourceDisk* source = nullptr;

// Makes `spec.fs` on a scratch file, fills ext4 and xfs with files (random data, a small tree,
// a symlink, and data written then deleted), and copies it into its partition.
void MakePartition(const std::string& dir, const std::string& disk_file, const PartSpec& spec) {
  std::string scratch = dir + "/scratch.img";
  RunOk("rm -f " + Quote(scratch) + " && truncate -s " + std::to_string(spec.bytes()) + " " +
        Quote(scratch));
  std::string mkfs = spec.fs == "vfat"   ? "mkfs.vfat -n ESP"
                     : spec.fs == "ext4" ? "mkfs.ext4 -q -F -L root"
                     : spec.fs == "xfs"  ? "mkfs.xfs -q -f -L data"
                                         : "mkswap -L swap";
  RunOk(mkfs + " " + Quote(scratch) + " >/dev/null");
  if (spec.fs == "ext4" || spec.fs == "xfs") {
    MountPoint m(scratch, dir + "/fill", "loop");
    std::string p = Quote(m.path());
    RunOk("head -c 5M /dev/urandom > " + p + "/random-" + spec.fs + ".bin && mkdir -p " + p +
          "/etc/conf && for i in $(seq 1 30); do echo " + spec.fs + " line $i > " + p +
          "/etc/conf/file$i; done && ln -s etc/conf/file1 " + p +
          "/link && head -c 8M /dev/urandom > " + p + "/deleted.bin && sync && rm " + p +
          "/deleted.bin && sync");
  }
  RunOk("dd if=" + Quote(scratch) + " of=" + Quote(disk_file) + " bs=1M oflag=seek_bytes seek=" +
        std::to_string(spec.start()) + " conv=notrunc,sparse,fsync status=none");
  RunOk("rm -f " + Quote(scratch));
}

// The files of partition `spec` of the source disk, hashed on a read-only mount of its byte
// range (util-linux's loop,offset,sizelimit over the disk's device: not hotsnap).
std::string SourceSums(const std::string& dir, const std::string& disk_device,
                       const PartSpec& spec) {
  MountPoint m(disk_device, dir + "/source-p" + std::to_string(spec.number),
               "ro,loop,offset=" + std::to_string(spec.start()) +
                   ",sizelimit=" + std::to_string(spec.bytes()));
  return TreeSums(m.path());
}

void BuildSource() {
  source = new SourceDisk;
  source->dir = std::make_unique<TempDir>();
  const std::string dir = source->dir->path();
  LoopDevice disk(dir, kDiskBytes, "source.img");
  std::string script = "label: gpt\n";
  for (const PartSpec& p : Parts()) {
    script += "start=" + std::to_string(p.start_sectors) +
              ",size=" + std::to_string(p.size_sectors) + ",type=" + p.sfdisk_type + "\n";
  }
  testing::WritePartitionTable(disk.device(), script);
  for (const PartSpec& p : Parts()) MakePartition(dir, disk.backing_file(), p);
  source->ext4_sums = SourceSums(dir, disk.device(), Ext4());
  source->xfs_sums = SourceSums(dir, disk.device(), Xfs());
  source->image = dir + "/disk.zst";
  RunOk(Quote(HotsnapBinary()) + " backup " + Quote(disk.device()) + " -o " + Quote(source->image) +
        " --no-progress --quiet");
}

// A hotsnap mount owned by the test: unmounted (and leftovers cleaned) on destruction.
class HotsnapMount {
 public:
  HotsnapMount(std::string env, std::string image, std::string dir)
      : env_(std::move(env)), image_(std::move(image)), dir_(std::move(dir)) {}
  ~HotsnapMount() {
    if (mounted_) Sh(env_ + Quote(HotsnapBinary()) + " umount " + Quote(dir_));
    Sh(env_ + Quote(HotsnapBinary()) + " cleanup");
  }
  CommandResult Mount(const std::string& flags = "") {
    mkdir(dir_.c_str(), 0755);
    CommandResult r =
        Sh(env_ + Quote(HotsnapBinary()) + " mount " + Quote(image_) + " " + Quote(dir_) + flags);
    mounted_ = r.exit_code == 0;
    return r;
  }
  CommandResult Umount() {
    CommandResult r = Sh(env_ + Quote(HotsnapBinary()) + " umount " + Quote(dir_));
    if (r.exit_code == 0) mounted_ = false;
    return r;
  }
  const std::string& dir() const { return dir_; }
  std::string Part(int n) const { return dir_ + "/p" + std::to_string(n); }

 private:
  std::string env_;
  std::string image_;
  std::string dir_;
  bool mounted_ = false;
};

// Whether this kernel knows vfat now (built in or loaded); with modules it may load it on mount.
bool KernelListsVfat() { return Sh("grep -qw vfat /proc/filesystems").exit_code == 0; }

class MountPartsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (testing::PrivilegeProblem().empty()) BuildSource();
  }
  static void TearDownTestSuite() {
    delete source;
    source = nullptr;
  }

  void SetUp() override {
    run_dir_ = dir_.File("run");
    env_ = "HOTSNAP_RUN_DIR=" + Quote(run_dir_) + " ";
  }

  // Nothing of ours is left: no mount under the run dir or `mount_dir`, no loop device over a
  // file in the run dir, no record.
  void ExpectNothingLeft(const std::string& mount_dir) {
    std::string mounts = RunOk("cat /proc/self/mountinfo").out;
    EXPECT_EQ(mounts.find(run_dir_), std::string::npos) << mounts;
    EXPECT_EQ(mounts.find(" " + mount_dir + " "), std::string::npos) << mounts;
    EXPECT_EQ(mounts.find(" " + mount_dir + "/"), std::string::npos) << mounts;
    EXPECT_EQ(RunOk("findmnt -rn -o TARGET | grep -c " + Quote(mount_dir) + " || true").out, "0\n");
    std::string loops = RunOk("losetup -a").out;
    EXPECT_EQ(loops.find(run_dir_), std::string::npos) << loops;
    EXPECT_EQ(ListDir(run_dir_ + "/mounts"), std::vector<std::string>{});
  }

  // The loop devices over this test's FUSE file.
  int LoopsOverOurFile() {
    std::string n = RunOk("losetup -a | grep -c " + Quote(run_dir_) + " || true").out;
    return std::stoi(n);
  }

  TempDir dir_;
  std::string run_dir_;
  std::string env_;
};

TEST_F(MountPartsTest, EveryPartitionMountsAtItsNumberAndUmountLeavesNothing) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NE(source, nullptr);
  ASSERT_GT(source->ext4_sums.size(), 1000u);
  ASSERT_GT(source->xfs_sums.size(), 1000u);
  ASSERT_NE(source->ext4_sums, source->xfs_sums);
  HotsnapMount m(env_, source->image, dir_.File("mnt"));
  CommandResult r = m.Mount();
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // p2 (ext4) and p3 (xfs), each holding its own partition's files, read-only.
  EXPECT_EQ(RunOk("findmnt -no FSTYPE " + Quote(m.Part(2))).out, "ext4\n");
  EXPECT_EQ(RunOk("findmnt -no FSTYPE " + Quote(m.Part(3))).out, "xfs\n");
  EXPECT_EQ(TreeSums(m.Part(2)), source->ext4_sums);
  EXPECT_EQ(TreeSums(m.Part(3)), source->xfs_sums);
  for (int n : {2, 3}) {
    std::string options = RunOk("findmnt -no OPTIONS " + Quote(m.Part(n))).out;
    EXPECT_EQ(options.rfind("ro,", 0), 0u) << options;
    EXPECT_NE(Sh("touch " + Quote(m.Part(n) + "/new")).exit_code, 0);
  }
  // Swap: no directory, and the notice says why.
  EXPECT_FALSE(PathExists(m.Part(4)));
  EXPECT_NE(r.err.find("partition 4 (swap at byte " + std::to_string(Parts()[3].start()) +
                       " of the disk) is not mounted"),
            std::string::npos)
      << r.err;
  // The ESP: mounted if this kernel can, else skipped with a notice naming it and why.
  int loops = 2;
  if (PathExists(m.Part(1))) {
    EXPECT_EQ(RunOk("findmnt -no FSTYPE " + Quote(m.Part(1))).out, "vfat\n");
    loops = 3;
  } else {
    EXPECT_FALSE(KernelListsVfat());
    EXPECT_NE(
        r.err.find(
            "partition 1 (vfat at byte 1048576 of the disk) is not mounted: this kernel has no "
            "vfat driver"),
        std::string::npos)
        << r.err;
    // The notices come in table order, the one found while mounting included.
    EXPECT_LT(r.err.find("partition 1 (vfat"), r.err.find("partition 4 (swap")) << r.err;
  }
  EXPECT_NE(r.err.find("partition 2 (ext4) at " + m.Part(2) + " via /dev/loop"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("partition 3 (xfs) at " + m.Part(3) + " via /dev/loop"), std::string::npos)
      << r.err;
  EXPECT_EQ(LoopsOverOurFile(), loops);
  std::vector<std::string> made = ListDir(m.dir());
  EXPECT_EQ(made.size(), static_cast<size_t>(loops));
  // umount of one partition's directory is refused, pointing at the whole mount.
  r = Sh(env_ + Quote(HotsnapBinary()) + " umount " + Quote(m.Part(2)));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find(m.Part(2) + " is partition 2 of the hotsnap mount at " + m.dir()),
            std::string::npos)
      << r.err;
  EXPECT_EQ(RunOk("findmnt -no FSTYPE " + Quote(m.Part(2))).out, "ext4\n");

  r = m.Umount();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ExpectNothingLeft(m.dir());
  EXPECT_EQ(ListDir(m.dir()), std::vector<std::string>{});
}

TEST_F(MountPartsTest, PartitionFlagStillMountsOnePartitionAloneAtTheDirectory) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NE(source, nullptr);
  HotsnapMount m(env_, source->image, dir_.File("mnt"));
  CommandResult r = m.Mount(" --partition 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(RunOk("findmnt -no FSTYPE " + Quote(m.dir())).out, "xfs\n");
  EXPECT_EQ(TreeSums(m.dir()), source->xfs_sums);
  EXPECT_EQ(LoopsOverOurFile(), 1);
  EXPECT_EQ(m.Umount().exit_code, 0);
  ExpectNothingLeft(m.dir());
  EXPECT_EQ(ListDir(m.dir()), std::vector<std::string>{});
}

TEST_F(MountPartsTest, PartitionDirectoryThatIsAFileUndoesEverythingAndNamesIt) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NE(source, nullptr);
  HotsnapMount m(env_, source->image, dir_.File("mnt"));
  mkdir(m.dir().c_str(), 0755);
  testing::WriteFile(m.Part(3), "not a directory\n");
  CommandResult r = m.Mount();
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(
      r.err.find("partition 3 (xfs at byte " + std::to_string(Xfs().start()) +
                 " of the disk): mount point " + m.Part(3) + " exists and is not a directory"),
      std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("nothing of the mount is left"), std::string::npos) << r.err;
  // p2 was mounted before p3 failed: it is gone again, with its directory; the file stays.
  ExpectNothingLeft(m.dir());
  EXPECT_EQ(ListDir(m.dir()), std::vector<std::string>{"p3"});
  EXPECT_EQ(testing::ReadAll(m.Part(3)), "not a directory\n");
}

TEST_F(MountPartsTest, CorruptFilesystemInTheImageUndoesEverythingAndNamesIt) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NE(source, nullptr);
  // Break the chunk holding the XFS superblock (chunk 33 holds XFS bytes only): its reads
  // fail their hash with EIO, so the XFS cannot be mounted; the ext4 before it can.
  const std::string image = dir_.File("broken.zst");
  RunOk("cp " + Quote(source->image) + " " + Quote(image));
  ASSERT_EQ(Xfs().start() % kChunk, 0u);
  const uint64_t chunk = Xfs().start() / kChunk;
  ASSERT_NO_FATAL_FAILURE(testing::FlipByteInChunkFrame(image, chunk));
  HotsnapMount m(env_, image, dir_.File("mnt"));
  CommandResult r = m.Mount();
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("partition 3 (xfs at byte " + std::to_string(Xfs().start()) +
                       " of the disk): mounting /dev/loop"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("nothing of the mount is left"), std::string::npos) << r.err;
  ExpectNothingLeft(m.dir());
  EXPECT_EQ(ListDir(m.dir()), std::vector<std::string>{});
}

TEST_F(MountPartsTest, UmountWhileOnePartitionIsBusyChangesNothing) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NE(source, nullptr);
  HotsnapMount m(env_, source->image, dir_.File("mnt"));
  CommandResult r = m.Mount();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  {
    // A file open on the XFS (p3, unmounted after p2): the umount is refused and p2, which
    // it had unmounted already, is mounted again.
    UniqueFd busy(open((m.Part(3) + "/etc/conf/file1").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(busy.valid());
    r = m.Umount();
    EXPECT_EQ(r.exit_code, 4) << r.err;
    EXPECT_NE(r.err.find(m.Part(3) + " is busy"), std::string::npos) << r.err;
    EXPECT_EQ(RunOk("findmnt -no FSTYPE " + Quote(m.Part(2))).out, "ext4\n");
    EXPECT_EQ(RunOk("findmnt -no FSTYPE " + Quote(m.Part(3))).out, "xfs\n");
    EXPECT_EQ(TreeSums(m.Part(2)), source->ext4_sums);
    EXPECT_EQ(TreeSums(m.Part(3)), source->xfs_sums);
  }
  r = m.Umount();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ExpectNothingLeft(m.dir());
  EXPECT_EQ(ListDir(m.dir()), std::vector<std::string>{});
}

TEST_F(MountPartsTest, CleanupRemovesWhatACrashedServerLeft) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NE(source, nullptr);
  HotsnapMount m(env_, source->image, dir_.File("mnt"));
  CommandResult r = m.Mount();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string pid = RunOk("cat " + Quote(run_dir_) +
                          "/mounts/*.json | sed -n 's/.*\"pid\": \\([0-9]*\\).*/\\1/p'")
                        .out;
  while (!pid.empty() && pid.back() == '\n') pid.pop_back();
  ASSERT_FALSE(pid.empty());
  RunOk("kill -9 " + pid);
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        return Sh("kill -0 " + pid + " && ! grep -q '^State:.*Z' /proc/" + pid + "/status")
                   .exit_code != 0;
      },
      10));
  // Both filesystems and their loop devices are still there, over a dead FUSE endpoint.
  EXPECT_GE(LoopsOverOurFile(), 2);
  EXPECT_NE(Sh("timeout 20 cat " + Quote(m.Part(3) + "/random-xfs.bin") + " > /dev/null").exit_code,
            0);
  r = Sh(env_ + Quote(HotsnapBinary()) + " cleanup");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  for (int n : {2, 3}) {
    EXPECT_NE(r.out.find("removed: unmounted " + m.Part(n) + " (/dev/loop"), std::string::npos)
        << r.out;
    EXPECT_NE(r.out.find("removed: removed directory " + m.Part(n) + "\n"), std::string::npos)
        << r.out;
  }
  ExpectNothingLeft(m.dir());
  EXPECT_EQ(ListDir(m.dir()), std::vector<std::string>{});
  EXPECT_EQ(m.Umount().exit_code, 2);
  // The directory is reusable.
  r = m.Mount();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(TreeSums(m.Part(2)), source->ext4_sums);
  EXPECT_EQ(m.Umount().exit_code, 0);
  ExpectNothingLeft(m.dir());
}

}  // namespace
}  // namespace hotsnap
