// ComputeUsedBlockMap on real ext4 loop devices. Expectations come from dumpe2fs and
// filefrag (the real tools), never from the code under test.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <regex>
#include <sstream>
#include <vector>

#include "base/unique_fd.h"
#include "fsmap/ext_used_blocks.h"
#include "fsmap/used_block_map.h"
#include "io/ranged_reader.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::LoopDevice;
using testing::MountPoint;
using testing::Quote;
using testing::RunOk;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

struct BlockRange {
  uint64_t first;
  uint64_t count;
};

uint64_t SizeOf(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return 0;
  if (S_ISREG(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  uint64_t bytes = 0;
  if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) return 0;
  return bytes;
}

Result<UsedBlockMap> MapPath(const std::string& path, std::string* notice) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status(Code::kSource, "open " + path);
  return ComputeUsedBlockMap(fd.get(), path, SizeOf(fd.get()), notice);
}

uint64_t DumpField(const std::string& dump, const std::string& field) {
  std::smatch m;
  std::regex re("\n" + field + ":\\s+(\\d+)");
  if (!std::regex_search(dump, m, re)) {
    ADD_FAILURE() << "dumpe2fs has no " << field;
    return 0;
  }
  return std::stoull(m[1]);
}

// Used byte extents by dumpe2fs: everything on the device except the "Free blocks:" ranges
// and, when group descriptors have checksums, the blocks of each inode table that hold only
// inodes past the group's "unused inodes" count (the map leaves those out; see
// fsmap/ext_used_blocks.cc).
std::vector<ByteExtent> ExpectedFromDumpe2fs(const std::string& dump, uint64_t device_bytes) {
  uint64_t bs = DumpField(dump, "Block size");
  bool csum = dump.find("metadata_csum") != std::string::npos ||
              dump.find("uninit_bg") != std::string::npos;
  uint64_t per_group = DumpField(dump, "Inodes per group");
  uint64_t inode_bytes = DumpField(dump, "Inode size");
  std::vector<BlockRange> free;
  std::istringstream in(dump);
  std::string line;
  std::regex range_re("(\\d+)(?:-(\\d+))?");
  std::regex table_re("^  Inode table at (\\d+)-(\\d+)");
  std::regex unused_re(", (\\d+) unused inodes?$");
  uint64_t table_first = 0, table_end = 0;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, table_re)) {
      table_first = std::stoull(m[1]);
      table_end = std::stoull(m[2]) + 1;
      continue;
    }
    if (csum && table_end != 0 && std::regex_search(line, m, unused_re)) {
      uint64_t kept = ((per_group - std::stoull(m[1])) * inode_bytes + bs - 1) / bs;
      if (table_first + kept < table_end) {
        free.push_back({table_first + kept, table_end - table_first - kept});
      }
      table_end = 0;
      continue;
    }
    size_t pos = line.find("  Free blocks: ");
    if (pos != 0) continue;
    std::string list = line.substr(15);
    for (std::sregex_iterator it(list.begin(), list.end(), range_re), end; it != end; ++it) {
      uint64_t a = std::stoull((*it)[1]);
      uint64_t b = (*it)[2].matched ? std::stoull((*it)[2]) : a;
      free.push_back({a, b - a + 1});
    }
  }
  std::sort(free.begin(), free.end(), [](auto& x, auto& y) { return x.first < y.first; });
  std::vector<ByteExtent> used;
  uint64_t cursor = 0;
  auto add = [&](uint64_t from, uint64_t to) {
    to = std::min(to, device_bytes);
    if (to <= from) return;
    if (!used.empty() && used.back().end_bytes() == from) {
      used.back().length_bytes += to - from;  // a tail next to a free range: one extent
    } else {
      used.push_back({from, to - from});
    }
  };
  for (const BlockRange& r : free) {
    add(cursor, r.first * bs);
    cursor = std::max(cursor, (r.first + r.count) * bs);
  }
  add(cursor, device_bytes);
  return used;
}

