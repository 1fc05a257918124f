// End-to-end proof of the used-block backup (privileged, real loop devices): data of a
// deleted file never reaches an image, free space restores as zeros, the restored
// filesystem is clean and holds the same files, unknown filesystems fall back to reading
// every block, and `hotsnap info` reports the used bytes the filesystem's own tools report.
//
// Every verdict comes from tools that are not hotsnap: grep on the raw device and on the
// output of stock `zstd -dc`, cmp, e2fsck -fn / xfs_repair -n, sha256sum of every file,
// dumpe2fs / xfs_db / df for the used-byte numbers.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::CommandResult;
using ::hotsnap::testing::FillRegion;
using ::hotsnap::testing::Hotsnap;
using ::hotsnap::testing::InCi;
using ::hotsnap::testing::LoopDevice;
using ::hotsnap::testing::MountPoint;
using ::hotsnap::testing::Quote;
using ::hotsnap::testing::RunOk;
using ::hotsnap::testing::SizeOf;
using ::hotsnap::testing::TempDir;
using ::hotsnap::testing::UsedRangesOf;

// Inside TEST bodies a plain Run() would name ::testing::Test::Run.
CommandResult Shell(const std::string& command) { return ::hotsnap::testing::Run(command); }

constexpr uint64_t kMiB = 1024 * 1024;
// What every fallback notice ends with (fsmap/compute_used_block_map.cc).
constexpr char kFallbackWords[] = "reading every block";

// A string that exists nowhere before this run: 128 random bits in hex.
std::string RandomMarker() {
  std::string hex = RunOk("head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'").out;
  EXPECT_EQ(hex.size(), 32u) << hex;
  return "HOTSNAP-DELETED-" + hex;
}

// Occurrences of `marker` in the file or device at `path` (grep -c counts lines; the marker
// files below put each copy on its own line). -1 if grep failed.
long CountMarker(const std::string& path, const std::string& marker) {
  CommandResult r = Shell("grep -a -c -F " + Quote(marker) + " " + Quote(path));
  if (r.exit_code != 0 && r.exit_code != 1) {
    ADD_FAILURE() << "grep on " << path << " failed: " << r.err;
    return -1;
  }
  return std::stol(r.out);
}

// A number following `key` in `text` (e.g. "\nBlock count:"); 0 (and a failure) if absent.
uint64_t NumberAfter(const std::string& text, const std::string& key) {
  size_t at = text.find(key);
  if (at == std::string::npos) {
    ADD_FAILURE() << "no '" << key << "' in:\n" << text.substr(0, 2000);
    return 0;
  }
  return std::stoull(text.substr(at + key.size()));
}

// "TYPE MODE SIZE PATH" of every entry (sorted) plus "HASH  PATH" of every regular file.
std::string TreeAndHashes(const std::string& root) {
  std::string tree = RunOk("cd " + Quote(root) +
                           " && find . -printf '%y %m %s %p\\n' | LC_ALL=C sort").out;
  std::string hashes =
      RunOk("cd " + Quote(root) +
            " && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum").out;
  return tree + hashes;
}

// Writes files that stay: random and compressible data, odd sizes, a small tree.
void WriteKeptFiles(const std::string& root) {
  RunOk("mkdir -p " + Quote(root + "/kept/a/b"));
  RunOk("head -c 9437189 /dev/urandom > " + Quote(root + "/kept/random-9M"));
  RunOk("head -c 100003 /dev/urandom > " + Quote(root + "/kept/a/random-odd"));
  RunOk("seq 1 400000 > " + Quote(root + "/kept/a/numbers.txt"));
  RunOk("cd " + Quote(root + "/kept/a/b") + " && for i in $(seq 1 150); do echo \"small $i\" > f$i; done");
  RunOk("dd if=/dev/urandom of=" + Quote(root + "/kept/sparse") +
        " bs=4096 count=2 seek=3000 status=none");
}

