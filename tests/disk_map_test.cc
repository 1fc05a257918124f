// Whole-disk maps (fsmap/disk_map.h) and whole-disk images, on real loop devices holding GPT
// and DOS tables written by sfdisk, with filesystems made by the real mkfs tools. What each
// filesystem uses is computed by dumpe2fs / xfs_db on the filesystem before it is copied
// into its partition (UsedRangesOf), never by hotsnap.
#include "fsmap/disk_map.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/used_map.h"
#include "base/unique_fd.h"
#include "io/partition_table.h"
#include "tests/partitioned_disk.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::CommandResult;
using ::hotsnap::testing::Hotsnap;
using ::hotsnap::testing::LoopDevice;
using ::hotsnap::testing::MountPoint;
using ::hotsnap::testing::Quote;
using ::hotsnap::testing::RunOk;
using ::hotsnap::testing::SizeOf;
using ::hotsnap::testing::TempDir;
using ::hotsnap::testing::UsedRangesOf;
using ::hotsnap::testing::WritePartitionTable;

constexpr uint64_t kMiB = 1024 * 1024;

// testing::Run (a TEST body's own Run() hides it).
CommandResult Shell(const std::string& command) { return ::hotsnap::testing::Run(command); }
constexpr uint64_t kSector = 512;

// One partition of a test disk: where it goes (in 512-byte sectors), the sfdisk type, and
// the filesystem made in it ("" for none).
struct PartSpec {
  uint64_t start_sectors;
  uint64_t size_sectors;
  std::string sfdisk_type;  // "U", "L", "S" (gpt), "83", "5", "82" (dos)
  std::string fs;           // "vfat", "ext4", "xfs", "swap", "" (extended)
  uint64_t start() const { return start_sectors * kSector; }
  uint64_t bytes() const { return size_sectors * kSector; }
};

// A filesystem's used ranges in disk offsets, as its own tools count them.
struct FsUse {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  uint64_t bytes = 0;
};

// Makes `spec.fs` on a scratch file of the partition's size, fills an ext4 or xfs with files
// (24 MiB of random data, a small tree, and 16 MiB written and deleted so free blocks hold
// old data), measures its use with its own tools, and copies it into place. (The host kernel
// has no vfat driver: the ESP stays as mkfs.vfat made it, and is compared byte for byte.)
FsUse MakePartition(const std::string& dir, const std::string& device, const PartSpec& spec) {
  FsUse use;
  if (spec.fs.empty()) return use;
  std::string scratch = dir + "/scratch-" + spec.fs + ".img";
  RunOk("rm -f " + Quote(scratch) + " && truncate -s " + std::to_string(spec.bytes()) + " " +
        Quote(scratch));
  std::string mkfs = spec.fs == "vfat"   ? "mkfs.vfat -n ESP"
                     : spec.fs == "ext4" ? "mkfs.ext4 -q -F -L root"
                     : spec.fs == "xfs"  ? "mkfs.xfs -q -f -L data"
                                         : "mkswap -L swap";
  RunOk(mkfs + " " + Quote(scratch) + " >/dev/null");
  if (spec.fs == "ext4" || spec.fs == "xfs") {
    {
      MountPoint m(scratch, dir + "/fill-" + spec.fs, "loop");
      std::string p = Quote(m.path());
      RunOk("head -c 24M /dev/urandom > " + p + "/random.bin && mkdir -p " + p +
            "/etc/conf && for i in $(seq 1 40); do echo line $i > " + p +
            "/etc/conf/file$i; done && head -c 16M /dev/urandom > " + p +
            "/deleted.bin && sync && rm " + p + "/deleted.bin");
    }
    // ext4 leaves the unused tails of inode tables out of its map (fsmap/used_block_map.h),
    // which dumpe2fs counts as used: for ext4 the ranges to find in the disk map are those
    // of the filesystem mapped on its own device (compared against dumpe2fs by
    // fsmap_ext_test); the dumpe2fs count still bounds the bytes.
    if (spec.fs == "ext4") {
      UniqueFd fd(::open(scratch.c_str(), O_RDONLY | O_CLOEXEC));
      std::string notice;
      auto own = ComputeUsedBlockMap(fd.get(), scratch, spec.bytes(), &notice);
      EXPECT_TRUE(own.ok() && !own->all_blocks()) << notice;
      std::vector<ByteExtent> extents;
      if (own.ok()) own->UsedIn(0, spec.bytes(), &extents);
      for (const ByteExtent& e : extents) {
        use.ranges.emplace_back(spec.start() + e.offset_bytes, spec.start() + e.end_bytes());
      }
    }
    for (auto [first, end] : UsedRangesOf(scratch, spec.fs)) {
      if (spec.fs == "xfs") use.ranges.emplace_back(spec.start() + first, spec.start() + end);
      use.bytes += end - first;
    }
  }
  RunOk("dd if=" + Quote(scratch) + " of=" + Quote(device) + " bs=1M oflag=seek_bytes seek=" +
        std::to_string(spec.start()) + " conv=notrunc,fsync status=none");
  RunOk("rm -f " + Quote(scratch));
  return use;
}

