// ComputeUsedBlockMap on real XFS loop devices. Expectations come from xfs_db (freesp -d
// lists every free extent, AGFL blocks included) and filefrag, never from the code under test.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <regex>
#include <sstream>
#include <vector>

#include "base/unique_fd.h"
#include "fsmap/used_block_map.h"
#include "fsmap/xfs_used_blocks.h"
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

Result<UsedBlockMap> MapPath(const std::string& path, std::string* notice) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status(Code::kSource, "open " + path);
  uint64_t bytes = 0;
  if (ioctl(fd.get(), BLKGETSIZE64, &bytes) != 0) return Status(Code::kSource, "size " + path);
  return ComputeUsedBlockMap(fd.get(), path, bytes, notice);
}

uint64_t SbField(const std::string& device, const std::string& field) {
  std::string out = RunOk("xfs_db -r -c 'sb 0' -c 'print " + field + "' " + Quote(device)).out;
  std::smatch m;
  if (!std::regex_search(out, m, std::regex(field + " = (\\d+)"))) {
    ADD_FAILURE() << "xfs_db gave no " << field << ": " << out;
    return 0;
  }
  return std::stoull(m[1]);
}

uint32_t SbVersion(const std::string& device) {
  std::string out = RunOk("xfs_db -r -c 'sb 0' -c 'print versionnum' " + Quote(device)).out;
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("versionnum = 0x([0-9a-f]+)"))) return 0;
  return std::stoul(m[1], nullptr, 16) & 0xf;
}

// Used byte extents according to xfs_db: everything except the free extents it lists.
std::vector<ByteExtent> ExpectedFromXfsDb(const std::string& device, uint64_t device_bytes) {
  uint64_t bs = SbField(device, "blocksize");
  uint64_t agblocks = SbField(device, "agblocks");
  std::string out = RunOk("xfs_db -r -c 'freesp -d' " + Quote(device)).out;
  std::vector<BlockRange> free;
  std::regex re("^\\s*(\\d+)\\s+(\\d+)\\s+(\\d+)\\s*$");
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (!std::regex_match(line, m, re)) continue;
    free.push_back({std::stoull(m[1]) * agblocks + std::stoull(m[2]), std::stoull(m[3])});
  }
  EXPECT_FALSE(free.empty()) << out;
  std::sort(free.begin(), free.end(), [](auto& a, auto& b) { return a.first < b.first; });
  std::vector<ByteExtent> used;
  uint64_t cursor = 0;
  for (const BlockRange& r : free) {
    if (r.first * bs > cursor) used.push_back({cursor, r.first * bs - cursor});
    cursor = (r.first + r.count) * bs;
  }
  if (device_bytes > cursor) used.push_back({cursor, device_bytes - cursor});
  return used;
}

std::vector<ByteExtent> AllUsed(const UsedBlockMap& map) {
  std::vector<ByteExtent> out;
  map.UsedIn(0, map.device_bytes(), &out);
  return out;
}

std::vector<BlockRange> FileBlocks(const std::string& path) {
  std::string out = RunOk("filefrag -v " + Quote(path)).out;
  std::vector<BlockRange> ranges;
  std::regex re(":\\s+\\d+\\.\\.\\s*\\d+:\\s+(\\d+)\\.\\.\\s*(\\d+):");
  for (std::sregex_iterator it(out.begin(), out.end(), re), end; it != end; ++it) {
    uint64_t a = std::stoull((*it)[1]);
    ranges.push_back({a, std::stoull((*it)[2]) - a + 1});
  }
  EXPECT_FALSE(ranges.empty()) << "filefrag found no extents:\n" << out;
  return ranges;
}

void CheckAgainstXfsDb(const std::string& device, const UsedBlockMap& map) {
  EXPECT_EQ(map.fs_type(), "xfs");
  EXPECT_FALSE(map.all_blocks());
  std::vector<ByteExtent> expected = ExpectedFromXfsDb(device, map.device_bytes());
  EXPECT_EQ(AllUsed(map), expected);
  uint64_t used = 0;
  for (const ByteExtent& e : expected) used += e.length_bytes;
  EXPECT_EQ(map.used_bytes(), used);
}

TEST(FsmapXfs, V5MatchesXfsDbAndDropsDeletedFile) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 512 * kMiB);
  RunOk("mkfs.xfs -q -f " + Quote(loop.device()));
  ASSERT_EQ(SbVersion(loop.device()), 5u);
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
  CheckAgainstXfsDb(loop.device(), *map);
  uint64_t bs = SbField(loop.device(), "blocksize");
  // filefrag reports XFS physical blocks as linear device blocks.
  UniqueFd fd(open(loop.device().c_str(), O_RDONLY));
  char marker[8] = {};
  ASSERT_EQ(pread(fd.get(), marker, 8, static_cast<off_t>(deleted[0].first * bs)), 8);
  ASSERT_EQ(std::string(marker, 8), "HOTSNAP-") << "deleted data not on disk; test is moot";
  for (const BlockRange& r : deleted) EXPECT_TRUE(map->NoneUsed(r.first * bs, r.count * bs));
  for (const BlockRange& r : live) EXPECT_TRUE(map->AllUsed(r.first * bs, r.count * bs));
  EXPECT_TRUE(map->AllUsed(0, 4 * 512));  // sb, AGF, AGI, AGFL of AG 0
}