// Writes `marker` into files (a large one and a one-block one), syncs, deletes them and
// syncs again. The file names do not contain the marker: directory blocks stay used.
void WriteAndDeleteMarkerFiles(const std::string& root, const std::string& marker) {
  RunOk("mkdir -p " + Quote(root + "/doomed"));
  RunOk("yes " + Quote(marker) + " | head -c 6000000 > " + Quote(root + "/doomed/big"));
  RunOk("printf '%s\\n' " + Quote(marker) + " > " + Quote(root + "/doomed/small"));
  RunOk("sync");
  RunOk("rm -r " + Quote(root + "/doomed") + " && sync");
}

// The first byte offset of `path` outside `used` (sorted [begin, end) byte ranges) that is
// not zero, or UINT64_MAX if there is none.
uint64_t FirstNonZeroOutside(const std::string& path,
                             const std::vector<std::pair<uint64_t, uint64_t>>& used) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  if (fd < 0) return 0;
  uint64_t size = SizeOf(path);
  std::vector<std::pair<uint64_t, uint64_t>> gaps;
  uint64_t cursor = 0;
  for (const auto& [begin, end] : used) {
    if (begin > cursor) gaps.emplace_back(cursor, begin);
    cursor = std::max(cursor, end);
  }
  if (size > cursor) gaps.emplace_back(cursor, size);
  std::vector<char> buf(kMiB);
  uint64_t found = UINT64_MAX;
  for (const auto& [begin, end] : gaps) {
    for (uint64_t at = begin; at < end && found == UINT64_MAX;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - at));
      ssize_t got = ::pread(fd, buf.data(), n, static_cast<off_t>(at));
      if (got != static_cast<ssize_t>(n)) {
        ADD_FAILURE() << "short read of " << path << " at " << at;
        found = at;
        break;
      }
      for (size_t i = 0; i < n; ++i) {
        if (buf[i] != 0) {
          found = at + i;
          break;
        }
      }
      at += n;
    }
    if (found != UINT64_MAX) break;
  }
  ::close(fd);
  return found;
}

// Blocks of ext4 inode tables that hold only inodes past each group's "unused inodes"
// count (bg_itable_unused), from the group lines of `dumpe2fs` output `dump`. hotsnap
// leaves them out of the map when group descriptors have checksums (metadata_csum, the
// mkfs default; ext_used_blocks.cc says why that is safe).
uint64_t UnusedInodeTableBlocks(const std::string& dump) {
  if (dump.find("metadata_csum") == std::string::npos &&
      dump.find("uninit_bg") == std::string::npos) {
    return 0;
  }
  uint64_t bs = NumberAfter(dump, "\nBlock size:");
  uint64_t per_group = NumberAfter(dump, "\nInodes per group:");
  uint64_t inode_bytes = NumberAfter(dump, "\nInode size:");
  uint64_t table_blocks = NumberAfter(dump, "\nInode blocks per group:");
  std::regex group_re("Inode table at \\d+-\\d+[^\\n]*\\n(?:[^\\n]*\\n)*?\\s+\\d+ free "
                      "blocks?, \\d+ free inodes?, \\d+ director(?:y|ies)(?:, (\\d+) unused inodes?)?");
  uint64_t blocks = 0;
  int groups = 0;
  for (std::sregex_iterator it(dump.begin(), dump.end(), group_re), end; it != end; ++it) {
    ++groups;
    uint64_t unused = (*it)[1].matched ? std::stoull((*it)[1]) : 0;
    uint64_t kept = ((per_group - unused) * inode_bytes + bs - 1) / bs;
    if (kept < table_blocks) blocks += table_blocks - kept;
  }
  EXPECT_EQ(static_cast<uint64_t>(groups), NumberAfter(dump, "\nBlock count:") /
                                               NumberAfter(dump, "\nBlocks per group:") +
                                           (NumberAfter(dump, "\nBlock count:") %
                                                NumberAfter(dump, "\nBlocks per group:") != 0))
      << "could not parse every group of dumpe2fs";
  return blocks;
}