std::string ReadBytes(const std::string& path, uint64_t offset, size_t length) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  std::string buf(length, '\0');
  ssize_t n = pread(fd.get(), buf.data(), length, static_cast<off_t>(offset));
  return n == static_cast<ssize_t>(length) ? buf : "";
}

std::vector<ByteExtent> AllUsed(const UsedBlockMap& map) {
  std::vector<ByteExtent> out;
  map.UsedIn(0, map.device_bytes(), &out);
  return out;
}

// Physical extents of a file (in filesystem blocks) by filefrag.
std::vector<BlockRange> FileBlocks(const std::string& path) {
  std::string out = RunOk("filefrag -v " + Quote(path)).out;
  std::vector<BlockRange> ranges;
  std::regex re(":\\s+\\d+\\.\\.\\s*\\d+:\\s+(\\d+)\\.\\.\\s*(\\d+):");
  for (std::sregex_iterator it(out.begin(), out.end(), re), end; it != end; ++it) {
    uint64_t a = std::stoull((*it)[1]);
    uint64_t b = std::stoull((*it)[2]);
    ranges.push_back({a, b - a + 1});
  }
  EXPECT_FALSE(ranges.empty()) << "filefrag found no extents:\n" << out;
  return ranges;
}

// Makes an ext4 with mkfs `options` on a fresh loop device and checks the map equals
// dumpe2fs' view exactly. Returns the dumpe2fs output for further checks.
std::string CheckAgainstDumpe2fs(const std::string& device, const std::string& mkfs_options,
                                 const UsedBlockMap& map) {
  std::string dump = RunOk("dumpe2fs " + Quote(device) + " 2>/dev/null").out;
  EXPECT_EQ(map.fs_type(), "ext4");
  EXPECT_FALSE(map.all_blocks());
  std::vector<ByteExtent> expected = ExpectedFromDumpe2fs(dump, map.device_bytes());
  EXPECT_EQ(AllUsed(map), expected) << "mkfs options: " << mkfs_options;
  uint64_t used_bytes = 0;
  for (const ByteExtent& e : expected) used_bytes += e.length_bytes;
  EXPECT_EQ(map.used_bytes(), used_bytes);
  uint64_t bs = DumpField(dump, "Block size");
  uint64_t free_blocks = DumpField(dump, "Free blocks");
  EXPECT_LE(map.used_bytes(), map.device_bytes() - free_blocks * bs);
  return dump;
}

TEST(FsmapExt, DefaultExt4MatchesDumpe2fsAndDropsDeletedFile) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 1024 * kMiB);
  RunOk("mkfs.ext4 -q -F " + Quote(loop.device()));
  std::vector<BlockRange> live, deleted;
  {
    MountPoint mnt(loop.device(), dir.File("mnt"));
    RunOk("head -c 3000000 /dev/urandom > " + Quote(mnt.path() + "/live"));
    RunOk("yes HOTSNAP-DELETED-MARKER | head -c 5000000 > " + Quote(mnt.path() + "/doomed"));
    RunOk("sync");
    live = FileBlocks(mnt.path() + "/live");
    deleted = FileBlocks(mnt.path() + "/doomed");
    RunOk("rm " + Quote(mnt.path() + "/doomed") + " && sync");
  }
  std::string notice;
  Result<UsedBlockMap> map = MapPath(loop.device(), &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(notice, "");
  std::string dump = CheckAgainstDumpe2fs(loop.device(), "", *map);
  uint64_t bs = DumpField(dump, "Block size");
  ASSERT_EQ(bs, 4096u);
  // The deleted data is still on the device (so this test means something) ...
  ASSERT_EQ(ReadBytes(loop.device(), deleted[0].first * bs, 8), "HOTSNAP-");
  // ... and not in the map, while the live file is.
  for (const BlockRange& r : deleted) {
    EXPECT_TRUE(map->NoneUsed(r.first * bs, r.count * bs)) << "deleted block " << r.first;
  }
  for (const BlockRange& r : live) {
    EXPECT_TRUE(map->AllUsed(r.first * bs, r.count * bs)) << "live block " << r.first;
  }
  // Superblock and block 0 are kept.
  EXPECT_TRUE(map->AllUsed(0, bs));
}

