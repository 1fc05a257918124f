// Tests of io/partition_table (ProbePartitionTable) and of the ambiguity report of
// ProbeFilesystem, on real loop devices (privileged): tables written by sfdisk, filesystems
// made by mkfs.ext4 / mkswap / mkfs.vfat inside the partitions' byte ranges. Expected offsets,
// types and UUIDs are the ones given to sfdisk and mkfs, never values read back by hotsnap.
#include <strings.h>

#include <string>

#include "io/partition_table.h"
#include "io/source_device.h"
#include "tests/partitioned_disk.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::LoopDevice;
using ::hotsnap::testing::MakeAmbiguousSignatures;
using ::hotsnap::testing::MakeFilesystemAt;
using ::hotsnap::testing::RunOk;
using ::hotsnap::testing::TempDir;
using ::hotsnap::testing::WritePartitionTable;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kSector = 512;  // sfdisk script units
constexpr char kExt4Uuid[] = "6f1c3a52-8d0e-4b7a-9c21-5e4d3b2a1f00";
constexpr char kSwapUuid[] = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d";

bool SameText(const std::string& a, const std::string& b) {
  return a.size() == b.size() && ::strcasecmp(a.c_str(), b.c_str()) == 0;
}

TEST(PartitionProbeTest, DosTableWithExt4AndSwap) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice disk(dir.path(), 128 * kMiB);
  WritePartitionTable(disk.device(),
                      "label: dos\nlabel-id: 0x1234abcd\n"
                      "start=2048,size=65536,type=83\nstart=67584,size=98304,type=82\n");
  MakeFilesystemAt(dir.path(), disk.device(), 2048 * kSector, 65536 * kSector,
                   std::string("mkfs.ext4 -q -F -L data -U ") + kExt4Uuid);
  MakeFilesystemAt(dir.path(), disk.device(), 67584 * kSector, 98304 * kSector,
                   std::string("mkswap -U ") + kSwapUuid);

  Result<PartitionTable> table = ProbePartitionTable(disk.device(), Code::kTarget);
  ASSERT_TRUE(table.ok()) << table.status().message();
  EXPECT_EQ(table->type, "dos");
  EXPECT_EQ(table->uuid, "1234abcd");
  EXPECT_FALSE(table->ambiguous);
  EXPECT_FALSE(table->none());
  ASSERT_EQ(table->partitions.size(), 2u);
  const Partition& p1 = table->partitions[0];
  EXPECT_EQ(p1.number, 1);
  EXPECT_EQ(p1.start_bytes, 2048 * kSector);
  EXPECT_EQ(p1.size_bytes, 65536 * kSector);
  EXPECT_EQ(p1.type, "0x83");
  EXPECT_EQ(p1.uuid, "1234abcd-01");
  EXPECT_FALSE(p1.extended);
  EXPECT_EQ(p1.filesystem.type, "ext4");
  EXPECT_EQ(p1.filesystem.uuid, kExt4Uuid);
  EXPECT_EQ(p1.filesystem.label, "data");
  const Partition& p2 = table->partitions[1];
  EXPECT_EQ(p2.number, 2);
  EXPECT_EQ(p2.start_bytes, 67584 * kSector);
  EXPECT_EQ(p2.size_bytes, 98304 * kSector);
  EXPECT_EQ(p2.type, "0x82");
  EXPECT_EQ(p2.uuid, "1234abcd-02");
  EXPECT_EQ(p2.filesystem.type, "swap");
  EXPECT_EQ(p2.filesystem.uuid, kSwapUuid);

  std::string said = DescribePartitionTable(table.value());
  EXPECT_NE(said.find("a dos partition table with 2 partitions"), std::string::npos) << said;
  EXPECT_NE(said.find(std::string("p1: ext4 (UUID ") + kExt4Uuid + ") labelled 'data'"),
            std::string::npos)
      << said;
  EXPECT_NE(said.find("p2: swap"), std::string::npos) << said;
}