// Used bytes by the filesystem's own tools, computed without hotsnap:
//  ext4: (Block count - Free blocks) x Block size from `dumpe2fs -h`, plus any device bytes
//        past the filesystem's end, minus the unused inode table tails (see above);
//  xfs:  dblocks minus every AG's free-space-btree blocks (agf freeblks) and free-list
//        blocks (agf flcount), times the block size, from `xfs_db`.
uint64_t ExpectedUsedBytes(const std::string& device, const std::string& fs_type,
                           bool without_itable_tails = true) {
  uint64_t device_bytes = SizeOf(device);
  if (fs_type == "ext4") {
    std::string h = RunOk("dumpe2fs " + Quote(device) + " 2>/dev/null").out;
    uint64_t bs = NumberAfter(h, "\nBlock size:");
    uint64_t count = NumberAfter(h, "\nBlock count:");
    uint64_t free = NumberAfter(h, "\nFree blocks:");
    uint64_t used = (count - free) * bs + (device_bytes - count * bs);
    return without_itable_tails ? used - UnusedInodeTableBlocks(h) * bs : used;
  }
  std::string sb = RunOk("xfs_db -r -c 'sb 0' -c 'p blocksize' -c 'p dblocks' -c 'p agcount' " +
                         Quote(device)).out;
  uint64_t bs = NumberAfter(sb, "blocksize = ");
  uint64_t dblocks = NumberAfter(sb, "dblocks = ");
  uint64_t agcount = NumberAfter(sb, "agcount = ");
  std::string cmd = "xfs_db -r";
  for (uint64_t ag = 0; ag < agcount; ++ag) {
    cmd += " -c 'agf " + std::to_string(ag) + "' -c 'p freeblks' -c 'p flcount'";
  }
  std::string agf = RunOk(cmd + " " + Quote(device)).out;
  uint64_t free = 0;
  std::regex re("(freeblks|flcount) = (\\d+)");
  int fields = 0;
  for (std::sregex_iterator it(agf.begin(), agf.end(), re), end; it != end; ++it, ++fields) {
    free += std::stoull((*it)[2]);
  }
  EXPECT_EQ(fields, static_cast<int>(2 * agcount)) << agf;
  return (dblocks - free) * bs + (device_bytes - dblocks * bs);
}

// `hotsnap info` (text) and `info --json` agree with `expected_used` and `device_bytes`.
void ExpectInfoReportsUsed(const std::string& image, uint64_t expected_used,
                           uint64_t device_bytes, const std::string& expected_map) {
  CommandResult json = Shell(Hotsnap("info " + Quote(image) + " --json"));
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_EQ(NumberAfter(json.out, "\"used_bytes\": "), expected_used) << json.out;
  EXPECT_EQ(NumberAfter(json.out, "\"device_bytes\": "), device_bytes) << json.out;
  EXPECT_NE(json.out.find("\"used_map\": \"" + expected_map + "\""), std::string::npos)
      << json.out;
  CommandResult text = Shell(Hotsnap("info " + Quote(image)));
  ASSERT_EQ(text.exit_code, 0) << text.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(text.out, m, std::regex("\nused: +[^(]*\\((\\d+) bytes")))
      << text.out;
  EXPECT_EQ(std::stoull(m[1]), expected_used) << text.out;
}

// Lines of `stderr_text` that are a fallback notice.
int FallbackNoticeLines(const std::string& stderr_text) {
  std::istringstream in(stderr_text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) n += line.find(kFallbackWords) != std::string::npos;
  return n;
}

struct FsCase {
  std::string fs_type;   // "ext4" or "xfs": which tools judge it
  std::string mkfs;      // mkfs command line without the device
  uint64_t bytes = 0;    // device size
  bool prefill = false;  // fill the device with random bytes before mkfs (stale old data)
  std::string mount_options;  // for writing the source
};

