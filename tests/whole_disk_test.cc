// The done-means test of issue 14 for whole GPT disks: a live backup of a real loop disk
// (GPT: an ESP made by mkfs.vfat, an ext4 and an XFS mounted read-write with data and a writer
// busy on both, a swap partition made by mkswap), in freeze and tracked mode, restored onto a
// second loop disk of the same size and compared with the disk as it was at the final freeze.
//
// The reference is the whole frozen disk, copied by a --while-frozen hook with `dd
// iflag=direct`: O_DIRECT reads the medium, past the whole-disk device's page cache, which is
// stale here (the filesystems are mounted from the loopNpM partition devices, whose writes
// never update the disk device's cache).
//
// What each filesystem uses comes from its own tools run on the reference, never from hotsnap
// (testing::UsedRangesOf): for the ext4 the complement of the per-group "Free blocks" lists of
// `dumpe2fs`, for the XFS the complement of the free extents `xfs_db -r -c 'freesp -d'` lists
// from each AG's free-space B+tree. Both count every metadata block (superblocks, group
// descriptors, bitmaps, whole inode tables, journal or log, AG headers and B+trees, AGFL) as
// used, so they bound hotsnap's own maps from above. The ext4 is made with its inode tables and
// journal zeroed by mkfs (lazy_itable_init=0, lazy_journal_init=0), so no lazy-init thread
// writes behind the freeze and the tails of inode tables hotsnap leaves out are zero in the
// reference as in the restored disk.
//
// Checked on the restored disk:
// - every used block (by the oracle) of the ext4 and of the XFS equals the reference;
// - every byte outside the partitions (protective MBR, primary GPT header and entries at LBA
//   1-33, the gap, the backup entries and header at the end) equals the reference, and sgdisk
//   finds the table sound;
// - the ESP (read whole: random bytes written in its free clusters must come back) equals the
//   reference in full; the swap header page is the reference's and blkid sees swap with the
//   UUID mkswap was given;
// - e2fsck -fn finds the ext4 clean; the XFS, after its log is replayed (mount -o nouuid,
//   umount), passes xfs_repair -n;
// - the cross-filesystem writer's logs (transfer j appended to the ext4, fsync, then to the
//   XFS, fsync) hold count(XFS) <= count(ext4) <= count(XFS) + 1, each a gapless sequence;
// - the bytes hotsnap read (its result event; in tracked mode less what its rounds copied
//   again) and its map at the final freeze (used_bytes) are each at most the used bytes of
//   both filesystems (by the oracle) + the ESP + the swap header page + everything outside
//   partitions, + 10 %; and the free blocks of the deleted file, random in the reference, are
//   zeros in the restored disk (the filesystems were not read whole).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "tests/group_probes.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::CrossWriter;
using testing::Hotsnap;
using testing::LastResultEvent;
using testing::Lines;
using testing::MountPoint;
using testing::Quote;
using testing::ReadAll;
using testing::RunOk;
using testing::TempDir;
using testing::ThawOnExit;
using testing::UsedRangesOf;
using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kSector = 512;
constexpr uint64_t kSwapPageBytes = 4096;
constexpr char kDiskUuid[] = "6f0c1a2b-3d4e-4f50-8a61-72839a4b5c6d";
constexpr char kSwapUuid[] = "0b7e2c4d-9a1f-4e3b-8c5d-6e7f8091a2b3";

CommandResult Sh(const std::string& command) { return testing::Run(command); }

// One partition of the test disk, in bytes (1 MiB aligned).
struct Part {
  uint64_t start;
  uint64_t bytes;
  const char* sfdisk_type;  // U: EFI system, L: Linux filesystem, S: Linux swap
  uint64_t end() const { return start + bytes; }
};
// p1 ESP 33 MiB, p2 ext4 128 MiB, p3 XFS 320 MiB, p4 swap 16 MiB; 2 MiB before the backup
// GPT at the end of the 500 MiB disk.
constexpr uint64_t kDiskBytes = 500 * kMiB;
constexpr Part kEsp{1 * kMiB, 33 * kMiB, "U"};
constexpr Part kExt4{34 * kMiB, 128 * kMiB, "L"};
constexpr Part kXfs{162 * kMiB, 320 * kMiB, "L"};
constexpr Part kSwap{482 * kMiB, 16 * kMiB, "S"};
constexpr Part kParts[] = {kEsp, kExt4, kXfs, kSwap};

std::string SfdiskScript() {
  std::string s = std::string("label: gpt\nlabel-id: ") + kDiskUuid + "\n";
  for (const Part& p : kParts) {
    s += "start=" + std::to_string(p.start / kSector) +
         ",size=" + std::to_string(p.bytes / kSector) + ",type=" + p.sfdisk_type + "\n";
  }
  return s;
}