TEST(PartitionProbeTest, DosExtendedAndLogicalPartitions) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice disk(dir.path(), 64 * kMiB);
  WritePartitionTable(disk.device(),
                      "label: dos\nstart=2048,size=20480,type=83\n"
                      "start=22528,size=81920,type=5\nstart=24576,size=40960,type=83\n");
  MakeFilesystemAt(dir.path(), disk.device(), 24576 * kSector, 40960 * kSector,
                   "mkfs.ext4 -q -F -L logical");
  Result<PartitionTable> table = ProbePartitionTable(disk.device(), Code::kSource);
  ASSERT_TRUE(table.ok()) << table.status().message();
  EXPECT_EQ(table->type, "dos");
  ASSERT_EQ(table->partitions.size(), 3u);
  EXPECT_EQ(table->partitions[0].number, 1);
  EXPECT_EQ(table->partitions[0].filesystem.type, "");
  EXPECT_EQ(table->partitions[1].number, 2);
  EXPECT_TRUE(table->partitions[1].extended);
  EXPECT_EQ(table->partitions[1].type, "0x05");
  EXPECT_EQ(table->partitions[1].start_bytes, 22528 * kSector);
  const Partition& logical = table->partitions[2];
  EXPECT_EQ(logical.number, 5);
  EXPECT_FALSE(logical.extended);
  EXPECT_EQ(logical.start_bytes, 24576 * kSector);
  EXPECT_EQ(logical.size_bytes, 40960 * kSector);
  EXPECT_EQ(logical.filesystem.type, "ext4");
  EXPECT_EQ(logical.filesystem.label, "logical");
}

TEST(PartitionProbeTest, GptTableWithNamedPartitions) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice disk(dir.path(), 96 * kMiB);
  const std::string disk_guid = "3b6d2c1a-0f9e-4d8c-b7a6-5f4e3d2c1b0a";
  const std::string part_guid = "9e8d7c6b-5a49-4838-a726-150f4e3d2c1b";
  const std::string linux_fs = "0fc63daf-8483-4772-8e79-3d69d8477de4";
  const std::string esp = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
  WritePartitionTable(disk.device(), "label: gpt\nlabel-id: " + disk_guid +
                                         "\nstart=2048,size=16384,type=" + esp +
                                         ",name=boot\nstart=18432,size=131072,type=" + linux_fs +
                                         ",uuid=" + part_guid + ",name=root\n");
  MakeFilesystemAt(dir.path(), disk.device(), 2048 * kSector, 16384 * kSector,
                   "mkfs.vfat -n BOOTFS");
  MakeFilesystemAt(dir.path(), disk.device(), 18432 * kSector, 131072 * kSector,
                   std::string("mkfs.ext4 -q -F -U ") + kExt4Uuid);

  Result<PartitionTable> table = ProbePartitionTable(disk.device(), Code::kTarget);
  ASSERT_TRUE(table.ok()) << table.status().message();
  EXPECT_EQ(table->type, "gpt");
  EXPECT_TRUE(SameText(table->uuid, disk_guid)) << table->uuid;
  ASSERT_EQ(table->partitions.size(), 2u);
  const Partition& boot = table->partitions[0];
  EXPECT_EQ(boot.number, 1);
  EXPECT_EQ(boot.start_bytes, 2048 * kSector);
  EXPECT_EQ(boot.size_bytes, 16384 * kSector);
  EXPECT_TRUE(SameText(boot.type, esp)) << boot.type;
  EXPECT_EQ(boot.name, "boot");
  EXPECT_EQ(boot.filesystem.type, "vfat");
  EXPECT_EQ(boot.filesystem.label, "BOOTFS");
  const Partition& root = table->partitions[1];
  EXPECT_EQ(root.number, 2);
  EXPECT_EQ(root.start_bytes, 18432 * kSector);
  EXPECT_EQ(root.size_bytes, 131072 * kSector);
  EXPECT_TRUE(SameText(root.type, linux_fs)) << root.type;
  EXPECT_TRUE(SameText(root.uuid, part_guid)) << root.uuid;
  EXPECT_EQ(root.name, "root");
  EXPECT_EQ(root.filesystem.type, "ext4");
  EXPECT_EQ(root.filesystem.uuid, kExt4Uuid);
}

