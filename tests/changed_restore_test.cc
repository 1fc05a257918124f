// End-to-end tests of `hotsnap restore IMAGE TARGET --changed-only` on real loop devices
// (privileged), with ext4 and XFS: a device backed up unmounted, then changed through a mount
// (files rewritten, deleted, created), is rolled back to the image on every block the image's
// filesystem uses (the map made here, independently, by fsmap opening a plain restore of the
// image into a file by name): the same bytes that file holds — and the chunks the run reports
// as written are exactly the 4 MiB pieces that differed (counted here by comparing the device,
// its free blocks taken as zeros, with that file). A second run writes nothing. On ext4,
// garbage in blocks free in the image is neither read nor rewritten and the rolled-back
// filesystem is still sound and holds the image's files, while one changed used block in a
// chunk that is nearly all free is found and rewritten alone. A delta image (backup --base)
// rolls back through its chain the same way, and a whole GPT disk image onto its own disk
// byte for byte (same PTUUID; a new table is refused). A target holding another filesystem
// (mkfs again: a new UUID) and a mounted target are refused with exit 4, the first left
// unchanged (sha256); an image on stdin or ssh://, and --force, are refused with exit 2.
#include <fcntl.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"
#include "fsmap/used_block_map.h"

#include "tests/json_schema.h"
#include "tests/partitioned_disk.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::CommandResult;
using ::hotsnap::testing::FillRegion;
using ::hotsnap::testing::Hotsnap;
using ::hotsnap::testing::JsonSchema;
using ::hotsnap::testing::LoopDevice;
using ::hotsnap::testing::MakeFilesystem;
using ::hotsnap::testing::MakeFilesystemAt;
using ::hotsnap::testing::MountPoint;
using ::hotsnap::testing::Quote;
using ::hotsnap::testing::ReadAll;
using ::hotsnap::testing::RunOk;
using ::hotsnap::testing::Sha256;
using ::hotsnap::testing::TempDir;
using ::hotsnap::testing::WritePartitionTable;

CommandResult Shell(const std::string& command) { return ::hotsnap::testing::Run(command); }

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kChunk = 4 * kMiB;

uint64_t DeviceBytesFor(const std::string& fs) { return fs == "xfs" ? 320 * kMiB : 128 * kMiB; }

// libblkid's UUID (tag "UUID") or partition table UUID ("PTUUID") of `device`.
std::string BlkidTag(const std::string& device, const std::string& tag) {
  std::string uuid = RunOk("blkid -p -s " + tag + " -o value " + Quote(device)).out;
  while (!uuid.empty() && uuid.back() == '\n') uuid.pop_back();
  return uuid;
}
std::string FsUuid(const std::string& device) { return BlkidTag(device, "UUID"); }

// Writes `count` files of `mib` MiB of random bytes named PREFIX-N into `dir`.
void WriteRandomFiles(const std::string& dir, const std::string& prefix, int count, int mib) {
  for (int i = 0; i < count; ++i) {
    RunOk("head -c " + std::to_string(mib * kMiB) + " /dev/urandom > " +
          Quote(dir + "/" + prefix + "-" + std::to_string(i)));
  }
}

// A fresh filesystem on `device`, filled through a mount with files, then unmounted.
void MakePopulatedFilesystem(const std::string& fs, const std::string& device, const TempDir& dir) {
  if (fs == "ext4") {
    // No lazy init: the kernel would zero inode tables in the background after a later mount.
    RunOk("mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 " + Quote(device));
  } else {
    MakeFilesystem(fs, device);
  }
  MountPoint mount(device, dir.File("fill-mnt"));
  RunOk("mkdir " + Quote(mount.path() + "/data"));
  WriteRandomFiles(mount.path() + "/data", "orig", 12, 2);
  RunOk("cp -r /usr/share/doc/bash " + Quote(mount.path() + "/doc"));
}