// Creates `count` files spread over 64 directories (so they land in many block groups /
// AGs), each with a few bytes, then syncs. Returns the shell's exit code.
int CreateManyFiles(const std::string& root, int count) {
  std::string cmd = "cd " + Quote(root) + " && for d in $(seq 1 64); do mkdir -p many/d$d; done" +
                    " && i=0; while [ $i -lt " + std::to_string(count) +
                    " ]; do echo $i > many/d$((i % 64 + 1))/f$i || exit 1; i=$((i + 1)); done; sync";
  return Shell(cmd).exit_code;
}

// The whole proof for one filesystem: see the file comment.
void DeletedDataNeverLeaves(const FsCase& c) {
  TempDir dir;
  LoopDevice source(dir.path(), c.bytes, "source.img");
  if (c.prefill) FillRegion(source.device(), 0, c.bytes);  // random: "someone's old data"
  RunOk(c.mkfs + " " + Quote(source.device()));
  const std::string marker = RandomMarker();
  {
    MountPoint mount(source.device(), dir.File("src-rw"), c.mount_options);
    WriteKeptFiles(mount.path());
    WriteAndDeleteMarkerFiles(mount.path(), marker);
  }
  // The deleted data is still on the device: otherwise the checks below prove nothing.
  ASSERT_GT(CountMarker(source.device(), marker), 1000) << "marker not on the raw device";

  std::string image = dir.File("fs.zst");
  CommandResult b = Shell(Hotsnap("backup " + Quote(source.device()) + " -o " + Quote(image)));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(FallbackNoticeLines(b.err), 0) << "a known filesystem fell back:\n" << b.err;

  // Restore with stock zstd only: the image is a plain zstd stream.
  std::string restored = dir.File("restored.raw");
  CommandResult z = Shell("zstd -q -dc " + Quote(image) + " > " + Quote(restored));
  ASSERT_EQ(z.exit_code, 0) << z.err;
  ASSERT_EQ(SizeOf(restored), c.bytes);
  EXPECT_EQ(CountMarker(restored, marker), 0) << "deleted data is in zstd -dc of the image";
  EXPECT_EQ(CountMarker(image, marker), 0) << "deleted data is in the image itself";

  // Every byte the filesystem does not use restores as zero (old data, deleted data).
  std::vector<std::pair<uint64_t, uint64_t>> used = UsedRangesOf(source.device(), c.fs_type);
  ASSERT_FALSE(used.empty());
  EXPECT_EQ(FirstNonZeroOutside(restored, used), UINT64_MAX)
      << "a free block of the restored device is not zero";

  // The restored filesystem is clean.
  CommandResult fsck = c.fs_type == "xfs" ? Shell("xfs_repair -n -f " + Quote(restored))
                                          : Shell("e2fsck -fn " + Quote(restored));
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;

  // Same tree, same file contents (both mounted read-only at the same time).
  {
    MountPoint src(source.device(), dir.File("src-ro"), "ro");
    MountPoint dst(restored, dir.File("dst-ro"), c.fs_type == "xfs" ? "ro,loop,nouuid" : "ro,loop");
    std::string expected = TreeAndHashes(src.path());
    EXPECT_NE(expected.find("/kept/random-9M"), std::string::npos) << expected;
    EXPECT_EQ(TreeAndHashes(dst.path()), expected);
  }

  // `hotsnap info` reports what dumpe2fs / xfs_db say is used.
  ExpectInfoReportsUsed(image, ExpectedUsedBytes(source.device(), c.fs_type), c.bytes,
                        c.fs_type == "xfs" ? "xfs bnobt" : "ext4 bitmap");

  // The restored filesystem takes new files in many groups and stays clean.
  {
    MountPoint rw(restored, dir.File("dst-rw"), c.fs_type == "xfs" ? "loop,nouuid" : "loop");
    EXPECT_EQ(CreateManyFiles(rw.path(), 20000), 0) << "creating files on the restored fs failed";
  }
  fsck = c.fs_type == "xfs" ? Shell("xfs_repair -n -f " + Quote(restored))
                            : Shell("e2fsck -fn " + Quote(restored));
  EXPECT_EQ(fsck.exit_code, 0) << "after creating files: " << fsck.out << fsck.err;
}