// The GPT test disk: ESP (vfat) + ext4 + xfs + swap, 470 MiB, a 4 MiB gap before the backup
// table at the end.
constexpr uint64_t kGptDiskBytes = 470 * kMiB;
const std::vector<PartSpec>& GptParts() {
  static const std::vector<PartSpec> parts = {{2048, 67584, "U", "vfat"},     // 33 MiB
                                              {69632, 196608, "L", "ext4"},   // 96 MiB
                                              {266240, 655360, "L", "xfs"},   // 320 MiB
                                              {921600, 32768, "S", "swap"}};  // 16 MiB
  return parts;
}
constexpr char kGptUuid[] = "3e1d4c2b-5a69-4f78-8e9d-0a1b2c3d4e5f";

std::string SfdiskScript(const std::string& label, const std::vector<PartSpec>& parts) {
  std::string s = "label: " + label + "\n";
  if (label == "gpt") s += std::string("label-id: ") + kGptUuid + "\n";
  for (const PartSpec& p : parts) {
    s += "start=" + std::to_string(p.start_sectors) + ",size=" + std::to_string(p.size_sectors) +
         ",type=" + p.sfdisk_type + "\n";
  }
  return s;
}

// Writes the table and every partition; returns the filesystems' own use.
std::vector<FsUse> BuildDisk(const std::string& dir, const std::string& device,
                             const std::string& label, const std::vector<PartSpec>& parts) {
  WritePartitionTable(device, SfdiskScript(label, parts));
  std::vector<FsUse> uses;
  for (const PartSpec& p : parts) uses.push_back(MakePartition(dir, device, p));
  return uses;
}

Result<UsedBlockMap> MapDisk(const std::string& device) {
  auto table = ProbePartitionTable(device, Code::kSource);
  if (!table.ok()) return table.status();
  UniqueFd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status(Code::kSource, "cannot open " + device);
  return ComputeDiskMap(fd.get(), device, SizeOf(device), *table);
}

// Bytes the map must hold at most: what the filesystems use, the partitions read whole or
// by header, and everything outside partitions; plus 10 %.
uint64_t AllowedBytes(uint64_t disk_bytes, const std::vector<PartSpec>& parts,
                      const std::vector<FsUse>& uses) {
  uint64_t expected = disk_bytes;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].fs == "ext4" || parts[i].fs == "xfs") {
      expected = expected - parts[i].bytes() + uses[i].bytes;
    } else if (parts[i].fs == "swap") {
      expected = expected - parts[i].bytes() + kSwapHeaderBytes;
    }
  }
  return expected + expected / 10;
}