// Changes the filesystem on `device` through a mount: two files rewritten in place, three
// deleted, new ones created (`round` keeps names apart between calls).
void ChangeFilesystem(const std::string& device, const TempDir& dir, int round) {
  MountPoint mount(device, dir.File("change-mnt"));
  const std::string data = mount.path() + "/data";
  RunOk("dd if=/dev/urandom of=" + Quote(data + "/orig-" + std::to_string(round)) +
        " bs=64K count=4 seek=3 conv=notrunc status=none");
  RunOk("dd if=/dev/urandom of=" + Quote(data + "/orig-" + std::to_string(round + 5)) +
        " bs=1M count=1 conv=notrunc status=none");
  for (int i = 0; i < 3; ++i) RunOk("rm -f " + Quote(data + "/orig-" + std::to_string(10 - 3 * round + i)));
  WriteRandomFiles(data, "new" + std::to_string(round), 3, 1);
  RunOk("rm -rf " + Quote(mount.path() + "/doc"));
}

// Pieces of `piece` bytes (4 MiB chunks, 4 KiB blocks) in which `x` and `y` differ, over
// their first `bytes` bytes.
uint64_t DifferingPieces(const std::string& x, const std::string& y, uint64_t bytes, uint64_t piece) {
  EXPECT_GE(x.size(), bytes);
  EXPECT_GE(y.size(), bytes);
  if (x.size() < bytes || y.size() < bytes) return 0;
  uint64_t differing = 0;
  for (uint64_t at = 0; at < bytes; at += piece) {
    uint64_t n = std::min(piece, bytes - at);
    if (x.compare(at, n, y, at, n) != 0) ++differing;
  }
  return differing;
}

// The same for two files or devices.
uint64_t DifferingChunks(const std::string& a, const std::string& b, uint64_t bytes, uint64_t piece = kChunk) {
  return DifferingPieces(ReadAll(a), ReadAll(b), bytes, piece);
}

// The used-block map of the filesystem in `file` (a plain restore of an image), made by the
// fsmap library opening the file by name, apart from the image the run under test reads.
UsedBlockMap MapOfFile(const std::string& file) {
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd.valid()) << file;
  std::string notice;
  auto map = ComputeUsedBlockMap(fd.get(), file, ::hotsnap::testing::SizeOf(file), &notice);
  EXPECT_TRUE(map.ok()) << map.status().message();
  EXPECT_EQ(notice, "");
  if (!map.ok()) return UsedBlockMap::AllBlocks(::hotsnap::testing::SizeOf(file));
  return std::move(map.value());
}

// The first `bytes` bytes of `path` with every byte `used` leaves out set to zero: what
// --changed-only compares with the image.
std::string UsedBytesOf(const std::string& path, const UsedBlockMap& used, uint64_t bytes) {
  std::string data = ReadAll(path);
  EXPECT_GE(data.size(), bytes);
  data.resize(bytes);
  std::vector<ByteExtent> extents;
  used.UsedIn(0, bytes, &extents);
  uint64_t at = 0;
  for (const ByteExtent& e : extents) {
    std::fill(data.begin() + at, data.begin() + e.offset_bytes, '\0');
    at = e.end_bytes();
  }
  std::fill(data.begin() + at, data.end(), '\0');
  return data;
}

JsonSchema LoadSchema() {
  return JsonSchema(nlohmann::json::parse(ReadAll(std::string(HOTSNAP_SOURCE_DIR) + "/docs/events.schema.json")));
}

// The "result" event among the JSON events in `err`, checked against the schema.
nlohmann::json ResultEvent(const std::string& err) {
  JsonSchema schema = LoadSchema();
  nlohmann::json result;
  size_t start = 0;
  while (start < err.size()) {
    size_t end = err.find('\n', start);
    if (end == std::string::npos) end = err.size();
    std::string line = err.substr(start, end - start);
    start = end + 1;
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
    if (j.is_discarded()) continue;
    EXPECT_EQ(schema.Validate(j), "") << line;
    if (j.value("event", "") == "result") result = j;
  }
  EXPECT_TRUE(result.is_object()) << "no result event in: " << err;
  return result;
}