// A loop device with partition scanning over a sparse file of `bytes` in `dir`; with a
// non-empty sfdisk `script`, the file gets that table before it is attached. This kernel
// has no GPT parser, so AddPartitions() creates the partition devices with `partx -a`
// (BLKPG, the table read by libblkid). Detaching removes them; the destructor detaches and
// removes the file.
class GptLoopDisk {
 public:
  GptLoopDisk(const std::string& dir, const std::string& name, uint64_t bytes,
              const std::string& script)
      : file_(dir + "/" + name) {
    RunOk("truncate -s " + std::to_string(bytes) + " " + Quote(file_));
    if (!script.empty()) {
      RunOk("printf %s " + Quote(script) + " | sfdisk -q " + Quote(file_) + " >/dev/null");
    }
    CommandResult r = RunOk("losetup -f --show -P " + Quote(file_));
    device_ = r.out.substr(0, r.out.find('\n'));
    if (device_.empty()) ADD_FAILURE() << "losetup gave no device for " << file_;
  }
  ~GptLoopDisk() {
    if (!device_.empty()) testing::Run("losetup -d " + Quote(device_));
    ::unlink(file_.c_str());
  }
  GptLoopDisk(const GptLoopDisk&) = delete;
  GptLoopDisk& operator=(const GptLoopDisk&) = delete;

  // Partition devices 1..count for the table now on the disk; false if one does not appear.
  bool AddPartitions(int count) {
    if (device_.empty()) return false;
    if (::access(partition(1).c_str(), F_OK) != 0) testing::Run("partx -a " + Quote(device_));
    for (int n = 1; n <= count; ++n) {
      if (!testing::WaitUntil([&] { return ::access(partition(n).c_str(), F_OK) == 0; }, 10)) {
        ADD_FAILURE() << "no " << partition(n) << " after partx -a";
        return false;
      }
    }
    return true;
  }
  const std::string& device() const { return device_; }
  const std::string& file() const { return file_; }
  std::string partition(int n) const { return device_ + "p" + std::to_string(n); }

 private:
  std::string file_;
  std::string device_;
};

// `bytes` at `offset` of `path`.
std::string ReadRange(const std::string& path, uint64_t offset, uint64_t bytes) {
  std::string out(bytes, '\0');
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ssize_t got = fd < 0 ? -1 : ::pread(fd, out.data(), bytes, static_cast<off_t>(offset));
  if (fd >= 0) ::close(fd);
  if (got != static_cast<ssize_t>(bytes)) {
    ADD_FAILURE() << "cannot read " << bytes << " bytes at " << offset << " of " << path;
  }
  return out;
}

// 4 KiB blocks that differ between files `a` and `b` within `ranges` (byte offsets relative
// to `base`, a partition's start in both files).
struct Difference {
  uint64_t blocks = 0;
  uint64_t first = UINT64_MAX;  // offset relative to base
  uint64_t compared_bytes = 0;
};
Difference CompareRanges(const std::string& a, const std::string& b, uint64_t base,
                         const Ranges& ranges) {
  Difference d;
  for (const auto& [begin, end] : ranges) {
    for (uint64_t at = begin; at < end;) {
      uint64_t n = std::min<uint64_t>(4 * kMiB, end - at);
      std::string x = ReadRange(a, base + at, n);
      std::string y = ReadRange(b, base + at, n);
      for (uint64_t i = 0; i < n; i += 4096) {
        uint64_t m = std::min<uint64_t>(4096, n - i);
        if (x.compare(i, m, y, i, m) != 0) {
          ++d.blocks;
          d.first = std::min(d.first, at + i);
        }
      }
      d.compared_bytes += n;
      at += n;
    }
  }
  return d;
}

uint64_t BytesIn(const Ranges& ranges) {
  uint64_t n = 0;
  for (const auto& [begin, end] : ranges) n += end - begin;
  return n;
}

// [0, bytes) less `ranges` (sorted, disjoint).
Ranges Complement(const Ranges& ranges, uint64_t bytes) {
  Ranges out;
  uint64_t at = 0;
  for (const auto& [begin, end] : ranges) {
    if (begin > at) out.emplace_back(at, begin);
    at = std::max(at, end);
  }
  if (at < bytes) out.emplace_back(at, bytes);
  return out;
}