TEST(UsedBlocksE2eTest, Ext4DefaultKeepsDeletedDataOut) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  DeletedDataNeverLeaves({"ext4", "mkfs.ext4 -q -F", 512 * kMiB, false, ""});
}

// Lazy init: inode tables and journal are not zeroed by mkfs; on a device full of old data
// they hold that data. noinit_itable keeps the kernel from zeroing them behind our back,
// so the backup sees groups whose inode tables were never initialised.
TEST(UsedBlocksE2eTest, Ext4LazyInitKeepsDeletedDataOut) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  DeletedDataNeverLeaves({"ext4", "mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1",
                          512 * kMiB, true, "noinit_itable"});
}

TEST(UsedBlocksE2eTest, Ext4OneKiBBlocksKeepsDeletedDataOut) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  DeletedDataNeverLeaves({"ext4", "mkfs.ext4 -q -F -b 1024", 256 * kMiB, false, ""});
}

TEST(UsedBlocksE2eTest, XfsKeepsDeletedDataOut) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  DeletedDataNeverLeaves({"xfs", "mkfs.xfs -q -f", 512 * kMiB, true, ""});
}

// ---- Fallback: a device hotsnap cannot map is read whole ------------------------------------

// Backs up `device` without --all-blocks and checks the fallback: exactly one notice line
// naming the device, a byte-identical `zstd -dc`, and info reporting every byte as used.
void ExpectFallbackRoundTrip(const std::string& device, const std::string& dir) {
  std::string image = dir + "/fallback.zst";
  CommandResult b = Shell(Hotsnap("backup " + Quote(device) + " -o " + Quote(image)));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(FallbackNoticeLines(b.err), 1) << b.err;
  EXPECT_NE(b.err.find(device), std::string::npos) << "the notice does not name the device:\n"
                                                   << b.err;
  CommandResult cmp = Shell("zstd -q -dc " + Quote(image) + " | cmp - " + Quote(device));
  EXPECT_EQ(cmp.exit_code, 0) << "zstd -dc differs from the device: " << cmp.out << cmp.err;
  ExpectInfoReportsUsed(image, SizeOf(device), SizeOf(device), "all blocks");
}

// A tool from packages.txt that may be missing on a developer's machine: skip there (saying
// so), fail in CI.
#define REQUIRE_TOOL(tool)                                                          \
  do {                                                                              \
    if (Shell("command -v " tool).exit_code != 0) {                                 \
      if (InCi()) FAIL() << tool " is missing (scripts/packages.txt installs it)";  \
      GTEST_SKIP() << tool " is not installed (scripts/setup.sh installs it)";      \
    }                                                                               \
  } while (0)

TEST(UsedBlocksE2eTest, RandomDataFallsBackToAllBlocks) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 64 * kMiB);
  FillRegion(loop.device(), 0, 64 * kMiB);
  ExpectFallbackRoundTrip(loop.device(), dir.path());
}

// vfat over old data: a real filesystem signature this build does not map. The host kernel
// has no vfat driver, so nothing is mounted; the old data left in the free clusters must
// come back byte for byte (the fallback zeroes nothing).
TEST(UsedBlocksE2eTest, VfatFallsBackToAllBlocks) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  REQUIRE_TOOL("mkfs.vfat");
  TempDir dir;
  LoopDevice loop(dir.path(), 64 * kMiB);
  FillRegion(loop.device(), 0, 64 * kMiB);
  std::string marker = RandomMarker();
  std::string lines;
  for (int i = 0; i < 2000; ++i) lines += marker + "\n";
  ::hotsnap::testing::WriteAt(loop.device(), 40 * kMiB, lines);  // in what will be free space
  RunOk("sync");
  RunOk("mkfs.vfat " + Quote(loop.device()) + " > /dev/null");
  ASSERT_EQ(RunOk("blkid -o value -s TYPE " + Quote(loop.device())).out, "vfat\n");
  ASSERT_GE(CountMarker(loop.device(), marker), 2000);
  ExpectFallbackRoundTrip(loop.device(), dir.path());
  std::string restored = dir.File("restored.raw");
  ASSERT_EQ(Shell("zstd -q -dc " + Quote(dir.File("fallback.zst")) + " > " + Quote(restored))
                .exit_code, 0);
  EXPECT_GE(CountMarker(restored, marker), 2000) << "the fallback left old data out";
}

