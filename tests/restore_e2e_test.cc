// End-to-end tests of `hotsnap restore` on real loop devices (privileged): a backup piped
// straight into a restore reproduces the device (checked with cmp); restore refuses mounted
// and too-small targets without touching them; and a corrupt chunk stops the restore before
// that chunk's bytes reach the target (checked against a known fill pattern); and a target
// holding a partition table (dos, gpt, a bare protective MBR) or signatures libblkid calls
// ambiguous is refused without --force, untouched, with a message naming what it holds.
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "tests/partitioned_disk.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::CommandResult;
using ::hotsnap::testing::FillMixedChunks;
using ::hotsnap::testing::FillRegion;
using ::hotsnap::testing::FlipByte;
using ::hotsnap::testing::Hotsnap;
using ::hotsnap::testing::ImageFrameSpan;
using ::hotsnap::testing::LoopDevice;
using ::hotsnap::testing::MakeAmbiguousSignatures;
using ::hotsnap::testing::MakeFilesystem;
using ::hotsnap::testing::MakeFilesystemAt;
using ::hotsnap::testing::MountPoint;
using ::hotsnap::testing::PathExists;
using ::hotsnap::testing::Quote;
using ::hotsnap::testing::ReadAll;
using ::hotsnap::testing::RunOk;
using ::hotsnap::testing::Sha256;
using ::hotsnap::testing::SplitImageFrames;
using ::hotsnap::testing::TempDir;
using ::hotsnap::testing::WriteFile;
using ::hotsnap::testing::WritePartitionTable;

CommandResult Shell(const std::string& command) { return ::hotsnap::testing::Run(command); }

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kChunk = 4 * kMiB;

bool RegionHolds(const std::string& data, uint64_t begin, uint64_t end, char byte) {
  for (uint64_t i = begin; i < end && i < data.size(); ++i) {
    if (data[i] != byte) return false;
  }
  return end <= data.size();
}

TEST(RestoreE2eTest, BackupPipedIntoRestoreRoundTrips) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  const uint64_t size = 30 * kMiB + 1536;
  LoopDevice source(dir.path(), size, "source.img");
  LoopDevice target(dir.path(), size, "target.img");
  FillMixedChunks(source.device(), size);
  FillRegion(target.device(), 0, size, 0xAB);
  // The exit status of the backup half of the pipe is kept in a file (sh has no pipefail).
  std::string rc = dir.File("backup.rc");
  CommandResult r = Shell("{ " + Hotsnap("backup " + Quote(source.device()) + " -o -") + "; echo $? > " +
                          Quote(rc) + "; } | " + Hotsnap("restore - " + Quote(target.device())));
  EXPECT_EQ(ReadAll(rc), "0\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Shell("cmp " + Quote(source.device()) + " " + Quote(target.device())).exit_code, 0);

  // Into a regular file through the pipe too.
  std::string file = dir.File("piped.raw");
  r = Shell(Hotsnap("backup " + Quote(source.device()) + " -o -") + " | " +
            Hotsnap("restore - " + Quote(file)));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Shell("cmp " + Quote(source.device()) + " " + Quote(file)).exit_code, 0);
}