// Copies partition `p` of the disk image `image` to its own file (for the fs tools).
std::string ExtractPartition(const std::string& image, const Part& p, const std::string& out) {
  RunOk("dd if=" + Quote(image) + " of=" + Quote(out) +
        " bs=1M iflag=skip_bytes,count_bytes conv=sparse skip=" + std::to_string(p.start) +
        " count=" + std::to_string(p.bytes) + " status=none");
  return out;
}

// 24 MiB of random data, a small tree, and 16 MiB written, synced and deleted (so free blocks
// hold old data that must not come back).
void FillFilesystem(const std::string& mnt) {
  std::string m = Quote(mnt);
  RunOk("head -c 24M /dev/urandom > " + m + "/random.bin && mkdir -p " + m +
        "/etc/conf && for i in $(seq 1 40); do echo line $i > " + m +
        "/etc/conf/file$i; done && head -c 16M /dev/urandom > " + m + "/deleted.bin && sync -f " +
        m + " && rm " + m + "/deleted.bin && sync -f " + m);
}

// Whether `text` is the lines 00000000, 00000001, ... (CrossWriter's log, whole lines only).
bool IsTransferSequence(const std::string& text) {
  char want[16];
  uint64_t j = 0;
  for (size_t at = 0; at < text.size(); at += 9, ++j) {
    std::snprintf(want, sizeof(want), "%08lu\n", static_cast<unsigned long>(j));
    if (text.compare(at, 9, want) != 0) return false;
  }
  return true;
}

// The source disk: table, ESP (with random bytes in its free clusters: it is read whole),
// ext4 and XFS mounted read-write and filled, swap.
class SourceDisk {
 public:
  explicit SourceDisk(const std::string& dir)
      : disk_(dir, "source.img", kDiskBytes, SfdiskScript()) {
    if (!disk_.AddPartitions(4)) return;
    RunOk("mkfs.vfat -n ESP " + Quote(disk_.partition(1)) + " >/dev/null");
    RunOk("dd if=/dev/urandom of=" + Quote(disk_.partition(1)) +
          " bs=1M seek=25 count=8 conv=notrunc,fsync status=none");
    RunOk("mkfs.ext4 -q -F -L root -E lazy_itable_init=0,lazy_journal_init=0 " +
          Quote(disk_.partition(2)));
    RunOk("mkfs.xfs -q -f -L data " + Quote(disk_.partition(3)));
    RunOk("mkswap -L swap -U " + std::string(kSwapUuid) + " " + Quote(disk_.partition(4)) +
          " >/dev/null");
    ext4_.emplace(disk_.partition(2), dir + "/ext4");
    xfs_.emplace(disk_.partition(3), dir + "/xfs");
    FillFilesystem(ext4());
    FillFilesystem(xfs());
    ready_ = true;
  }
  bool ready() const { return ready_; }
  const std::string& device() const { return disk_.device(); }
  std::string ext4() const { return ext4_->path(); }
  std::string xfs() const { return xfs_->path(); }

 private:
  GptLoopDisk disk_;
  std::optional<MountPoint> ext4_;
  std::optional<MountPoint> xfs_;
  bool ready_ = false;
};

class WholeDiskTest : public ::testing::TestWithParam<std::string> {};