TEST(DiskMapTest, GptMapsEachPartitionAtItsOffset) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice disk(dir.path(), kGptDiskBytes);
  std::vector<FsUse> uses = BuildDisk(dir.path(), disk.device(), "gpt", GptParts());

  auto map = MapDisk(disk.device());
  ASSERT_TRUE(map.ok()) << map.status().message();
  const DiskLayout* layout = map->disk_layout();
  ASSERT_NE(layout, nullptr);
  EXPECT_EQ(layout->table_type, "gpt");
  ASSERT_EQ(layout->partitions.size(), 4u);
  const char* methods[] = {"all blocks", "ext4 bitmap", "xfs bnobt", "swap header"};
  for (size_t i = 0; i < 4; ++i) {
    const MappedPartition& m = layout->partitions[i];
    EXPECT_EQ(m.partition.number, static_cast<int>(i + 1));
    EXPECT_EQ(m.partition.start_bytes, GptParts()[i].start());
    EXPECT_EQ(m.fs_type, GptParts()[i].fs);
    EXPECT_EQ(m.method, methods[i]) << "partition " << i + 1;
  }
  // The swap notice names the partition; no mapped filesystem fell back.
  ASSERT_EQ(layout->notices.size(), 1u);
  EXPECT_NE(layout->notices[0].find(disk.device() + " partition 4 is swap"), std::string::npos)
      << layout->notices[0];

  // Every block each filesystem uses, by its own tools, is in the map.
  for (size_t i = 0; i < uses.size(); ++i) {
    for (auto [first, end] : uses[i].ranges) {
      EXPECT_TRUE(map->AllUsed(first, end - first))
          << "p" << i + 1 << " [" << first << ", " << end << ") missing from the map";
    }
  }
  // The protective MBR, the primary GPT header and entries, the gap, the backup ones at the end.
  EXPECT_TRUE(map->AllUsed(0, GptParts()[0].start()));
  uint64_t last_end = GptParts()[3].start() + GptParts()[3].bytes();
  EXPECT_TRUE(map->AllUsed(last_end, kGptDiskBytes - last_end));
  EXPECT_TRUE(map->AllUsed(GptParts()[0].start(), GptParts()[0].bytes())) << "ESP read whole";
  // Swap: the header page only.
  EXPECT_TRUE(map->AllUsed(GptParts()[3].start(), kSwapHeaderBytes));
  EXPECT_TRUE(map->NoneUsed(GptParts()[3].start() + kSwapHeaderBytes,
                            GptParts()[3].bytes() - kSwapHeaderBytes));
  // Free space of the ext4 and xfs is left out, so the disk is not read whole.
  uint64_t allowed = AllowedBytes(kGptDiskBytes, GptParts(), uses);
  EXPECT_LE(map->used_bytes(), allowed);
  EXPECT_LT(map->used_bytes(), kGptDiskBytes / 2);
}

TEST(DiskMapTest, DosLogicalPartitionIsMappedAndEbrsKept) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  const uint64_t disk_bytes = 184 * kMiB;
  LoopDevice disk(dir.path(), disk_bytes);
  // p1 ext4 primary; p2 extended holding p5 (ext4) and p6 (swap), ending at 180 MiB.
  std::vector<PartSpec> parts = {{2048, 131072, "83", "ext4"},
                                 {133120, 235520, "5", ""},
                                 {135168, 196608, "83", "ext4"},
                                 {333824, 32768, "82", "swap"}};
  std::vector<FsUse> uses = BuildDisk(dir.path(), disk.device(), "dos", parts);

  auto map = MapDisk(disk.device());
  ASSERT_TRUE(map.ok()) << map.status().message();
  const DiskLayout* layout = map->disk_layout();
  ASSERT_NE(layout, nullptr);
  EXPECT_EQ(layout->table_type, "dos");
  ASSERT_EQ(layout->partitions.size(), 4u);
  EXPECT_EQ(layout->partitions[1].partition.number, 2);
  EXPECT_EQ(layout->partitions[1].method, "extended (EBRs)");
  EXPECT_EQ(layout->partitions[2].partition.number, 5);
  EXPECT_EQ(layout->partitions[2].method, "ext4 bitmap");
  EXPECT_EQ(layout->partitions[3].partition.number, 6);
  EXPECT_EQ(layout->partitions[3].method, "swap header");
  for (size_t i = 0; i < uses.size(); ++i) {
    for (auto [first, end] : uses[i].ranges) {
      EXPECT_TRUE(map->AllUsed(first, end - first)) << "partition spec " << i;
    }
  }
  // The MBR, the EBR at the start of the extended partition and the one before p6.
  EXPECT_TRUE(map->AllUsed(0, parts[0].start()));
  EXPECT_TRUE(map->AllUsed(parts[1].start(), parts[2].start() - parts[1].start()));
  EXPECT_TRUE(map->AllUsed(parts[2].start() + parts[2].bytes(),
                           parts[3].start() - parts[2].start() - parts[2].bytes()));
  // The logical ext4's free space is not read (the extended container is not read whole).
  std::vector<PartSpec> leaves = {parts[0], parts[2], parts[3]};
  std::vector<FsUse> leaf_uses = {uses[0], uses[2], uses[3]};
  EXPECT_LE(map->used_bytes(), AllowedBytes(disk_bytes, leaves, leaf_uses));
  std::vector<ByteExtent> in_p5;
  map->UsedIn(parts[2].start(), parts[2].bytes(), &in_p5);
  uint64_t p5_used = 0;
  for (const ByteExtent& e : in_p5) p5_used += e.length_bytes;
  EXPECT_LT(p5_used, parts[2].bytes() / 2) << "the logical partition was read whole";
}