TEST(RestoreE2eTest, RefusesAMountedTarget) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice source(dir.path(), 64 * kMiB, "source.img");
  LoopDevice target(dir.path(), 64 * kMiB, "target.img");
  FillMixedChunks(source.device(), 64 * kMiB);
  std::string image = dir.File("img.zst");
  ASSERT_EQ(Shell(Hotsnap("backup " + Quote(source.device()) + " -o " + Quote(image))).exit_code, 0);
  RunOk("mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 " + Quote(target.device()));
  MountPoint mount(target.device(), dir.File("mnt"));
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target.device())));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("mounted"), std::string::npos) << r.err;
  // The mounted filesystem writes its own blocks now and then (journal commits, superblock),
  // so the device's hash is no stable witness; the image's data is: none of its distinctive
  // chunks (random, text, partly random) may have reached the target.
  RunOk("sync");
  std::string src = ReadAll(source.device());
  std::string dst = ReadAll(target.device());
  ASSERT_EQ(dst.size(), src.size());
  for (uint64_t k : {0u, 1u, 3u, 5u, 6u, 7u, 9u, 11u, 12u, 13u, 15u}) {
    EXPECT_NE(dst.compare(k * kChunk, kChunk, src, k * kChunk, kChunk), 0)
        << "chunk " << k << " of the image was written onto the mounted target";
  }
  EXPECT_EQ(Shell("test -d " + Quote(mount.path() + "/lost+found")).exit_code, 0);
}

TEST(RestoreE2eTest, RefusesASmallerTarget) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice source(dir.path(), 16 * kMiB, "source.img");
  LoopDevice target(dir.path(), 16 * kMiB - 512, "target.img");
  FillMixedChunks(source.device(), 16 * kMiB);
  FillRegion(target.device(), 0, 16 * kMiB - 512, 0xAB);
  std::string image = dir.File("img.zst");
  ASSERT_EQ(Shell(Hotsnap("backup " + Quote(source.device()) + " -o " + Quote(image))).exit_code, 0);
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target.device())));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_TRUE(RegionHolds(ReadAll(target.device()), 0, 16 * kMiB - 512, '\xAB')) << "target was written";
  // From stdin the size is only known from the metadata frame: still refused up front.
  r = Shell("cat " + Quote(image) + " | " + Hotsnap("restore - " + Quote(target.device())));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_TRUE(RegionHolds(ReadAll(target.device()), 0, 16 * kMiB - 512, '\xAB')) << "target was written";
}

TEST(RestoreE2eTest, ExistingTargetFileNeedsOverwrite) {
  TempDir dir;
  std::string source = dir.File("disk.raw");
  RunOk("head -c 6000000 /dev/urandom > " + Quote(source));
  std::string image = dir.File("img.zst");
  ASSERT_EQ(Shell(Hotsnap("backup " + Quote(source) + " -o " + Quote(image))).exit_code, 0);
  std::string target = dir.File("target.raw");
  WriteFile(target, "keep me");
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target)));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_EQ(ReadAll(target), "keep me");
  r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target) + " --overwrite"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Shell("cmp " + Quote(source) + " " + Quote(target)).exit_code, 0);
}

// ---- Targets that hold a partition table or an ambiguous probe ---------------------------

// Makes ext4 on `source` and backs it up to DIR/img.zst; returns the image path.
std::string BackUpExt4(const TempDir& dir, const LoopDevice& source) {
  MakeFilesystem("ext4", source.device());
  std::string image = dir.File("img.zst");
  RunOk(Hotsnap("backup " + Quote(source.device()) + " -o " + Quote(image) + " -q"));
  return image;
}

// Restores `image` onto `target` from the file and from stdin; both must be refused (exit 4)
// without writing a byte, with a message naming the device, holding each of `expected` and
// pointing at --force.
void ExpectRefusedUntouched(const std::string& image, const std::string& target,
                            const std::vector<std::string>& expected) {
  std::string before = Sha256(target);
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target) + " -q"));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("target " + target + " holds"), std::string::npos) << r.err;
  for (const std::string& word : expected) {
    EXPECT_NE(r.err.find(word), std::string::npos) << "no '" << word << "' in: " << r.err;
  }
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  EXPECT_EQ(Sha256(target), before) << "a refused restore wrote to " << target;
  r = Shell("cat " + Quote(image) + " | " + Hotsnap("restore - " + Quote(target) + " -q"));
  EXPECT_EQ(r.exit_code, 4) << "from stdin: " << r.err;
  EXPECT_EQ(Sha256(target), before) << "a refused restore from stdin wrote to " << target;
}