// A plain restore of `image` into the new file `file`; returns its sha256.
std::string PlainRestoreSha(const std::string& image, const std::string& file) {
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(file)));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return Sha256(file);
}

// Rolls `device` back to `image` with --changed-only --json and checks the result against an
// independent count of the chunks in which the device differs from `reference` (a plain
// restore of the image), and the device's bytes against it afterwards. With `used` (the map
// of the image's filesystem), the device's bytes outside it count as zeros, as the image holds there,
// and only the bytes in it must equal the reference afterwards; without, every byte.
void ExpectRollBack(const std::string& image, const std::string& device, const std::string& reference,
                    uint64_t device_bytes, const UsedBlockMap* used = nullptr) {
  const UsedBlockMap all = UsedBlockMap::AllBlocks(device_bytes);
  const UsedBlockMap& map = used != nullptr ? *used : all;
  const uint64_t chunks = (device_bytes + kChunk - 1) / kChunk;
  const std::string want = ReadAll(reference);
  const std::string before = UsedBytesOf(device, map, device_bytes);
  const uint64_t differing = DifferingPieces(before, want, device_bytes, kChunk);
  // In a chunk that differs only the 4 KiB blocks that differ are written.
  const uint64_t differing_blocks = DifferingPieces(before, want, device_bytes, 4096);
  EXPECT_GT(differing, 0u) << "the change made no difference: the test proves nothing";
  EXPECT_LT(differing, chunks) << "every chunk differs: the test proves nothing";
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(device) + " --changed-only --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Nothing differs now: a second run, at once (the first must have let go of the device: an
  // io_uring file registration used to keep its O_EXCL claim for a moment after exit), reads
  // everything and writes nothing.
  CommandResult again = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(device) + " --changed-only --json"));
  ASSERT_EQ(again.exit_code, 0) << again.err;

  nlohmann::json result = ResultEvent(r.err);
  EXPECT_EQ(result.value("changed_only", false), true) << result.dump();
  EXPECT_EQ(result.value("chunks_compared", uint64_t{0}), chunks) << result.dump();
  EXPECT_EQ(result.value("chunks_written", uint64_t{0}), differing) << result.dump();
  EXPECT_EQ(result.value("bytes_written", uint64_t{0}), differing_blocks * 4096) << result.dump();
  EXPECT_LT(differing_blocks * 4096, differing * kChunk) << "the changes should not fill whole chunks";
  if (used == nullptr) {
    EXPECT_EQ(result.value("target_bytes_read", uint64_t{0}), device_bytes) << result.dump();
  } else {
    // The used bytes, and free gaps read through; never the free chunks.
    EXPECT_GE(result.value("target_bytes_read", uint64_t{0}), used->used_bytes()) << result.dump();
    EXPECT_LT(result.value("target_bytes_read", uint64_t{device_bytes}), device_bytes) << result.dump();
  }
  result = ResultEvent(again.err);
  EXPECT_EQ(result.value("chunks_compared", uint64_t{0}), chunks) << result.dump();
  EXPECT_EQ(result.value("chunks_written", uint64_t{99}), 0u) << result.dump();
  EXPECT_EQ(result.value("bytes_written", uint64_t{99}), 0u) << result.dump();
  if (used == nullptr) {
    EXPECT_EQ(Sha256(device), Sha256(reference)) << "the rolled-back device differs from a full restore";
    EXPECT_EQ(DifferingChunks(device, reference, device_bytes), 0u);
  } else {
    const std::string after = UsedBytesOf(device, map, device_bytes);
    EXPECT_EQ(DifferingPieces(after, UsedBytesOf(reference, map, device_bytes), device_bytes, 4096), 0u)
        << "a block the image uses differs from a full restore";
  }
}

class ChangedRestoreTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ChangedRestoreTest, RollsBackOnlyTheChangedChunks) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const std::string fs = GetParam();
  const uint64_t bytes = DeviceBytesFor(fs);
  TempDir dir;
  LoopDevice device(dir.path(), bytes);
  MakePopulatedFilesystem(fs, device.device(), dir);
  const std::string image = dir.File("img.zst");
  CommandResult r = Shell(Hotsnap("backup " + Quote(device.device()) + " -o " + Quote(image)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string reference = dir.File("reference.raw");
  PlainRestoreSha(image, reference);

  const UsedBlockMap used = MapOfFile(reference);
  ChangeFilesystem(device.device(), dir, 0);
  ExpectRollBack(image, device.device(), reference, bytes, &used);
  // The rolled-back filesystem is sound.
  const std::string check = fs == "xfs" ? "xfs_repair -n " : "e2fsck -fn ";
  EXPECT_EQ(Shell(check + Quote(device.device())).exit_code, 0);
}

TEST_P(ChangedRestoreTest, RollsADeltaImageBackThroughItsChain) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const std::string fs = GetParam();
  const uint64_t bytes = DeviceBytesFor(fs);
  TempDir dir;
  LoopDevice device(dir.path(), bytes);
  MakePopulatedFilesystem(fs, device.device(), dir);
  const std::string full = dir.File("full.zst");
  CommandResult r = Shell(Hotsnap("backup " + Quote(device.device()) + " -o " + Quote(full)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ChangeFilesystem(device.device(), dir, 0);
  const std::string delta = dir.File("delta.zst");
  r = Shell(Hotsnap("backup " + Quote(device.device()) + " -o " + Quote(delta) + " --base " + Quote(full)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_NE(Shell(Hotsnap("info " + Quote(delta))).out.find("delta"), std::string::npos);
  const std::string reference = dir.File("reference.raw");
  PlainRestoreSha(delta, reference);

  const UsedBlockMap used = MapOfFile(reference);
  ChangeFilesystem(device.device(), dir, 1);
  ExpectRollBack(delta, device.device(), reference, bytes, &used);
}

TEST_P(ChangedRestoreTest, RefusesAnotherFilesystemAndLeavesItUnchanged) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const std::string fs = GetParam();
  TempDir dir;
  LoopDevice device(dir.path(), DeviceBytesFor(fs));
  MakePopulatedFilesystem(fs, device.device(), dir);
  const std::string image_uuid = FsUuid(device.device());
  ASSERT_FALSE(image_uuid.empty());
  const std::string image = dir.File("img.zst");
  CommandResult r = Shell(Hotsnap("backup " + Quote(device.device()) + " -o " + Quote(image)));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  MakeFilesystem(fs, device.device());  // the same kind of filesystem, with a new UUID
  const std::string new_uuid = FsUuid(device.device());
  ASSERT_FALSE(new_uuid.empty());
  ASSERT_NE(new_uuid, image_uuid);
  const std::string before = Sha256(device.device());
  r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(device.device()) + " --changed-only"));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find(device.device()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(image_uuid), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(new_uuid), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rolling a device back to an earlier image of itself"), std::string::npos) << r.err;
  EXPECT_EQ(Sha256(device.device()), before) << "the refused target was written";
}

TEST_P(ChangedRestoreTest, RefusesAMountedTarget) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const std::string fs = GetParam();
  TempDir dir;
  LoopDevice device(dir.path(), DeviceBytesFor(fs));
  MakePopulatedFilesystem(fs, device.device(), dir);
  const std::string image = dir.File("img.zst");
  CommandResult r = Shell(Hotsnap("backup " + Quote(device.device()) + " -o " + Quote(image)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  MountPoint mount(device.device(), dir.File("mnt"));
  RunOk("rm " + Quote(mount.path() + "/data/orig-0"));
  r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(device.device()) + " --changed-only"));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("mounted"), std::string::npos) << r.err;
  // Had anything been written under the mounted filesystem, the deleted file would be back.
  mount.Unmount();
  MountPoint again(device.device(), dir.File("mnt2"));
  EXPECT_EQ(Shell("test -e " + Quote(again.path() + "/data/orig-0")).exit_code, 1);
}

