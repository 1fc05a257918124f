// hotsnap mount / umount / cleanup end to end, on real ext4 and xfs images: every file's
// SHA-256 through the mount equals the source's; a corrupted chunk gives EIO on the file
// whose data it holds and correct data elsewhere; a crashed server's leftovers go away
// with `hotsnap cleanup`. Each test uses its own state dir (HOTSNAP_RUN_DIR), so tests and
// other users of the machine do not see each other's mounts.
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "base/unique_fd.h"
#include "io/image_index.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::HotsnapBinary;
using testing::LoopDevice;
using testing::MountPoint;
using testing::Quote;
using testing::RunOk;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

// testing::Run under a name that gtest's Test::Run does not hide inside test bodies.
testing::CommandResult Sh(const std::string& command) { return testing::Run(command); }
constexpr uint64_t kChunk = 4 * kMiB;

struct Extent {
  uint64_t physical;  // device byte offset
  uint64_t length;    // bytes
};

// The file's extents on its device, from FIEMAP (what the filesystem says, not hotsnap).
std::vector<Extent> FileExtents(const std::string& path) {
  std::vector<Extent> out;
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return out;
  constexpr unsigned kMax = 64;
  std::vector<char> buf(sizeof(struct fiemap) + kMax * sizeof(struct fiemap_extent));
  auto* fm = reinterpret_cast<struct fiemap*>(buf.data());
  fm->fm_start = 0;
  fm->fm_length = FIEMAP_MAX_OFFSET;
  fm->fm_flags = FIEMAP_FLAG_SYNC;
  fm->fm_extent_count = kMax;
  if (ioctl(fd.get(), FS_IOC_FIEMAP, fm) != 0) return out;
  for (unsigned i = 0; i < fm->fm_mapped_extents; ++i) {
    out.push_back({fm->fm_extents[i].fe_physical, fm->fm_extents[i].fe_length});
  }
  return out;
}

// sha256 of every regular file under `dir`, "hash  ./path" lines sorted by path.
std::string TreeSums(const std::string& dir) {
  return Sh("cd " + Quote(dir) + " && find . -type f -print0 | sort -z | xargs -0 -r sha256sum").out;
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
  CommandResult Mount() {
    mkdir(dir_.c_str(), 0755);
    CommandResult r = Sh(env_ + Quote(HotsnapBinary()) + " mount " + Quote(image_) + " " + Quote(dir_));
    mounted_ = r.exit_code == 0;
    return r;
  }
  CommandResult Umount() {
    CommandResult r = Sh(env_ + Quote(HotsnapBinary()) + " umount " + Quote(dir_));
    if (r.exit_code == 0) mounted_ = false;
    return r;
  }
  const std::string& dir() const { return dir_; }

 private:
  std::string env_;
  std::string image_;
  std::string dir_;
  bool mounted_ = false;
};

class MountFsTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Builds a filesystem of type GetParam() with small and large files, records every
  // file's hash and the extents of victim.bin, unmounts it and backs it up.
  void MakeImage() {
    run_dir_ = dir_.File("run");
    env_ = "HOTSNAP_RUN_DIR=" + Quote(run_dir_) + " ";
    image_ = dir_.File("image.zst");
    loop_ = std::make_unique<LoopDevice>(dir_.path(), 320 * kMiB);
    const std::string fs = GetParam();
    RunOk((fs == "xfs" ? "mkfs.xfs -q -f " : "mkfs.ext4 -q -F ") + Quote(loop_->device()));
    {
      MountPoint src(loop_->device(), dir_.File("src"));
      const std::string s = Quote(src.path());
      RunOk("cp -r /usr/include/linux " + s + "/linux");
      RunOk("mkdir " + s + "/data && for i in 1 2 3; do head -c $((i * 3000000 + 17)) /dev/urandom > " + s +
            "/data/r$i.bin; done");
      RunOk("head -c " + std::to_string(24 * kMiB) + " /dev/urandom > " + s + "/victim.bin && sync");
      victim_extents_ = FileExtents(src.path() + "/victim.bin");
      RunOk("printf 'hello\\n' > " + s + "/small.txt && ln -s small.txt " + s + "/link && sync");
      source_sums_ = TreeSums(src.path());
    }
    ASSERT_FALSE(victim_extents_.empty());
    ASSERT_GT(source_sums_.size(), 1000u);
    RunOk(Quote(HotsnapBinary()) + " backup " + Quote(loop_->device()) + " -o " + Quote(image_) +
          " --no-progress --quiet");
  }

  // A chunk holding only victim.bin's data.
  uint64_t VictimChunk() {
    for (const Extent& e : victim_extents_) {
      uint64_t first = (e.physical + kChunk - 1) / kChunk;
      if ((first + 1) * kChunk <= e.physical + e.length) return first;
    }
    ADD_FAILURE() << "victim.bin has no extent covering a whole chunk";
    return 0;
  }

  // Nothing of ours is left: no FUSE mount, no loop device over a file in the run dir.
  void ExpectNothingLeft(const std::string& mount_dir) {
    std::string mounts = RunOk("cat /proc/self/mountinfo").out;
    EXPECT_EQ(mounts.find(run_dir_), std::string::npos) << mounts;
    EXPECT_EQ(mounts.find(" " + mount_dir + " "), std::string::npos) << mounts;
    std::string loops = RunOk("losetup -a").out;
    EXPECT_EQ(loops.find(run_dir_), std::string::npos) << loops;
  }

  TempDir dir_;
  std::string run_dir_;
  std::string env_;
  std::string image_;
  std::unique_ptr<LoopDevice> loop_;
  std::vector<Extent> victim_extents_;
  std::string source_sums_;
};

TEST_P(MountFsTest, EveryFileMatchesAndUmountLeavesNothing) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  MakeImage();
  HotsnapMount m(env_, image_, dir_.File("mnt"));
  CommandResult r = m.Mount();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("read-only"), std::string::npos) << r.err;
  std::string options = RunOk("findmnt -no OPTIONS " + Quote(m.dir())).out;
  EXPECT_NE(options.find("ro"), std::string::npos) << options;
  EXPECT_EQ(TreeSums(m.dir()), source_sums_);
  // The loop device reads the FUSE file with direct I/O (no second copy in the page cache;
  // loop has done it since Linux 4.4, FUSE files allow it) and with the readahead that
  // turns a sequential file read into large FUSE reads in flight together.
  std::string loop = RunOk("findmnt -no SOURCE " + Quote(m.dir())).out;
  loop = loop.substr(loop.rfind('/') + 1, loop.find('\n') - loop.rfind('/') - 1);
  EXPECT_EQ(RunOk("cat /sys/block/" + loop + "/loop/dio").out, "1\n") << loop;
  EXPECT_EQ(RunOk("cat /sys/block/" + loop + "/queue/read_ahead_kb").out, "16384\n") << loop;
  // Read-only all the way down: no write gets through.
  EXPECT_NE(Sh("touch " + Quote(m.dir() + "/new")).exit_code, 0);
  // A second mount at the same place is refused.
  HotsnapMount again(env_, image_, m.dir());
  EXPECT_EQ(again.Mount().exit_code, 4);
  r = m.Umount();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ExpectNothingLeft(m.dir());
  EXPECT_EQ(Sh("ls " + Quote(run_dir_ + "/mounts") + " | wc -l").out, "0\n");
}

TEST_P(MountFsTest, CorruptChunkGivesEioOnlyOnTheFileItHolds) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  MakeImage();
  uint64_t chunk = VictimChunk();
  ASSERT_NO_FATAL_FAILURE(testing::FlipByteInChunkFrame(image_, chunk));
  HotsnapMount m(env_, image_, dir_.File("mnt"));
  CommandResult r = m.Mount();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  CommandResult bad = Sh("cat " + Quote(m.dir() + "/victim.bin") + " > /dev/null");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("Input/output error"), std::string::npos) << bad.err;
  // Every other file reads correctly.
  std::string expected, got;
  std::istringstream src(source_sums_), mnt(TreeSums(m.dir()));
  for (std::string line; std::getline(src, line);) {
    if (line.find("./victim.bin") == std::string::npos) expected += line + "\n";
  }
  for (std::string line; std::getline(mnt, line);) {
    if (line.find("./victim.bin") == std::string::npos) got += line + "\n";
  }
  EXPECT_EQ(got, expected);
  // The bytes of victim.bin before the corrupt chunk still read (the failure is per chunk).
  EXPECT_EQ(Sh("head -c 4096 " + Quote(m.dir() + "/victim.bin") + " > /dev/null").exit_code, 0);
  EXPECT_EQ(m.Umount().exit_code, 0);
  ExpectNothingLeft(m.dir());
}