// The result event's bytes_read from an events file.
uint64_t BytesReadFrom(const std::string& events_path) {
  std::ifstream in(events_path);
  std::string line;
  uint64_t bytes = 0;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.value("event", "") == "result" && j.contains("bytes_read")) {
      bytes = j["bytes_read"].get<uint64_t>();
    }
  }
  return bytes;
}

// `bytes` at `offset` of `path`.
std::string ReadRange(const std::string& path, uint64_t offset, uint64_t bytes) {
  std::string out(bytes, '\0');
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid() || ::pread(fd.get(), out.data(), bytes, static_cast<off_t>(offset)) !=
                         static_cast<ssize_t>(bytes)) {
    ADD_FAILURE() << "cannot read " << bytes << " bytes at " << offset << " of " << path;
  }
  return out;
}

// Copies partition `spec` of `device` to a file and returns its path.
std::string ExtractPartition(const std::string& dir, const std::string& device,
                             const PartSpec& spec, const std::string& name) {
  std::string out = dir + "/" + name;
  RunOk("dd if=" + Quote(device) + " of=" + Quote(out) + " bs=1M iflag=skip_bytes,count_bytes " +
        "skip=" + std::to_string(spec.start()) + " count=" + std::to_string(spec.bytes()) +
        " status=none");
  return out;
}

std::string TreeHashes(const std::string& dir) {
  return RunOk("cd " + Quote(dir) + " && find . -type f -exec sha256sum {} + | sort").out;
}