TEST(PartitionProbeTest, ProtectiveMbrWithoutItsGptIsStillATable) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  const uint64_t size = 32 * kMiB;
  LoopDevice disk(dir.path(), size);
  WritePartitionTable(disk.device(), "label: gpt\nstart=2048,size=16384\n");
  // Zero both GPT headers (LBA 1 and the last LBA): only the protective MBR is left.
  RunOk("dd if=/dev/zero of=" + disk.device() +
        " bs=512 seek=1 count=1 conv=notrunc,fsync status=none");
  RunOk("dd if=/dev/zero of=" + disk.device() + " bs=512 seek=" +
        std::to_string(size / kSector - 1) + " count=1 conv=notrunc,fsync status=none");
  Result<PartitionTable> table = ProbePartitionTable(disk.device(), Code::kTarget);
  ASSERT_TRUE(table.ok()) << table.status().message();
  EXPECT_EQ(table->type, "PMBR");
  EXPECT_FALSE(table->none());
  EXPECT_TRUE(table->partitions.empty());
  EXPECT_EQ(DescribePartitionTable(table.value()), "a PMBR partition table with no partitions");
}

TEST(PartitionProbeTest, BlankAndWholeDiskFilesystemHaveNoTable) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice disk(dir.path(), 32 * kMiB);
  Result<PartitionTable> blank = ProbePartitionTable(disk.device(), Code::kTarget);
  ASSERT_TRUE(blank.ok()) << blank.status().message();
  EXPECT_TRUE(blank->none());
  EXPECT_EQ(DescribePartitionTable(blank.value()), "");
  RunOk("mkfs.ext4 -q -F " + disk.device());
  Result<PartitionTable> fs = ProbePartitionTable(disk.device(), Code::kTarget);
  ASSERT_TRUE(fs.ok()) << fs.status().message();
  EXPECT_TRUE(fs->none()) << fs->type;
}

TEST(PartitionProbeTest, MissingDeviceIsAnErrorNamingIt) {
  TempDir dir;
  std::string missing = dir.File("no-such-disk");
  Result<PartitionTable> table = ProbePartitionTable(missing, Code::kSource);
  ASSERT_FALSE(table.ok());
  EXPECT_EQ(table.status().code(), Code::kSource);
  EXPECT_NE(table.status().message().find(missing), std::string::npos) << table.status().message();
}

TEST(FilesystemProbeTest, TwoSignaturesAreAmbiguousAndNamed) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice disk(dir.path(), 64 * kMiB);
  MakeAmbiguousSignatures(dir.path(), disk.device());
  // The oracle: util-linux's own blkid says so.
  testing::CommandResult blkid = testing::Run("blkid -p " + disk.device());
  ASSERT_NE(blkid.err.find("ambivalent"), std::string::npos) << blkid.out << blkid.err;

  FilesystemProbe fs = ProbeFilesystem(disk.device());
  EXPECT_TRUE(fs.ambiguous);
  EXPECT_EQ(fs.type, "");
  EXPECT_EQ(fs.uuid, "");
  std::string said = DescribeFilesystem(fs);
  EXPECT_NE(said.find("ext4"), std::string::npos) << said;
  EXPECT_NE(said.find("vfat"), std::string::npos) << said;
  EXPECT_NE(said.find("more than one"), std::string::npos) << said;
  // A FAT boot sector's 0x55AA is not taken for a dos partition table.
  Result<PartitionTable> table = ProbePartitionTable(disk.device(), Code::kTarget);
  ASSERT_TRUE(table.ok()) << table.status().message();
  EXPECT_TRUE(table->none()) << table->type;
}

}  // namespace
}  // namespace hotsnap