TEST(UsedBlocksE2eTest, BtrfsFallsBackToAllBlocks) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  REQUIRE_TOOL("mkfs.btrfs");
  TempDir dir;
  LoopDevice loop(dir.path(), 256 * kMiB);
  RunOk("mkfs.btrfs -q -f " + Quote(loop.device()));
  {
    MountPoint mount(loop.device(), dir.File("mnt"));
    WriteKeptFiles(mount.path());
    RunOk("sync");
  }
  ExpectFallbackRoundTrip(loop.device(), dir.path());
}

// --all-blocks reads every byte, deleted data included: byte-identical round trip, no notice,
// info says all blocks.
TEST(UsedBlocksE2eTest, AllBlocksOptionRoundTripsByteIdentical) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 256 * kMiB);
  RunOk("mkfs.ext4 -q -F " + Quote(loop.device()));
  std::string marker = RandomMarker();
  {
    MountPoint mount(loop.device(), dir.File("mnt"));
    WriteKeptFiles(mount.path());
    WriteAndDeleteMarkerFiles(mount.path(), marker);
  }
  std::string image = dir.File("all.zst");
  CommandResult b = Shell(Hotsnap("backup " + Quote(loop.device()) + " -o " + Quote(image) +
                                  " --all-blocks"));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(FallbackNoticeLines(b.err), 0) << b.err;
  CommandResult cmp = Shell("zstd -q -dc " + Quote(image) + " | cmp - " + Quote(loop.device()));
  EXPECT_EQ(cmp.exit_code, 0) << cmp.out << cmp.err;
  std::string restored = dir.File("restored.raw");
  ASSERT_EQ(Shell("zstd -q -dc " + Quote(image) + " > " + Quote(restored)).exit_code, 0);
  EXPECT_GT(CountMarker(restored, marker), 1000) << "--all-blocks left deleted data out";
  ExpectInfoReportsUsed(image, 256 * kMiB, 256 * kMiB, "all blocks");
}

// df agrees with dumpe2fs on used bytes when mounted with minixdf (which counts the
// filesystem's metadata as used, as dumpe2fs and hotsnap do), and hotsnap reports that less
// exactly the unused inode table tails it leaves out.
TEST(UsedBlocksE2eTest, Ext4UsedBytesMatchDf) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 256 * kMiB);
  RunOk("mkfs.ext4 -q -F " + Quote(loop.device()));
  {
    MountPoint mount(loop.device(), dir.File("mnt"));
    WriteKeptFiles(mount.path());
  }
  std::string image = dir.File("fs.zst");
  ASSERT_EQ(Shell(Hotsnap("backup " + Quote(loop.device()) + " -o " + Quote(image))).exit_code, 0);
  uint64_t df_used = 0;
  {
    MountPoint mount(loop.device(), dir.File("mnt-ro"), "ro,minixdf");
    std::string df = RunOk("df -B1 --output=used " + Quote(mount.path()) + " | tail -n 1").out;
    df_used = std::stoull(df);
  }
  uint64_t dumpe2fs_used = ExpectedUsedBytes(loop.device(), "ext4", false);
  EXPECT_EQ(df_used, dumpe2fs_used) << "df and dumpe2fs disagree; the expectation is unsound";
  uint64_t expected = ExpectedUsedBytes(loop.device(), "ext4");
  EXPECT_LT(expected, dumpe2fs_used) << "no unused inode table tail; the test is moot";
  ExpectInfoReportsUsed(image, expected, 256 * kMiB, "ext4 bitmap");
}

}  // namespace
}  // namespace hotsnap
