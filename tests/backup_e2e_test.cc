// End-to-end tests of `hotsnap backup` on real loop devices (privileged): every image is
// judged by tools that are not hotsnap — stock `zstd -dc` compared with `cmp` against the
// device, `zstd -t`, `e2fsck -fn` / `xfs_repair -n`, and sha256sum of every file — plus the
// safety rules: nothing published on failure or interruption, mounted read-write sources
// refused, existing destinations kept, private file mode, no symlink following.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::CommandResult;
using ::hotsnap::testing::FillRegion;
using ::hotsnap::testing::Hotsnap;
using ::hotsnap::testing::LoopDevice;
using ::hotsnap::testing::MountPoint;
using ::hotsnap::testing::PathExists;
using ::hotsnap::testing::Quote;
using ::hotsnap::testing::ReadAll;
using ::hotsnap::testing::RunOk;
using ::hotsnap::testing::SizeOf;
using ::hotsnap::testing::TempDir;
using ::hotsnap::testing::WriteAt;
using ::hotsnap::testing::WriteFile;

// Inside TEST bodies a plain Run() would name ::testing::Test::Run.
CommandResult Shell(const std::string& command) { return ::hotsnap::testing::Run(command); }

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kChunk = 4 * kMiB;

// `zstd -dc IMAGE | cmp - EXPECTED` with stock zstd: the image restores byte for byte.
void ExpectStockZstdRestores(const std::string& image, const std::string& expected) {
  CommandResult r = Shell("zstd -q -dc " + Quote(image) + " | cmp - " + Quote(expected));
  EXPECT_EQ(r.exit_code, 0) << "zstd -dc of " << image << " differs from " << expected << ": "
                            << r.out << r.err;
}

// Writes files into a mounted filesystem: random and compressible data, odd sizes, a tree.
void PopulateFilesystem(const std::string& root) {
  RunOk("mkdir -p " + Quote(root + "/a/b/c") + " " + Quote(root + "/empty-dir"));
  RunOk("head -c 7340045 /dev/urandom > " + Quote(root + "/random-7M"));
  RunOk("head -c 1048576 /dev/urandom > " + Quote(root + "/a/random-1M"));
  RunOk("head -c 100003 /dev/urandom > " + Quote(root + "/a/b/c/random-odd"));
  RunOk("seq 1 600000 > " + Quote(root + "/a/b/numbers.txt"));
  RunOk("for i in $(seq 1 200); do echo \"file $i\" > " + Quote(root + "/a/b/c/") + "small-$i; done");
  RunOk(": > " + Quote(root + "/empty-file"));
  RunOk("dd if=/dev/urandom of=" + Quote(root + "/sparse") + " bs=4096 count=3 seek=2000 2>/dev/null");
  RunOk("sync");
}

// "HASH  ./path" lines of every regular file under root, sorted.
std::string FileHashes(const std::string& root) {
  CommandResult r = RunOk("cd " + Quote(root) + " && find . -type f -print0 | sort -z | xargs -0 sha256sum");
  return r.out;
}

uint64_t ZeroChunksOf(const std::string& device) {
  std::string data = ReadAll(device);
  std::string zero(kChunk, '\0');
  uint64_t n = 0;
  for (uint64_t off = 0; off + kChunk <= data.size(); off += kChunk) {
    if (data.compare(off, kChunk, zero) == 0) ++n;
  }
  return n;
}