TEST(RestoreTargetTableTest, DosDiskIsRefusedNamingItsPartitionsThenForced) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice source(dir.path(), 128 * kMiB, "source.img");
  std::string image = BackUpExt4(dir, source);
  LoopDevice target(dir.path(), 128 * kMiB, "target.img");
  WritePartitionTable(
      target.device(),
      "label: dos\nstart=2048,size=65536,type=83\nstart=67584,size=98304,type=82\n");
  const std::string uuid = "5d4c3b2a-1908-4f7e-8d6c-5b4a39281706";
  MakeFilesystemAt(dir.path(), target.device(), 1 * kMiB, 32 * kMiB, "mkfs.ext4 -q -F -U " + uuid);
  MakeFilesystemAt(dir.path(), target.device(), 33 * kMiB, 48 * kMiB, "mkswap");
  ExpectRefusedUntouched(image, target.device(),
                         {"a dos partition table with 2 partitions", "p1: ext4 (UUID " + uuid + ")",
                          "p2: swap", "destroys them"});
  // Confirmed: restored over the table.
  CommandResult r =
      Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target.device()) + " --force -q"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Shell("cmp " + Quote(source.device()) + " " + Quote(target.device())).exit_code, 0);
}

TEST(RestoreTargetTableTest, GptDiskAndBareProtectiveMbrAreRefusedWipedDiskIsNot) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  const uint64_t size = 64 * kMiB;
  LoopDevice source(dir.path(), size, "source.img");
  std::string image = BackUpExt4(dir, source);
  LoopDevice target(dir.path(), size, "target.img");
  WritePartitionTable(target.device(), "label: gpt\nstart=2048,size=65536\n");
  ExpectRefusedUntouched(
      image, target.device(),
      {"a gpt partition table with 1 partition (p1: no recognised filesystem)", "destroys it"});
  // Both GPT headers gone (LBA 1 and the last LBA): the protective MBR alone still counts.
  RunOk("dd if=/dev/zero of=" + Quote(target.device()) +
        " bs=512 seek=1 count=1 conv=notrunc,fsync status=none");
  RunOk("dd if=/dev/zero of=" + Quote(target.device()) + " bs=512 seek=" +
        std::to_string(size / 512 - 1) + " count=1 conv=notrunc,fsync status=none");
  ExpectRefusedUntouched(image, target.device(), {"a PMBR partition table"});
  // Once wiped the disk is blank: no --force needed.
  RunOk("wipefs -q -a " + Quote(target.device()) + " 2>/dev/null");
  CommandResult r =
      Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target.device()) + " -q"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Shell("cmp " + Quote(source.device()) + " " + Quote(target.device())).exit_code, 0);
}

TEST(RestoreTargetTableTest, ATableIsNeverTheImagesOwnFilesystem) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice source(dir.path(), 64 * kMiB, "source.img");
  std::string image = BackUpExt4(dir, source);
  // The image's own disk, partitioned since: its ext4 superblock (same UUID) is still there at
  // byte 1024, beside the table sfdisk wrote in sector 0.
  WritePartitionTable(source.device(), "label: dos\nstart=2048,size=65536,type=83\n");
  ExpectRefusedUntouched(image, source.device(), {"a dos partition table with 1 partition"});
}

TEST(RestoreTargetTableTest, AmbiguousSignaturesAreRefusedThenForced) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice source(dir.path(), 64 * kMiB, "source.img");
  std::string image = BackUpExt4(dir, source);
  LoopDevice target(dir.path(), 64 * kMiB, "target.img");
  MakeAmbiguousSignatures(dir.path(), target.device());
  CommandResult blkid = Shell("blkid -p " + Quote(target.device()));
  ASSERT_NE(blkid.err.find("ambivalent"), std::string::npos) << "not ambiguous: " << blkid.out;
  ExpectRefusedUntouched(image, target.device(),
                         {"more than one kind", "ext4", "vfat", "cannot tell which is live"});
  CommandResult r =
      Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target.device()) + " --force -q"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Shell("cmp " + Quote(source.device()) + " " + Quote(target.device())).exit_code, 0);
}