// XfsUsedBlockMapOf reads through a RangedReader (fsmap/pread_source.h): the same map as
// through the descriptor, checked against xfs_db.
TEST(FsmapXfs, RangedReaderGivesTheSameMap) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  const std::string image = dir.File("fs.img");
  RunOk("truncate -s 320M " + Quote(image) + " && mkfs.xfs -q -f " + Quote(image));
  {
    MountPoint mnt(image, dir.File("mnt"), "loop");
    RunOk("head -c 3000000 /dev/urandom > " + Quote(mnt.path() + "/live"));
  }
  UniqueFd fd(open(image.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  Result<FdRangedReader> file = FdRangedReader::Open(fd.get(), image);
  ASSERT_TRUE(file.ok()) << file.status().message();
  std::string notice;
  Result<UsedBlockMap> map = XfsUsedBlockMapOf(*file, image, &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(notice, "");
  EXPECT_FALSE(map->all_blocks());
  Result<UsedBlockMap> by_fd = XfsUsedBlockMap(fd.get(), image, 0, file->size_bytes(), &notice);
  ASSERT_TRUE(by_fd.ok()) << by_fd.status().message();
  EXPECT_EQ(AllUsed(*map), AllUsed(*by_fd));
  CheckAgainstXfsDb(image, *map);
}

TEST(FsmapXfs, V4MatchesXfsDb) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 512 * kMiB);
  RunOk("mkfs.xfs -q -f -m crc=0 " + Quote(loop.device()));
  ASSERT_EQ(SbVersion(loop.device()), 4u);
  std::string notice;
  Result<UsedBlockMap> map = MapPath(loop.device(), &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  CheckAgainstXfsDb(loop.device(), *map);
}

// Many small free extents in one AG make the bnobt grow past one leaf, so the walk
// through interior nodes is exercised.
TEST(FsmapXfs, MultiLevelBnobtMatchesXfsDb) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 400 * kMiB);
  RunOk("mkfs.xfs -q -f -b size=1024 " + Quote(loop.device()));
  {
    MountPoint mnt(loop.device(), dir.File("mnt"));
    std::string d = Quote(mnt.path());
    RunOk("cd " + d + " && i=0; while [ $i -lt 1200 ]; do head -c 1024 /dev/urandom > f$i; "
          "i=$((i+1)); done; sync; i=0; while [ $i -lt 1200 ]; do rm f$i; i=$((i+2)); done; sync");
  }
  uint32_t max_level = 0;
  uint64_t agcount = SbField(loop.device(), "agcount");
  for (uint64_t ag = 0; ag < agcount; ++ag) {
    std::string out = RunOk("xfs_db -r -c 'agf " + std::to_string(ag) + "' -c 'print bnolevel' " +
                            Quote(loop.device())).out;
    std::smatch m;
    if (std::regex_search(out, m, std::regex("bnolevel = (\\d+)"))) {
      max_level = std::max<uint32_t>(max_level, std::stoul(m[1]));
    }
  }
  ASSERT_GE(max_level, 2u) << "bnobt stayed one leaf; test is moot";
  std::string notice;
  Result<UsedBlockMap> map = MapPath(loop.device(), &notice);
  ASSERT_TRUE(map.ok()) << map.status().message();
  CheckAgainstXfsDb(loop.device(), *map);
}

void Overwrite(const std::string& device, uint64_t offset, const std::string& bytes) {
  RunOk("printf '%s' " + Quote(bytes) + " | dd of=" + Quote(device) +
        " bs=1 seek=" + std::to_string(offset) + " conv=notrunc,fsync status=none");
}

TEST(FsmapXfs, CorruptAgfMagicIsCleanError) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 512 * kMiB);
  RunOk("mkfs.xfs -q -f " + Quote(loop.device()));
  uint64_t agf1 = SbField(loop.device(), "agblocks") * SbField(loop.device(), "blocksize") +
                  SbField(loop.device(), "sectsize");
  Overwrite(loop.device(), agf1, "XXXX");
  std::string notice;
  Result<UsedBlockMap> map = MapPath(loop.device(), &notice);
  ASSERT_FALSE(map.ok());
  EXPECT_EQ(map.status().code(), Code::kSource);
  const std::string& msg = map.status().message();
  EXPECT_NE(msg.find("AG 1 AGF"), std::string::npos) << msg;
  EXPECT_NE(msg.find("magic"), std::string::npos) << msg;
  EXPECT_NE(msg.find(loop.device()), std::string::npos) << msg;
}

TEST(FsmapXfs, CorruptBnobtRootIsCleanError) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice loop(dir.path(), 512 * kMiB);
  RunOk("mkfs.xfs -q -f " + Quote(loop.device()));
  std::string out = RunOk("xfs_db -r -c 'agf 2' -c 'print bnoroot' " + Quote(loop.device())).out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex("bnoroot = (\\d+)"))) << out;
  uint64_t root = std::stoull(m[1]);
  uint64_t bs = SbField(loop.device(), "blocksize");
  // Records start after the 56-byte v5 header: make the first record run past the AG end.
  Overwrite(loop.device(), (2 * SbField(loop.device(), "agblocks") + root) * bs + 56 + 4,
            std::string("\x7f\xff\xff\xff", 4));
  std::string notice;
  Result<UsedBlockMap> map = MapPath(loop.device(), &notice);
  ASSERT_FALSE(map.ok());
  EXPECT_EQ(map.status().code(), Code::kSource);
  const std::string& msg = map.status().message();
  EXPECT_NE(msg.find("AG 2 bnobt block " + std::to_string(root)), std::string::npos) << msg;
}

}  // namespace
}  // namespace hotsnap