// Backup → stock zstd → restore to a device and to a file → fsck → per-file hashes.
void FilesystemRoundTrip(const std::string& fs, uint64_t size_bytes) {
  TempDir dir;
  LoopDevice source(dir.path(), size_bytes, "source.img");
  LoopDevice target(dir.path(), size_bytes, "target.img");
  if (fs == "ext4") {
    RunOk("mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -L hotsnap-src " +
          Quote(source.device()));
  } else {
    RunOk("mkfs.xfs -q -f -L hsrc " + Quote(source.device()));
  }
  std::string hashes;
  {
    MountPoint mount(source.device(), dir.File("src-mnt"));
    PopulateFilesystem(mount.path());
    hashes = FileHashes(mount.path());
  }
  ASSERT_GE(std::count(hashes.begin(), hashes.end(), '\n'), 200) << hashes;

  std::string image = dir.File("fs.zst");
  CommandResult b = Shell(Hotsnap("backup " + Quote(source.device()) + " -o " + Quote(image)));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  ExpectStockZstdRestores(image, source.device());
  EXPECT_EQ(Shell("zstd -q -t " + Quote(image)).exit_code, 0) << "zstd -t rejects the image";
  EXPECT_LT(SizeOf(image), size_bytes / 2) << "free space was not compressed away";

  // Restore onto a second device: identical bytes, clean filesystem, identical files.
  FillRegion(target.device(), 0, size_bytes, 0xAB);
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target.device())));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Shell("cmp " + Quote(source.device()) + " " + Quote(target.device())).exit_code, 0);
  if (fs == "ext4") {
    CommandResult f = Shell("e2fsck -fn " + Quote(target.device()));
    EXPECT_EQ(f.exit_code, 0) << f.out << f.err;
  } else {
    CommandResult f = Shell("xfs_repair -n " + Quote(target.device()));
    EXPECT_EQ(f.exit_code, 0) << f.out << f.err;
  }
  {
    MountPoint mount(target.device(), dir.File("dst-mnt"), fs == "xfs" ? "ro,nouuid" : "ro");
    EXPECT_EQ(FileHashes(mount.path()), hashes);
  }

  // Restore into a regular file: identical bytes, zero chunks left as holes.
  std::string file = dir.File("restored.raw");
  r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(file)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Shell("cmp " + Quote(file) + " " + Quote(source.device())).exit_code, 0);
  uint64_t zero_chunks = ZeroChunksOf(source.device());
  ASSERT_GT(zero_chunks, 0u) << "test device has no zero chunk; the sparseness check means nothing";
  struct stat st;
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), size_bytes);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, size_bytes - zero_chunks * kChunk + kMiB)
      << zero_chunks << " zero chunks, yet the file is not sparse";
}

TEST(BackupE2eTest, Ext4RoundTripsThroughStockZstdRestoreAndFsck) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  FilesystemRoundTrip("ext4", 128 * kMiB);
}

TEST(BackupE2eTest, XfsRoundTripsThroughStockZstdRestoreAndFsck) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  FilesystemRoundTrip("xfs", 300 * kMiB);
}

// ---- Odd sizes, readers, bad sources --------------------------------------------------------

TEST(BackupE2eTest, DeviceSizeNotAMultipleOfTheChunkRoundTrips) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  const uint64_t size = 37 * kMiB + 3584;
  LoopDevice source(dir.path(), size, "source.img");
  LoopDevice target(dir.path(), size, "target.img");
  ASSERT_EQ(SizeOf(source.device()), size);
  FillRegion(source.device(), 0, 6 * kMiB);
  FillRegion(source.device(), 20 * kMiB, 3 * kMiB, 0x11);
  FillRegion(source.device(), 36 * kMiB, size - 36 * kMiB);  // random up to the last byte
  std::string image = dir.File("odd.zst");
  CommandResult b = Shell(Hotsnap("backup " + Quote(source.device()) + " -o " + Quote(image)));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  ExpectStockZstdRestores(image, source.device());
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target.device())));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Shell("cmp " + Quote(source.device()) + " " + Quote(target.device())).exit_code, 0);
  r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(dir.File("odd.raw"))));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(SizeOf(dir.File("odd.raw")), size);
  EXPECT_EQ(Shell("cmp " + Quote(source.device()) + " " + Quote(dir.File("odd.raw"))).exit_code, 0);
}

TEST(BackupE2eTest, RegularFileOfOddSizeRoundTrips) {
  // A regular file source needs no privilege.
  TempDir dir;
  std::string source = dir.File("vm-disk.raw");
  RunOk("head -c 5000001 /dev/urandom > " + Quote(source));
  WriteAt(source, 4000000, std::string(1000000, '\0'));
  std::string image = dir.File("vm.zst");
  CommandResult b = Shell(Hotsnap("backup " + Quote(source) + " -o " + Quote(image)));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  ExpectStockZstdRestores(image, source);
  EXPECT_EQ(Shell("zstd -q -t " + Quote(image)).exit_code, 0);
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(dir.File("back.raw"))));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(SizeOf(dir.File("back.raw")), 5000001u);
  EXPECT_EQ(Shell("cmp " + Quote(source) + " " + Quote(dir.File("back.raw"))).exit_code, 0);
}

TEST(BackupE2eTest, PreadFallbackRoundTrips) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice source(dir.path(), 24 * kMiB, "source.img");
  FillRegion(source.device(), 0, 5 * kMiB);
  FillRegion(source.device(), 13 * kMiB, 2 * kMiB + 512, 0x7E);
  FillRegion(source.device(), 23 * kMiB, kMiB);
  std::string image = dir.File("pread.zst");
  CommandResult b = Shell(Hotsnap("backup " + Quote(source.device()) + " -o " + Quote(image) +
                                  " --no-io-uring --queue-depth 3 --workers 2"));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  ExpectStockZstdRestores(image, source.device());
  EXPECT_EQ(Shell(Hotsnap("verify " + Quote(image))).exit_code, 0);
}