TEST(DiskMapTest, GptDiskImageRestoresTableHeadersAndFilesystems) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice disk(dir.path(), kGptDiskBytes, "source.img");
  std::vector<FsUse> uses = BuildDisk(dir.path(), disk.device(), "gpt", GptParts());

  // The dry run lists each partition with its filesystem, map and used bytes.
  CommandResult dry = Shell(Hotsnap("backup " + Quote(disk.device()) + " -o " +
                                    Quote(dir.File("dry.zst")) + " --dry-run"));
  ASSERT_EQ(dry.exit_code, 0) << dry.err;
  for (const char* want : {"from gpt partitions: p1 vfat all blocks 33.0 MiB, p2 ext4 bitmap ",
                           ", p3 xfs bnobt ", ", p4 swap header 4.0 KiB"}) {
    EXPECT_NE(dry.out.find(want), std::string::npos) << want << " not in\n" << dry.out;
  }

  std::string image = dir.File("disk.zst");
  std::string events = dir.File("events.jsonl");
  CommandResult b = Shell(Hotsnap("backup " + Quote(disk.device()) + " -o " + Quote(image) +
                                  " --events-fd 3 3>" + Quote(events)));
  ASSERT_EQ(b.exit_code, 0) << b.err;
  uint64_t read = BytesReadFrom(events);
  EXPECT_GT(read, 0u);
  EXPECT_LE(read, AllowedBytes(kGptDiskBytes, GptParts(), uses)) << "read " << read;

  // info lists the partitions, their filesystems and used bytes, in text and JSON.
  CommandResult info = RunOk(Hotsnap("info " + Quote(image)));
  EXPECT_NE(info.out.find("partitions:     gpt table " + std::string(kGptUuid)), std::string::npos)
      << info.out;
  for (const char* want :
       {"p1 ", ": vfat label 'ESP'", "(all blocks)", "p2 ", ": ext4 label 'root'", "(ext4 bitmap)",
        ": xfs label 'data'", "(xfs bnobt)", ": swap", "(swap header)"}) {
    EXPECT_NE(info.out.find(want), std::string::npos) << want << " not in\n" << info.out;
  }
  auto j = nlohmann::json::parse(RunOk(Hotsnap("info --json " + Quote(image))).out, nullptr, false);
  ASSERT_TRUE(j.is_object());
  ASSERT_TRUE(j.contains("partition_table"));
  EXPECT_EQ(j["partition_table"]["type"], "gpt");
  ASSERT_EQ(j["partition_table"]["partitions"].size(), 4u);
  EXPECT_EQ(j["partition_table"]["partitions"][2]["fs_type"], "xfs");
  EXPECT_EQ(j["partition_table"]["partitions"][2]["start_bytes"], GptParts()[2].start());
  EXPECT_EQ(j["partition_table"]["partitions"][3]["used_bytes"], kSwapHeaderBytes);

  // mount: the whole disk mounts its ext4 and xfs at m/p2 and m/p3 (tests/mount_parts_test.cc
  // covers that in depth); with --partition N each of them mounts alone at m and holds the
  // source partition's files; umount leaves nothing behind.
  RunOk("mkdir -p " + Quote(dir.File("m")));
  CommandResult whole = Shell(Hotsnap("mount " + Quote(image) + " " + Quote(dir.File("m"))));
  ASSERT_EQ(whole.exit_code, 0) << whole.err;
  EXPECT_EQ(RunOk("findmnt -no FSTYPE " + Quote(dir.File("m/p2"))).out, "ext4\n");
  EXPECT_EQ(RunOk("findmnt -no FSTYPE " + Quote(dir.File("m/p3"))).out, "xfs\n");
  CommandResult unwhole = Shell(Hotsnap("umount " + Quote(dir.File("m"))));
  EXPECT_EQ(unwhole.exit_code, 0) << unwhole.err;
  for (int i : {1, 2}) {
    std::string src = ExtractPartition(dir.path(), disk.device(), GptParts()[i], "src.img");
    MountPoint a(src, dir.File("a"), i == 2 ? "ro,loop,nouuid" : "ro,loop");
    CommandResult m = Shell(Hotsnap("mount " + Quote(image) + " " + Quote(dir.File("m")) +
                                    " --partition " + std::to_string(i + 1)));
    ASSERT_EQ(m.exit_code, 0) << m.err;
    std::string got = TreeHashes(dir.File("m"));
    CommandResult u = Shell(Hotsnap("umount " + Quote(dir.File("m"))));
    EXPECT_EQ(u.exit_code, 0) << u.err;
    EXPECT_EQ(got, TreeHashes(a.path())) << "partition " << i + 1;
    EXPECT_NE(got.find("./random.bin"), std::string::npos) << got;
  }
  EXPECT_EQ(Shell("losetup -j " + Quote(image)).out, "");

  LoopDevice target(dir.path(), kGptDiskBytes, "target.img");
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target.device())));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // The protective MBR + primary GPT (LBA 0-33) and the backup GPT (last 33 sectors) are
  // byte-identical, and so is the swap header page.
  EXPECT_EQ(ReadRange(target.device(), 0, 34 * kSector), ReadRange(disk.device(), 0, 34 * kSector));
  uint64_t backup_at = kGptDiskBytes - 33 * kSector;
  EXPECT_EQ(ReadRange(target.device(), backup_at, 33 * kSector),
            ReadRange(disk.device(), backup_at, 33 * kSector));
  EXPECT_EQ(ReadRange(target.device(), GptParts()[3].start(), kSwapHeaderBytes),
            ReadRange(disk.device(), GptParts()[3].start(), kSwapHeaderBytes));
  CommandResult verify = Shell("sfdisk --verify " + Quote(target.device()));
  EXPECT_EQ(verify.exit_code, 0) << verify.out << verify.err;

  // Each filesystem is clean and holds the same files.
  std::string ext4 = ExtractPartition(dir.path(), target.device(), GptParts()[1], "p2.img");
  std::string xfs = ExtractPartition(dir.path(), target.device(), GptParts()[2], "p3.img");
  std::string esp = ExtractPartition(dir.path(), target.device(), GptParts()[0], "p1.img");
  EXPECT_EQ(ReadRange(target.device(), GptParts()[0].start(), GptParts()[0].bytes()),
            ReadRange(disk.device(), GptParts()[0].start(), GptParts()[0].bytes()))
      << "the ESP, read whole, differs";
  CommandResult e2fsck = Shell("e2fsck -fn " + Quote(ext4));
  EXPECT_EQ(e2fsck.exit_code, 0) << e2fsck.out << e2fsck.err;
  CommandResult repair = Shell("xfs_repair -n -f " + Quote(xfs));
  EXPECT_EQ(repair.exit_code, 0) << repair.out << repair.err;
  CommandResult fsck_fat = Shell("fsck.vfat -n " + Quote(esp));
  EXPECT_EQ(fsck_fat.exit_code, 0) << fsck_fat.out << fsck_fat.err;
  for (int i : {1, 2}) {
    std::string src = ExtractPartition(dir.path(), disk.device(), GptParts()[i], "src.img");
    std::string dst = i == 1 ? ext4 : xfs;
    std::string opts = i == 2 ? "ro,loop,nouuid" : "ro,loop";
    MountPoint a(src, dir.File("a"), opts);
    MountPoint c(dst, dir.File("c"), opts);
    std::string want = TreeHashes(a.path());
    EXPECT_NE(want.find("./random.bin"), std::string::npos) << want;
    EXPECT_EQ(TreeHashes(c.path()), want) << "partition " << i + 1;
  }
}