// A 24 MiB device of mixed chunks, its image, and a target pre-filled with 0xAB.
class CorruptChunkRestoreTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kSize = 24 * kMiB;
  void Prepare() {
    source_ = std::make_unique<LoopDevice>(dir_.path(), kSize, "source.img");
    target_ = std::make_unique<LoopDevice>(dir_.path(), kSize, "target.img");
    FillMixedChunks(source_->device(), kSize);
    FillRegion(target_->device(), 0, kSize, 0xAB);
    image_ = dir_.File("img.zst");
    ASSERT_EQ(Shell(Hotsnap("backup " + Quote(source_->device()) + " -o " + Quote(image_))).exit_code, 0);
    frames_ = SplitImageFrames(ReadAll(image_));
    ASSERT_EQ(frames_.size(), 1 + kSize / kChunk + 3) << "metadata, chunks, report, trailer, seek table";
    for (uint64_t k = 0; k < kSize / kChunk; ++k) ASSERT_EQ(frames_[1 + k].magic, 0xFD2FB528u) << k;
  }
  // Flips a byte in the middle of chunk `k`'s frame.
  void CorruptChunk(uint64_t k) {
    const ImageFrameSpan& f = frames_[1 + k];
    FlipByte(image_, f.offset + f.bytes / 2, 0x01);
  }
  void ExpectChunkNotWritten(uint64_t k) {
    std::string data = ReadAll(target_->device());
    ASSERT_EQ(data.size(), kSize);
    EXPECT_TRUE(RegionHolds(data, k * kChunk, (k + 1) * kChunk, '\xAB'))
        << "bytes of corrupt chunk " << k << " reached the target";
    EXPECT_TRUE(RegionHolds(data, (k + 1) * kChunk, kSize, '\xAB')) << "chunks after the corrupt one were written";
  }
  TempDir dir_;
  std::unique_ptr<LoopDevice> source_;
  std::unique_ptr<LoopDevice> target_;
  std::string image_;
  std::vector<ImageFrameSpan> frames_;
};

TEST_F(CorruptChunkRestoreTest, FromAFileStopsBeforeTheCorruptChunk) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NO_FATAL_FAILURE(Prepare());
  // Chunk 3 is 1 MiB of random data then zeros: the flip lands in data zstd must reproduce.
  CorruptChunk(3);
  CommandResult r = Shell(Hotsnap("restore " + Quote(image_) + " " + Quote(target_->device())));
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("chunk 3"), std::string::npos) << "message does not name the chunk: " << r.err;
  ExpectChunkNotWritten(3);
}

TEST_F(CorruptChunkRestoreTest, FromStdinStopsBeforeTheCorruptChunk) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NO_FATAL_FAILURE(Prepare());
  CorruptChunk(1);  // compressible text: any flip breaks decoding or the content checksum
  CommandResult r = Shell("cat " + Quote(image_) + " | " + Hotsnap("restore - " + Quote(target_->device())));
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("chunk 1"), std::string::npos) << r.err;
  ExpectChunkNotWritten(1);
}

TEST_F(CorruptChunkRestoreTest, IntoAFileLeavesNoFile) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NO_FATAL_FAILURE(Prepare());
  CorruptChunk(5);
  std::string file = dir_.File("restored.raw");
  CommandResult r = Shell(Hotsnap("restore " + Quote(image_) + " " + Quote(file)));
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_FALSE(PathExists(file));
  CommandResult left = Shell("ls -A " + Quote(dir_.path()));
  EXPECT_EQ(left.out.find(".hotsnap-"), std::string::npos) << "left behind:\n" << left.out;
}

}  // namespace
}  // namespace hotsnap