TEST(BackupE2eTest, RefusesSourcesThatAreNotDevicesOrFiles) {
  TempDir dir;
  struct Case {
    std::string source;
    const char* words;  // what the message must mention
  } cases[] = {
      {dir.path(), "directory"},
      {"/dev/null", "character device"},
      {dir.File("does-not-exist"), "does-not-exist"},
  };
  for (const Case& c : cases) {
    std::string image = dir.File("out.zst");
    CommandResult r = Shell(Hotsnap("backup " + Quote(c.source) + " -o " + Quote(image)));
    EXPECT_EQ(r.exit_code, 3) << c.source << ": " << r.err;
    EXPECT_NE(r.err.find(c.words), std::string::npos) << c.source << ": " << r.err;
    EXPECT_FALSE(PathExists(image)) << c.source;
  }
  // An empty file has nothing to back up.
  WriteFile(dir.File("empty"), "");
  CommandResult r = Shell(Hotsnap("backup " + Quote(dir.File("empty")) + " -o " + Quote(dir.File("e.zst"))));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_FALSE(PathExists(dir.File("e.zst")));
}

// ---- Mounted sources ------------------------------------------------------------------------

TEST(BackupE2eTest, RefusesAReadWriteMountedSource) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice source(dir.path(), 64 * kMiB);
  RunOk("mkfs.ext4 -q -F " + Quote(source.device()));
  MountPoint mount(source.device(), dir.File("mnt"));
  std::string image = dir.File("rw.zst");
  CommandResult r =
      Shell(Hotsnap("backup " + Quote(source.device()) + " -o " + Quote(image) + " --snapshot none"));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("read-write"), std::string::npos) << r.err;
  EXPECT_FALSE(PathExists(image));
  EXPECT_EQ(Shell("ls -A " + Quote(dir.path()) + " | grep hotsnap-").exit_code, 1) << "temporary file left";
}

TEST(BackupE2eTest, AcceptsAReadOnlyMountedSource) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice source(dir.path(), 64 * kMiB);
  RunOk("mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 " + Quote(source.device()));
  {
    MountPoint rw(source.device(), dir.File("mnt"));
    RunOk("head -c 3000000 /dev/urandom > " + Quote(rw.path() + "/data"));
  }
  MountPoint mount(source.device(), dir.File("mnt"), "ro");
  std::string image = dir.File("ro.zst");
  CommandResult r =
      Shell(Hotsnap("backup " + Quote(source.device()) + " -o " + Quote(image) + " --snapshot none"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectStockZstdRestores(image, source.device());
}

// ---- Destination rules ----------------------------------------------------------------------

class BackupDestinationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A regular file source: these rules do not depend on the source kind.
    source_ = dir_.File("disk.raw");
    RunOk("head -c 9000000 /dev/urandom > " + Quote(source_));
  }
  TempDir dir_;
  std::string source_;
};