INSTANTIATE_TEST_SUITE_P(Filesystems, ChangedRestoreTest, ::testing::Values("ext4", "xfs"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// ext4: what blocks free in the image hold does not matter — garbage there is neither read nor
// rewritten, and the rolled-back filesystem is sound and holds the image's files — while one
// used block changed in a chunk that is nearly all free is found and rewritten alone.
TEST(ChangedRestoreFreeBlocksTest, LeavesBlocksFreeInTheImageAndFindsAChangedUsedBlock) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const uint64_t bytes = DeviceBytesFor("ext4");
  TempDir dir;
  LoopDevice device(dir.path(), bytes);
  MakePopulatedFilesystem("ext4", device.device(), dir);
  const std::string image = dir.File("img.zst");
  CommandResult r = Shell(Hotsnap("backup " + Quote(device.device()) + " -o " + Quote(image)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string reference = dir.File("reference.raw");
  PlainRestoreSha(image, reference);
  const UsedBlockMap used = MapOfFile(reference);
  ASSERT_FALSE(used.all_blocks());

  // A chunk the image's filesystem does not use at all, and one it uses less than 1/8 of
  // (not the first: garbage in the superblock would make the target another filesystem).
  int64_t free_chunk = -1, sparse_chunk = -1;
  std::vector<ByteExtent> extents;
  for (uint64_t c = 1; c < bytes / kChunk; ++c) {
    extents.clear();
    used.UsedIn(c * kChunk, kChunk, &extents);
    uint64_t in_use = 0;
    for (const ByteExtent& e : extents) in_use += e.length_bytes;
    if (in_use == 0 && free_chunk < 0) free_chunk = static_cast<int64_t>(c);
    if (in_use > 0 && in_use < kChunk / 8 && sparse_chunk < 0) sparse_chunk = static_cast<int64_t>(c);
  }
  ASSERT_GE(free_chunk, 0) << "no free chunk: the test proves nothing";
  ASSERT_GE(sparse_chunk, 0) << "no nearly free chunk: the test proves nothing";
  // In the sparse chunk: the 4 KiB block holding its first used byte, and a free 4 KiB block.
  extents.clear();
  used.UsedIn(sparse_chunk * kChunk, kChunk, &extents);
  const uint64_t used_block = extents.front().offset_bytes / 4096 * 4096;
  uint64_t free_block = 0;
  for (uint64_t at = sparse_chunk * kChunk; at < (sparse_chunk + 1) * kChunk; at += 4096) {
    if (used.NoneUsed(at, 4096)) {
      free_block = at;
      break;
    }
  }
  ASSERT_NE(free_block, 0u);

  FillRegion(device.device(), free_chunk * kChunk, kChunk);
  FillRegion(device.device(), free_block, 4096);
  FillRegion(device.device(), used_block, 4096);
  const std::string garbage = ReadAll(device.device());
  ASSERT_NE(garbage.compare(used_block, 4096, ReadAll(reference), used_block, 4096), 0);

  r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(device.device()) + " --changed-only --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json result = ResultEvent(r.err);
  EXPECT_EQ(result.value("chunks_written", uint64_t{0}), 1u) << result.dump();
  EXPECT_EQ(result.value("bytes_written", uint64_t{0}), 4096u) << result.dump();
  // The free chunk was not even read.
  EXPECT_LE(result.value("target_bytes_read", bytes), bytes - kChunk) << result.dump();

  const std::string after = ReadAll(device.device());
  ASSERT_EQ(after.size(), bytes);
  EXPECT_EQ(after.compare(used_block, 4096, ReadAll(reference), used_block, 4096), 0)
      << "the changed used block was not rolled back";
  EXPECT_EQ(after.compare(free_chunk * kChunk, kChunk, garbage, free_chunk * kChunk, kChunk), 0)
      << "the chunk free in the image was rewritten";
  EXPECT_EQ(after.compare(free_block, 4096, garbage, free_block, 4096), 0)
      << "the block free in the image was rewritten";
  EXPECT_EQ(DifferingPieces(UsedBytesOf(device.device(), used, bytes), UsedBytesOf(reference, used, bytes),
                            bytes, 4096), 0u)
      << "a block the image uses differs from a full restore";
  EXPECT_NE(Sha256(device.device()), Sha256(reference)) << "the free blocks were zeroed after all";

  // A second run finds nothing to do; the filesystem is sound and holds the image's files.
  r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(device.device()) + " --changed-only --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  result = ResultEvent(r.err);
  EXPECT_EQ(result.value("chunks_written", uint64_t{99}), 0u) << result.dump();
  EXPECT_EQ(Shell("e2fsck -fn " + Quote(device.device())).exit_code, 0);
  MountPoint rolled(device.device(), dir.File("rolled"), "ro");
  MountPoint full(reference, dir.File("full"), "ro,loop");
  CommandResult diff = Shell("diff -r " + Quote(rolled.path()) + " " + Quote(full.path()));
  EXPECT_EQ(diff.exit_code, 0) << diff.out << diff.err;
}

// A whole GPT disk (one ext4 partition): the identity is the partition table's type and PTUUID.
TEST(ChangedRestoreWholeDiskTest, RollsBackAGptDiskAndRefusesAnotherTable) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const uint64_t bytes = 64 * kMiB;
  const std::string table = "label: gpt\nstart=2048,size=100000\n";
  TempDir dir;
  LoopDevice device(dir.path(), bytes);
  WritePartitionTable(device.device(), table);
  MakeFilesystemAt(dir.path(), device.device(), 2048 * 512, 100000 * 512, "mkfs.ext4 -q -F");
  const std::string image_ptuuid = BlkidTag(device.device(), "PTUUID");
  ASSERT_FALSE(image_ptuuid.empty());
  const std::string image = dir.File("disk.zst");
  CommandResult r = Shell(Hotsnap("backup " + Quote(device.device()) + " -o " + Quote(image)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_NE(Shell(Hotsnap("info " + Quote(image))).out.find("gpt table " + image_ptuuid), std::string::npos);
  const std::string reference = dir.File("reference.raw");
  PlainRestoreSha(image, reference);

  // Raw writes inside the partition (its free space and its first blocks) and past it.
  FillRegion(device.device(), 2048 * 512 + 4096, 64 * 1024);
  FillRegion(device.device(), 20 * kMiB, 3 * kMiB);
  FillRegion(device.device(), 60 * kMiB, 4096);
  ExpectRollBack(image, device.device(), reference, bytes);

  // The same layout written anew: another disk as far as the PTUUID says.
  WritePartitionTable(device.device(), table);
  const std::string new_ptuuid = BlkidTag(device.device(), "PTUUID");
  ASSERT_NE(new_ptuuid, image_ptuuid);
  const std::string before = Sha256(device.device());
  r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(device.device()) + " --changed-only"));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find(image_ptuuid), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(new_ptuuid), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rolling a device back to an earlier image of itself"), std::string::npos) << r.err;
  EXPECT_EQ(Sha256(device.device()), before) << "the refused target was written";
}

TEST(ChangedRestoreUsageTest, RefusesAnImageThatIsNoFileAndForce) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice device(dir.path(), 64 * kMiB);
  MakeFilesystem("ext4", device.device());
  const std::string image = dir.File("img.zst");
  CommandResult r = Shell(Hotsnap("backup " + Quote(device.device()) + " -o " + Quote(image)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string before = Sha256(device.device());
  r = Shell("cat " + Quote(image) + " | " + Hotsnap("restore - " + Quote(device.device()) + " --changed-only"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("needs IMAGE as a file"), std::string::npos) << r.err;
  r = Shell(Hotsnap("restore ssh://backup.invalid/img.zst " + Quote(device.device()) + " --changed-only"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("needs IMAGE as a file"), std::string::npos) << r.err;
  // --force would bypass what --changed-only relies on.
  r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(device.device()) + " --changed-only --force"));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--force does not apply"), std::string::npos) << r.err;
  EXPECT_EQ(Sha256(device.device()), before);
}

}  // namespace
}  // namespace hotsnap