TEST(FsmapExt, OneKiBBlocksKeepBootBlockAndMatchDumpe2fs) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 200 * kMiB);
  RunOk("mkfs.ext4 -q -F -b 1024 " + Quote(loop.device()));
  std::vector<BlockRange> deleted;
  {
    MountPoint mnt(loop.device(), dir.File("mnt"));
    RunOk("head -c 2000000 /dev/urandom > " + Quote(mnt.path() + "/doomed") + " && sync");
    deleted = FileBlocks(mnt.path() + "/doomed");
    RunOk("rm " + Quote(mnt.path() + "/doomed") + " && sync");
  }
  std::string notice;
  Result<UsedBlockMap> map = MapPath(loop.device(), &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  std::string dump = CheckAgainstDumpe2fs(loop.device(), "-b 1024", *map);
  ASSERT_EQ(DumpField(dump, "First block"), 1u);
  ASSERT_EQ(map->block_bytes(), 1024u);
  // Block 0 (boot sector) is outside every bitmap but kept; block 1 is the superblock.
  EXPECT_TRUE(map->AllUsed(0, 2048));
  for (const BlockRange& r : deleted) EXPECT_TRUE(map->NoneUsed(r.first * 1024, r.count * 1024));
}

TEST(FsmapExt, UninitBlockGroupsKeepTheirMetadata) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 8192 * kMiB);
  RunOk("mkfs.ext4 -q -F -O uninit_bg,^metadata_csum -E lazy_itable_init=1 " +
        Quote(loop.device()));
  std::string notice;
  Result<UsedBlockMap> map = MapPath(loop.device(), &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  std::string dump = CheckAgainstDumpe2fs(loop.device(), "uninit_bg", *map);
  // Groups flagged BLOCK_UNINIT that hold a backup superblock: those blocks must be used.
  std::regex group_re(
      "Group (\\d+): \\(Blocks \\d+-\\d+\\)[^\\n]*BLOCK_UNINIT[^\\n]*\\n\\s+Backup superblock at "
      "(\\d+), Group descriptors at (\\d+)-(\\d+)");
  int checked = 0;
  uint64_t bs = DumpField(dump, "Block size");
  for (std::sregex_iterator it(dump.begin(), dump.end(), group_re), end; it != end; ++it) {
    uint64_t sb = std::stoull((*it)[2]);
    uint64_t gd_end = std::stoull((*it)[4]);
    EXPECT_TRUE(map->AllUsed(sb * bs, (gd_end - sb + 1) * bs)) << "group " << (*it)[1];
    ++checked;
  }
  EXPECT_GT(checked, 0) << "no BLOCK_UNINIT group with a backup superblock; test is moot";
}

TEST(FsmapExt, DefaultMetadataCsumUninitGroups) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 4096 * kMiB);
  RunOk("mkfs.ext4 -q -F " + Quote(loop.device()));
  std::string notice;
  Result<UsedBlockMap> map = MapPath(loop.device(), &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  std::string dump = CheckAgainstDumpe2fs(loop.device(), "default 4 GiB", *map);
  EXPECT_NE(dump.find("BLOCK_UNINIT"), std::string::npos);
}

TEST(FsmapExt, ImageFileWorks) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  std::string image = dir.File("fs.img");
  RunOk("truncate -s 64M " + Quote(image) + " && mkfs.ext4 -q -F " + Quote(image));
  std::string notice;
  Result<UsedBlockMap> map = MapPath(image, &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  std::string dump = RunOk("dumpe2fs " + Quote(image) + " 2>/dev/null").out;
  EXPECT_EQ(AllUsed(*map), ExpectedFromDumpe2fs(dump, map->device_bytes()));
}