TEST_F(BackupDestinationTest, ExistingDestinationNeedsOverwrite) {
  std::string image = dir_.File("img.zst");
  WriteFile(image, "old image");
  CommandResult r = Shell(Hotsnap("backup " + Quote(source_) + " -o " + Quote(image)));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(ReadAll(image), "old image");
  r = Shell(Hotsnap("backup " + Quote(source_) + " -o " + Quote(image) + " --overwrite"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ExpectStockZstdRestores(image, source_);
  EXPECT_EQ(Shell("ls -A " + Quote(dir_.path()) + " | grep hotsnap-").exit_code, 1) << "temporary file left";
}

TEST_F(BackupDestinationTest, ImageIsPrivateEvenUnderUmask000) {
  std::string image = dir_.File("img.zst");
  CommandResult r = Shell("umask 000; " + Hotsnap("backup " + Quote(source_) + " -o " + Quote(image)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat st;
  ASSERT_EQ(stat(image.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  // Also when replacing a world-readable file.
  RunOk("chmod 0666 " + Quote(image));
  r = Shell("umask 000; " + Hotsnap("backup " + Quote(source_) + " -o " + Quote(image) + " --overwrite"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(stat(image.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(BackupDestinationTest, DoesNotFollowASymlinkAtTheTemporaryName) {
  std::string image = dir_.File("img.zst");
  std::string victim = dir_.File("victim");
  WriteFile(victim, "precious");
  // An inner `sh -c`: `exec` keeps its pid, so its $$ is the pid hotsnap puts in the
  // temporary name. (In Run()'s subshell $$ would be the outer shell's pid.)
  std::string script = "ln -s " + Quote(victim) + " " + Quote(dir_.path()) + "/.img.zst.hotsnap-$$.tmp && exec " +
                       Hotsnap("backup " + Quote(source_) + " -o " + Quote(image));
  CommandResult r = Shell("sh -c " + Quote(script));
  EXPECT_NE(r.exit_code, 0) << "backup wrote through a planted symlink";
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(ReadAll(victim), "precious");
  EXPECT_FALSE(PathExists(image));
  CommandResult links = Shell("find " + Quote(dir_.path()) + " -name '.img.zst.hotsnap-*.tmp' -type l");
  EXPECT_FALSE(links.out.empty()) << "the planted symlink was removed or replaced";
}

TEST_F(BackupDestinationTest, DestinationInAMissingDirectoryIsATargetError) {
  std::string image = dir_.File("no/such/dir/img.zst");
  CommandResult r = Shell(Hotsnap("backup " + Quote(source_) + " -o " + Quote(image)));
  EXPECT_EQ(r.exit_code, 4) << r.err;
}

// ---- Interruption ---------------------------------------------------------------------------

// A slow backup: 64 MiB of random data compressed at level 19 by one worker.
class InterruptedBackupTest : public ::testing::Test {
 protected:
  // Starts the backup and waits until it has written past its first chunk. Returns the pid.
  int StartSlowBackup(LoopDevice* source) {
    FillRegion(source->device(), 0, 64 * kMiB);
    image_ = dir_.File("slow.zst");
    int pid = ::hotsnap::testing::Spawn(
        Hotsnap("backup " + Quote(source->device()) + " -o " + Quote(image_) +
                " --workers 1 --level 19 --queue-depth 2 --no-progress"),
        dir_.File("out"), dir_.File("err"));
    temp_ = dir_.File(".slow.zst.hotsnap-" + std::to_string(pid) + ".tmp");
    bool writing = ::hotsnap::testing::WaitUntil([&] { return SizeOf(temp_) > kMiB; }, 120);
    EXPECT_TRUE(writing) << "backup never started writing " << temp_ << "; stderr: "
                         << ReadAll(dir_.File("err"));
    EXPECT_FALSE(PathExists(image_)) << "final name visible while the backup runs";
    return pid;
  }
  int WaitExitWithin(int pid, double seconds) {
    int code = -1;
    bool done = ::hotsnap::testing::WaitUntil([&] {
      int status = 0;
      pid_t got = waitpid(pid, &status, WNOHANG);
      if (got != pid) return false;
      code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return true;
    }, seconds);
    if (!done) {
      ADD_FAILURE() << "backup did not exit within " << seconds << " s of the signal";
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    return code;
  }
  void ExpectNothingPublished() {
    EXPECT_FALSE(PathExists(image_)) << "an interrupted backup published " << image_;
    CommandResult left = Shell("ls -A " + Quote(dir_.path()));
    EXPECT_EQ(left.out.find(".hotsnap-"), std::string::npos) << "left behind:\n" << left.out;
  }
  TempDir dir_;
  std::string image_;
  std::string temp_;
};

TEST_F(InterruptedBackupTest, SigkillLeavesNothingUnderTheFinalName) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  LoopDevice source(dir_.path(), 2048 * kMiB, "source.img");
  int pid = StartSlowBackup(&source);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  EXPECT_EQ(WaitExitWithin(pid, 30), 128 + SIGKILL);
  EXPECT_FALSE(PathExists(image_));
}

TEST_F(InterruptedBackupTest, SigintExits130AndCleansUp) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  LoopDevice source(dir_.path(), 256 * kMiB, "source.img");
  int pid = StartSlowBackup(&source);
  ASSERT_EQ(kill(pid, SIGINT), 0);
  EXPECT_EQ(WaitExitWithin(pid, 60), 130) << ReadAll(dir_.File("err"));
  ExpectNothingPublished();
}

TEST_F(InterruptedBackupTest, SigtermExits143AndCleansUp) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  LoopDevice source(dir_.path(), 256 * kMiB, "source.img");
  int pid = StartSlowBackup(&source);
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  EXPECT_EQ(WaitExitWithin(pid, 60), 143) << ReadAll(dir_.File("err"));
  ExpectNothingPublished();
}

}  // namespace
}  // namespace hotsnap