TEST_P(MountFsTest, MountsWhileTheSameImageIsBeingRestored) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  MakeImage();
  const std::string bin = Quote(HotsnapBinary());
  const std::string target = dir_.File("restored.raw");
  const std::string done = dir_.File("restore.rc");
  // Restores, one after the other, in the background while the mount is made and read.
  Sh("( for i in 1 2 3; do " + bin + " restore " + Quote(image_) + " " + Quote(target) +
      " --overwrite --no-progress --quiet || exit 1; done; echo ok > " + Quote(done) + " ) >/dev/null 2>&1 &");
  HotsnapMount m(env_, image_, dir_.File("mnt"));
  CommandResult r = m.Mount();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(TreeSums(m.dir()), source_sums_);
  EXPECT_EQ(m.Umount().exit_code, 0);
  for (int i = 0; i < 600 && access(done.c_str(), F_OK) != 0; ++i) usleep(100000);
  ASSERT_EQ(testing::ReadAll(done), "ok\n") << "the concurrent restores failed";
  EXPECT_EQ(testing::Sha256(target), testing::Sha256(loop_->device()));
  ExpectNothingLeft(m.dir());
}

TEST_P(MountFsTest, CleanupRemovesWhatACrashedServerLeft) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  MakeImage();
  HotsnapMount m(env_, image_, dir_.File("mnt"));
  CommandResult r = m.Mount();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string pid = RunOk("cat " + Quote(run_dir_) + "/mounts/*.json | sed -n 's/.*\"pid\": \\([0-9]*\\).*/\\1/p'").out;
  while (!pid.empty() && pid.back() == '\n') pid.pop_back();
  ASSERT_FALSE(pid.empty());
  RunOk("kill -9 " + pid);
  for (int i = 0; i < 50 && Sh("kill -0 " + pid + " && ! grep -q '^State:.*Z' /proc/" + pid + "/status").exit_code == 0; ++i) {
    usleep(100000);
  }
  // The FUSE endpoint is dead: reads fail rather than hang.
  EXPECT_NE(Sh("timeout 20 cat " + Quote(m.dir() + "/victim.bin") + " > /dev/null").exit_code, 0);
  r = Sh(env_ + Quote(HotsnapBinary()) + " cleanup");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("removed"), std::string::npos) << r.out;
  ExpectNothingLeft(m.dir());
  // And umount of it now says it is not a hotsnap mount.
  EXPECT_EQ(m.Umount().exit_code, 2);
  // The mount point is reusable.
  r = m.Mount();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(TreeSums(m.dir()), source_sums_);
  EXPECT_EQ(m.Umount().exit_code, 0);
  ExpectNothingLeft(m.dir());
}

INSTANTIATE_TEST_SUITE_P(Filesystems, MountFsTest, ::testing::Values("ext4", "xfs"),
                         [](const auto& info) { return info.param; });

TEST(MountRefusalTest, StreamsAndUnknownMountsAreRefusedClearly) {
  TempDir dir;
  const std::string bin = Quote(HotsnapBinary());
  const std::string env = "HOTSNAP_RUN_DIR=" + Quote(dir.File("run")) + " ";
  mkdir(dir.File("mnt").c_str(), 0755);
  CommandResult r = Sh(env + bin + " mount - " + Quote(dir.File("mnt")) + " < /dev/null");
  EXPECT_EQ(r.exit_code, 6) << r.err;
  EXPECT_NE(r.err.find("random access needs an image file"), std::string::npos) << r.err;
  r = Sh(env + bin + " mount ssh://host/x.zst " + Quote(dir.File("mnt")));
  EXPECT_EQ(r.exit_code, 6) << r.err;
  r = Sh(env + bin + " umount " + Quote(dir.File("mnt")));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("not a hotsnap mount"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace hotsnap