// A RangedReader that fails every read past `good_bytes` (EIO), around the real file.
class FailingPastReader : public RangedReader {
 public:
  FailingPastReader(RangedReader* inner, uint64_t good_bytes) : inner_(inner), good_bytes_(good_bytes) {}
  uint64_t size_bytes() const override { return inner_->size_bytes(); }
  Status Read(uint64_t offset, size_t bytes, void* dst) override {
    if (offset + bytes > good_bytes_) return Status(Code::kSource, "injected EIO", EIO);
    return inner_->Read(offset, bytes, dst);
  }

 private:
  RangedReader* inner_;
  uint64_t good_bytes_;
};

// ExtUsedBlockMapOf reads through a RangedReader (the libext2fs I/O manager of
// fsmap/ext_ranged_io.h): the same map as by name, and a read error is an error.
TEST(FsmapExt, RangedReaderGivesTheSameMapAndReportsReadErrors) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  std::string image = dir.File("fs.img");
  RunOk("truncate -s 64M " + Quote(image) + " && mkfs.ext4 -q -F " + Quote(image));
  RunOk("head -c 3000000 /dev/urandom > " + Quote(dir.File("data")) + " && debugfs -w -R 'write " +
        dir.File("data") + " data' " + Quote(image));
  UniqueFd fd(open(image.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  Result<FdRangedReader> file = FdRangedReader::Open(fd.get(), image);
  ASSERT_TRUE(file.ok()) << file.status().message();
  std::string notice;
  Result<UsedBlockMap> map = ExtUsedBlockMapOf(*file, image, "ext4", &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(notice, "");
  EXPECT_FALSE(map->all_blocks());
  EXPECT_EQ(map->device_bytes(), 64 * kMiB);
  std::string dump = RunOk("dumpe2fs " + Quote(image) + " 2>/dev/null").out;
  EXPECT_EQ(AllUsed(*map), ExpectedFromDumpe2fs(dump, map->device_bytes()));
  Result<UsedBlockMap> by_name = MapPath(image, &notice);
  ASSERT_TRUE(by_name.ok()) << by_name.status().message();
  EXPECT_EQ(AllUsed(*map), AllUsed(*by_name));

  // The superblock reads, the descriptors and bitmaps (past the first 8 KiB) do not.
  FailingPastReader failing(&file.value(), 8192);
  Result<UsedBlockMap> failed = ExtUsedBlockMapOf(failing, image, "ext4", &notice);
  EXPECT_FALSE(failed.ok());
  if (!failed.ok()) {
    EXPECT_EQ(failed.status().code(), Code::kSource) << failed.status().message();
  }
}

TEST(FsmapExt, JournalNeedingRecoveryReadsEverything) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 64 * kMiB);
  RunOk("mkfs.ext4 -q -F " + Quote(loop.device()));
  RunOk("debugfs -w -R 'feature needs_recovery' " + Quote(loop.device()));
  std::string notice;
  Result<UsedBlockMap> map = MapPath(loop.device(), &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_TRUE(map->all_blocks());
  EXPECT_EQ(map->used_bytes(), map->device_bytes());
  EXPECT_NE(notice.find("needs recovery"), std::string::npos) << notice;
  EXPECT_NE(notice.find(loop.device()), std::string::npos) << notice;
}

TEST(FsmapExt, BlankDeviceReadsEverythingWithNotice) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 32 * kMiB);
  std::string notice;
  Result<UsedBlockMap> map = MapPath(loop.device(), &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_TRUE(map->all_blocks());
  EXPECT_EQ(map->fs_type(), "");
  EXPECT_EQ(map->device_bytes(), 32 * kMiB);
  EXPECT_EQ(map->used_bytes(), 32 * kMiB);
  EXPECT_NE(notice.find("no ext2/3/4 or xfs filesystem"), std::string::npos) << notice;
  EXPECT_NE(notice.find(loop.device()), std::string::npos) << notice;
  EXPECT_EQ(notice.find('\n'), std::string::npos);
}

}  // namespace
}  // namespace hotsnap