TEST(DiskMapTest, GptImageOnLargerDiskGetsItsBackupTableAtTheEnd) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  const uint64_t small_bytes = 160 * kMiB;
  const uint64_t large_bytes = 224 * kMiB;
  LoopDevice disk(dir.path(), small_bytes, "source.img");
  std::vector<PartSpec> parts = {{2048, 196608, "L", "ext4"}, {198656, 65536, "S", "swap"}};
  BuildDisk(dir.path(), disk.device(), "gpt", parts);
  std::string image = dir.File("disk.zst");
  CommandResult b = Shell(Hotsnap("backup " + Quote(disk.device()) + " -o " + Quote(image)));
  ASSERT_EQ(b.exit_code, 0) << b.err;

  LoopDevice target(dir.path(), large_bytes, "target.img");
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target.device())));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("moved the GPT backup header and entries of " + target.device()),
            std::string::npos)
      << r.err;

  // sgdisk finds nothing wrong: the backup header is in the last sector, its entries before
  // it, and both headers' CRCs hold.
  CommandResult v = Shell("sgdisk -v " + Quote(target.device()));
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("No problems found"), std::string::npos) << v.out;
  std::string backup = ReadRange(target.device(), large_bytes - kSector, kSector);
  EXPECT_EQ(backup.substr(0, 8), "EFI PART") << "no backup header in the last sector";
  // The kernel gets both partitions: a fresh partition-scanned loop device over the file
  // (partx -a adds them with BLKPG where the host kernel has no GPT parser, reading the
  // table with libblkid, which rejects a GPT whose headers disagree).
  CommandResult attach = RunOk("losetup -f --show -P " + Quote(target.backing_file()));
  std::string scanned = attach.out.substr(0, attach.out.find('\n'));
  ASSERT_FALSE(scanned.empty());
  if (access((scanned + "p1").c_str(), F_OK) != 0) Shell("partx -a " + Quote(scanned));
  bool both = testing::WaitUntil(
      [&] {
        return access((scanned + "p1").c_str(), F_OK) == 0 &&
               access((scanned + "p2").c_str(), F_OK) == 0;
      },
      5);
  std::string blkid = Shell("blkid -p -o value -s TYPE " + Quote(scanned + "p1")).out;
  std::string sizes = Shell("partx -g -o NR,START,SECTORS " + Quote(scanned)).out;
  RunOk("losetup -d " + Quote(scanned));
  EXPECT_TRUE(both) << "the kernel found no " << scanned << "p1/p2";
  EXPECT_EQ(blkid, "ext4\n");
  EXPECT_NE(sizes.find("1   2048  196608"), std::string::npos) << sizes;
  EXPECT_NE(sizes.find("2 198656   65536"), std::string::npos) << sizes;
}