TEST_P(WholeDiskTest, GptDiskRestoresToTheFrozenMomentOnEveryUsedBlock) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  SourceDisk source(dir.path());
  ASSERT_TRUE(source.ready());
  const std::string image = dir.File("disk.zst");
  const std::string reference = dir.File("reference.img");
  const std::string hook = dir.File("hook.sh");
  testing::WriteFile(hook, "dd if=" + Quote(source.device()) + " of=" + Quote(reference) +
                               " bs=4M iflag=direct status=none\n");
  nlohmann::json result;
  {
    CrossWriter transfers(source.ext4(), source.xfs());
    // Destroyed before the writer: a writer blocked on a frozen filesystem is reaped only
    // once it is thawed.
    ThawOnExit thaw_ext4(source.ext4()), thaw_xfs(source.xfs());
    ASSERT_TRUE(
        testing::WaitUntil([&] { return Lines(source.ext4() + "/transfers.log") >= 50; }, 60))
        << "the writer did not start";
    CommandResult r =
        Sh("timeout 600 " +
           Hotsnap("backup " + Quote(source.device()) + " -o " + Quote(image) + " --snapshot " +
                   GetParam() + " --max-freeze 300 --hook-timeout 300 --while-frozen " +
                   Quote("sh " + hook) + " --json"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    result = LastResultEvent(r.err);
  }
  ASSERT_TRUE(result.is_object()) << "no result event";
  std::vector<std::string> frozen = result.value("frozen", std::vector<std::string>{});
  std::sort(frozen.begin(), frozen.end());
  EXPECT_EQ(frozen, (std::vector<std::string>{source.ext4(), source.xfs()}));
  ASSERT_EQ(testing::SizeOf(reference), kDiskBytes) << "the while-frozen hook copied no disk";

  // The oracle: what each filesystem of the reference uses, by its own tools.
  const Ranges ext4_used =
      UsedRangesOf(ExtractPartition(reference, kExt4, dir.File("ref-ext4.img")), "ext4");
  const Ranges xfs_used =
      UsedRangesOf(ExtractPartition(reference, kXfs, dir.File("ref-xfs.img")), "xfs");
  RunOk("rm -f " + Quote(dir.File("ref-ext4.img")) + " " + Quote(dir.File("ref-xfs.img")));
  EXPECT_GT(BytesIn(ext4_used), 24 * kMiB) << "the ext4's data is not in the reference";
  EXPECT_GT(BytesIn(xfs_used), 24 * kMiB) << "the XFS's data is not in the reference";

  GptLoopDisk target(dir.path(), "target.img", kDiskBytes, "");
  CommandResult restore =
      Sh(Hotsnap("restore " + Quote(image) + " " + Quote(target.device()) + " -q"));
  ASSERT_EQ(restore.exit_code, 0) << restore.err;
  // Compared through the target's backing file (what the loop device wrote), before anything
  // mounts the restored filesystems.
  const std::string restored = target.file();

  // 1. Every used block of each filesystem.
  for (const auto& [name, part, used] :
       {std::tuple<const char*, Part, const Ranges*>{"ext4", kExt4, &ext4_used},
        std::tuple<const char*, Part, const Ranges*>{"xfs", kXfs, &xfs_used}}) {
    Difference d = CompareRanges(reference, restored, part.start, *used);
    EXPECT_EQ(d.blocks, 0u) << name << ": " << d.blocks << " used 4 KiB blocks differ from the "
                            << "frozen reference, the first at partition byte " << d.first << " ("
                            << d.compared_bytes << " used bytes compared)";
    // Free blocks are stored as zeros: the deleted file's random data does not come back.
    Difference f = CompareRanges(reference, restored, part.start, Complement(*used, part.bytes));
    EXPECT_GT(f.blocks, 2048u) << name << ": the free blocks came back as in the reference ("
                               << f.blocks << " of them differ): the partition was read whole";
  }

  // 2. Every byte outside the partitions: protective MBR, both GPT headers and entry arrays.
  Ranges outside = {{0, kEsp.start}, {kSwap.end(), kDiskBytes}};
  Difference table = CompareRanges(reference, restored, 0, outside);
  EXPECT_EQ(table.blocks, 0u) << "outside the partitions, first difference at byte " << table.first;
  EXPECT_EQ(ReadRange(reference, 1 * kSector, kSector).substr(0, 8), "EFI PART");
  EXPECT_EQ(ReadRange(reference, kDiskBytes - kSector, kSector).substr(0, 8), "EFI PART");
  // (EXPECT_TRUE on ==: a difference is named, not dumped byte by byte.)
  EXPECT_TRUE(ReadRange(restored, 0, 34 * kSector) == ReadRange(reference, 0, 34 * kSector))
      << "the protective MBR, primary GPT header or entries differ";
  EXPECT_TRUE(ReadRange(restored, kDiskBytes - 33 * kSector, 33 * kSector) ==
              ReadRange(reference, kDiskBytes - 33 * kSector, 33 * kSector))
      << "the backup GPT entries or header differ";
  CommandResult sgdisk = Sh("sgdisk -v " + Quote(target.device()));
  EXPECT_NE(sgdisk.out.find("No problems found"), std::string::npos) << sgdisk.out << sgdisk.err;

  // 3. The ESP in full; the swap header page.
  EXPECT_TRUE(ReadRange(restored, kEsp.start, kEsp.bytes) ==
              ReadRange(reference, kEsp.start, kEsp.bytes))
      << "the ESP differs from the reference";
  EXPECT_TRUE(ReadRange(restored, kSwap.start, kSwapPageBytes) ==
              ReadRange(reference, kSwap.start, kSwapPageBytes))
      << "the swap header page differs";

  ASSERT_TRUE(target.AddPartitions(4));
  EXPECT_EQ(Sh("blkid -p -o value -s TYPE " + Quote(target.partition(4))).out, "swap\n");
  EXPECT_EQ(Sh("blkid -p -o value -s UUID " + Quote(target.partition(4))).out,
            std::string(kSwapUuid) + "\n");
  CommandResult fat = Sh("fsck.vfat -n " + Quote(target.partition(1)));
  EXPECT_EQ(fat.exit_code, 0) << fat.out << fat.err;

  // 4. fsck: the ext4 as restored; the XFS after its log is replayed (nouuid: the source,
  //    with the same UUID, is still mounted).
  CommandResult e2fsck = Sh("e2fsck -fn " + Quote(target.partition(2)));
  EXPECT_EQ(e2fsck.exit_code, 0) << e2fsck.out << e2fsck.err;
  { MountPoint replay(target.partition(3), dir.File("replay"), "nouuid"); }
  CommandResult repair = Sh("xfs_repair -n " + Quote(target.partition(3)));
  EXPECT_EQ(repair.exit_code, 0) << repair.out << repair.err;

  // 5. The transfer logs: one moment for both filesystems.
  std::string ext4_log, xfs_log;
  {
    MountPoint r1(target.partition(2), dir.File("r-ext4"), "ro");
    MountPoint r2(target.partition(3), dir.File("r-xfs"), "ro,nouuid");
    ext4_log = ReadAll(r1.path() + "/transfers.log");
    xfs_log = ReadAll(r2.path() + "/transfers.log");
  }
  const uint64_t ext4_count = ext4_log.size() / 9, xfs_count = xfs_log.size() / 9;
  EXPECT_TRUE(IsTransferSequence(ext4_log)) << "the ext4 log is not transfers 0, 1, 2, ...";
  EXPECT_TRUE(IsTransferSequence(xfs_log)) << "the XFS log is not transfers 0, 1, 2, ...";
  EXPECT_GE(ext4_count, 50u);
  EXPECT_LE(xfs_count, ext4_count) << "the XFS was copied at a later moment than the ext4";
  EXPECT_LE(ext4_count, xfs_count + 1) << "the ext4 was copied at a later moment than the XFS";

  // 6. Bytes read: about what the filesystems use, not the disk. Tracked mode's rounds read
  //    the chunks its writers touched again (recopied_bytes: whole 4 MiB chunks, 20 MiB a
  //    round here), and how many rounds it takes depends on the load: on this small disk one
  //    round is 12 % of what the filesystems use, so the bound leaves the rounds out (the
  //    output prints both ratios). The map at the final freeze (the result's used_bytes) is
  //    bounded in both modes: a filesystem read whole fails it.
  const uint64_t outside_bytes = BytesIn(outside);
  const uint64_t expected =
      BytesIn(ext4_used) + BytesIn(xfs_used) + kEsp.bytes + kSwapPageBytes + outside_bytes;
  const uint64_t read = result.value("bytes_read", uint64_t{0});
  const uint64_t recopied = result.value("recopied_bytes", uint64_t{0});
  const uint64_t mapped = result.value("used_bytes", uint64_t{0});
  EXPECT_GT(read, 0u);
  if (GetParam() == "freeze") {
    EXPECT_EQ(recopied, 0u) << "freeze mode copies once";
  }
  EXPECT_LE(read - std::min(read, recopied), expected + expected / 10)
      << "read " << read << " bytes (" << recopied << " of them in rounds) of a " << kDiskBytes
      << "-byte disk whose filesystems use " << expected;
  EXPECT_LE(mapped, expected + expected / 10)
      << "the final map holds " << mapped << " bytes; the filesystems use " << expected;
  std::printf(
      "[ measured ] %s: bytes_read %lu (recopied %lu, final capture %lu), oracle %lu "
      "(ext4 %lu + xfs %lu + esp %lu + swap header %lu + outside %lu), ratio %.3f "
      "(without rounds %.3f); "
      "hotsnap used_bytes %lu; logs ext4 %lu xfs %lu\n",
      GetParam().c_str(), static_cast<unsigned long>(read), static_cast<unsigned long>(recopied),
      static_cast<unsigned long>(result.value("final_capture_bytes", uint64_t{0})),
      static_cast<unsigned long>(expected), static_cast<unsigned long>(BytesIn(ext4_used)),
      static_cast<unsigned long>(BytesIn(xfs_used)), static_cast<unsigned long>(kEsp.bytes),
      static_cast<unsigned long>(kSwapPageBytes), static_cast<unsigned long>(outside_bytes),
      static_cast<double>(read) / static_cast<double>(expected),
      static_cast<double>(read - std::min(read, recopied)) / static_cast<double>(expected),
      static_cast<unsigned long>(mapped), static_cast<unsigned long>(ext4_count),
      static_cast<unsigned long>(xfs_count));
}

INSTANTIATE_TEST_SUITE_P(Modes, WholeDiskTest, ::testing::Values("freeze", "tracked"));

}  // namespace
}  // namespace hotsnap