// The partitions of a live disk are mounted from the kernel's partition devices, and what a
// freeze flushes goes through those devices' caches; the disk map reads through the disk.
// The disk's own cache is made stale first (the whole disk read before the writes), so a
// map that trusted it would miss the blocks written since.
TEST(DiskMapTest, FrozenPartitionsMountedFromTheirOwnDevicesMapThroughTheDisk) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  const uint64_t disk_bytes = 512 * kMiB;
  testing::PartitionedLoopDevice disk(dir.path(), disk_bytes,
                                      {{1 * kMiB, 160 * kMiB}, {161 * kMiB, 320 * kMiB}});
  ASSERT_FALSE(disk.device().empty());
  RunOk("mkfs.ext4 -q -F " + Quote(disk.partition(1)));
  RunOk("mkfs.xfs -q -f " + Quote(disk.partition(2)));
  MountPoint ext4(disk.partition(1), dir.File("ext4"));
  MountPoint xfs(disk.partition(2), dir.File("xfs"));
  RunOk("cat " + Quote(disk.device()) + " > /dev/null");  // the disk's cache: pre-write state
  for (const MountPoint* m : {&ext4, &xfs}) {
    RunOk("head -c 40M /dev/urandom > " + Quote(m->path() + "/new.bin") + " && mkdir -p " +
          Quote(m->path() + "/d") + " && for i in $(seq 1 50); do echo $i > " +
          Quote(m->path() + "/d") + "/f$i; done");
  }
  testing::ThawOnExit thaw_ext4(ext4.path());
  testing::ThawOnExit thaw_xfs(xfs.path());
  RunOk("fsfreeze -f " + Quote(ext4.path()) + " && fsfreeze -f " + Quote(xfs.path()));
  // The reference: the frozen disk as it is on the medium (O_DIRECT, past every cache).
  std::string reference = dir.File("frozen.img");
  RunOk("dd if=" + Quote(disk.device()) + " of=" + Quote(reference) +
        " bs=4M iflag=direct status=none");

  SourceDevice source;
  source.path = disk.device();
  source.size_bytes = disk_bytes;
  auto map = MapUsedBlocks(source, /*all_blocks=*/false, /*announce=*/false);
  RunOk("fsfreeze -u " + Quote(ext4.path()) + " && fsfreeze -u " + Quote(xfs.path()));
  ASSERT_TRUE(map.ok()) << map.status().message();
  const DiskLayout* layout = map->disk_layout();
  ASSERT_NE(layout, nullptr);
  ASSERT_EQ(layout->partitions.size(), 2u);
  EXPECT_EQ(layout->partitions[0].method, "ext4 bitmap") << layout->partitions[0].notice;
  EXPECT_EQ(layout->partitions[1].method, "xfs bnobt") << layout->partitions[1].notice;

  // Every block the frozen filesystems use, by their own tools on the reference, is mapped.
  struct Part {
    uint64_t start, bytes;
    const char* fs;
  } parts[] = {{1 * kMiB, 160 * kMiB, "ext4"}, {161 * kMiB, 320 * kMiB, "xfs"}};
  for (const Part& p : parts) {
    std::string copy = dir.File(std::string(p.fs) + ".img");
    RunOk("dd if=" + Quote(reference) + " of=" + Quote(copy) +
          " bs=1M iflag=skip_bytes,count_bytes skip=" + std::to_string(p.start) +
          " count=" + std::to_string(p.bytes) + " status=none");
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    uint64_t used = 0;
    if (std::string(p.fs) == "xfs") {
      ranges = UsedRangesOf(copy, "xfs");
    } else {
      // See MakePartition: ext4's own map, compared against dumpe2fs by fsmap_ext_test.
      UniqueFd fd(::open(copy.c_str(), O_RDONLY | O_CLOEXEC));
      std::string notice;
      auto own = ComputeUsedBlockMap(fd.get(), copy, p.bytes, &notice);
      ASSERT_TRUE(own.ok() && !own->all_blocks()) << notice;
      std::vector<ByteExtent> extents;
      own->UsedIn(0, p.bytes, &extents);
      for (const ByteExtent& e : extents) ranges.emplace_back(e.offset_bytes, e.end_bytes());
    }
    for (auto [first, end] : ranges) {
      used += end - first;
      EXPECT_TRUE(map->AllUsed(p.start + first, end - first))
          << p.fs << " [" << first << ", " << end << ") used when frozen, missing from the map";
    }
    EXPECT_GT(used, 40 * kMiB) << p.fs << ": the new file is not in the frozen filesystem";
  }
}

}  // namespace
}  // namespace hotsnap
