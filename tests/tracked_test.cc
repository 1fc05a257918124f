// Live consistency, end to end: backups of mounted, busy ext4 and xfs filesystems with
// --snapshot tracked and --snapshot freeze, checked against a reference copy of the device
// taken by a --while-frozen hook at the image's point in time (the consistency oracle), on
// whole loop devices and on a partition; and the tracked layout's promises (stock zstd
// refuses it loudly, hotsnap restores, verifies and compacts it).
//
// The reference, the used-block set (dumpe2fs / xfs_db), fsck and the record log's contents
// come from the system and the test's own writer, never from hotsnap's output.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::Hotsnap;
using testing::ListDir;
using testing::LiveWriter;
using testing::MountedLoopFs;
using testing::MountPoint;
using testing::PartitionedLoopDevice;
using testing::Quote;
using testing::ReadAll;
using testing::RunOk;
using testing::Sha256;
using testing::SizeOf;
using testing::TempDir;
using testing::ThawOnExit;

constexpr uint64_t kMiB = 1 << 20;

// Fills a fresh filesystem with data worth copying (so the pre-copy takes a while and the
// writer's writes land in chunks already copied): incompressible and compressible files.
void FillWithData(const std::string& mnt) {
  RunOk("mkdir " + Quote(mnt + "/data") + " && head -c 48M /dev/urandom > " + Quote(mnt + "/data/random.bin") +
        " && seq 1 2000000 > " + Quote(mnt + "/data/numbers.txt") + " && sync -f " + Quote(mnt));
}

nlohmann::json Info(const std::string& image) {
  CommandResult r = RunOk(Hotsnap("info --json " + Quote(image)));
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

// One live backup of `device` (mounted at `mnt`, holding `fs_type`) while a LiveWriter
// runs, with a reference copy taken while frozen; then restore and the oracle. With
// `to_stdout` the image goes to standard output (redirected to the file), which hotsnap
// cannot read back: tracked mode then captures whole chunks under the final freeze instead
// of rebuilding them from the image.
// With `events`, hotsnap runs with --json and its event stream lands there; `env` goes
// before the command (variables for hotsnap).
void BackupBusyFilesystemAndCheck(const std::string& mode, const std::string& fs_type,
                                  const std::string& device, const std::string& mnt,
                                  const std::string& work, bool to_stdout = false,
                                  const std::string& env = "", std::string* events = nullptr) {
  FillWithData(mnt);
  const std::string out_dir = work + "/out", image = out_dir + "/img.zst", ref = work + "/ref.img",
                    restored = work + "/restored.img";
  RunOk("mkdir -p " + Quote(out_dir));
  uint64_t before = 0, at_end = 0, after = 0;
  {
    LiveWriter writer(mnt);
    ASSERT_TRUE(writer.WaitForRecords(32, 60)) << "the writer does not write";
    before = writer.Records();
    std::string reference = "dd if=" + Quote(device) + " of=" + Quote(ref) + " bs=4M iflag=direct status=none";
    CommandResult r = testing::Run(env + " timeout 900 " +
                                   Hotsnap("backup " + Quote(device) + " -o " +
                                           (to_stdout ? std::string("-") : Quote(image)) +
                                           " --snapshot " + mode + " --level 1 --max-freeze 120 "
                                           "--hook-timeout 120 --while-frozen " + Quote(reference) +
                                           (events != nullptr ? " --json" : "")) +
                                   (to_stdout ? " > " + Quote(image) : ""));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    if (events != nullptr) *events = r.err;
    at_end = writer.Records();
    // The writer goes on after the thaw: it ran throughout.
    EXPECT_TRUE(writer.WaitForRecords(at_end + 8, 30)) << "the writer stopped during the backup";
    writer.Stop();
    after = writer.Records();
  }
  ASSERT_EQ(SizeOf(ref), SizeOf(device)) << "the while-frozen hook did not copy the whole device";
  CommandResult verify = testing::Run(Hotsnap("verify " + Quote(image)));
  EXPECT_EQ(verify.exit_code, 0) << verify.err;
  RunOk(Hotsnap("restore " + Quote(image) + " " + Quote(restored)));
  ASSERT_EQ(SizeOf(restored), SizeOf(device));

  uint64_t records = testing::CheckAgainstReference(fs_type, ref, restored, work);
  EXPECT_GE(records, before) << "records fsynced before the backup began are missing";
  EXPECT_LT(records, after) << "the image holds every record the writer ever wrote: the writer "
                               "did not run after the consistency point";

  nlohmann::json info = Info(image);
  std::printf("[ measured ] %s on %s: records %lu before, %lu in image, %lu after; freeze_ms %s, "
              "rounds %s, recopied_bytes %s\n",
              mode.c_str(), fs_type.c_str(), static_cast<unsigned long>(before),
              static_cast<unsigned long>(records), static_cast<unsigned long>(after),
              info["freeze_ms"].dump().c_str(), info["rounds"].dump().c_str(),
              info["recopied_bytes"].dump().c_str());
  EXPECT_EQ(info["layout"], mode == "tracked" ? "tracked" : "plain");
  EXPECT_EQ(info["snapshot_mode"], mode);
  EXPECT_EQ(info["lost_write_records"], 0);
  if (mode == "tracked") {
    // The writer never paused, so the final freeze had written blocks to read.
    EXPECT_GT(info["final_capture_bytes"].get<uint64_t>(), 0u);
  }
}

class ConsistencyOracleTest : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};
INSTANTIATE_TEST_SUITE_P(ModesAndFilesystems, ConsistencyOracleTest,
                         ::testing::Combine(::testing::Values("tracked", "freeze"),
                                            ::testing::Values("ext4", "xfs")),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param);
                         });

TEST_P(ConsistencyOracleTest, RestoredImageEqualsTheFrozenDeviceOnEveryUsedBlock) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const auto& [mode, fs_type] = GetParam();
  TempDir dir;
  MountedLoopFs fs(dir.path(), fs_type, 384 * kMiB);
  BackupBusyFilesystemAndCheck(mode, fs_type, fs.device(), fs.mount_point(), dir.path());
}

// Freezes between the parts of the pre-copy (made here at the first chunk written ahead of
// the copy, through the test seam HOTSNAP_TEST_MID_FREEZE_CHUNKS) forget the writes to the
// chunks not copied yet; the oracle proves nothing was forgotten that mattered.
class TrackedMidFreezeTest : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Filesystems, TrackedMidFreezeTest, ::testing::Values("ext4", "xfs"));

TEST_P(TrackedMidFreezeTest, FreezesBetweenPreCopyPartsPassTheOracle) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const std::string fs_type = GetParam();
  TempDir dir;
  MountedLoopFs fs(dir.path(), fs_type, 384 * kMiB);
  std::string events;
  BackupBusyFilesystemAndCheck("tracked", fs_type, fs.device(), fs.mount_point(), dir.path(),
                               false, "HOTSNAP_TEST_MID_FREEZE_CHUNKS=1", &events);
  // The phases in order, from the event stream: a freeze between two pre-copy parts.
  std::vector<std::string> phases;
  size_t at = 0;
  while (at < events.size()) {
    size_t end = events.find('\n', at);
    if (end == std::string::npos) end = events.size();
    auto j = nlohmann::json::parse(events.substr(at, end - at), nullptr, false);
    if (!j.is_discarded() && j.value("event", "") == "phase") phases.push_back(j.value("phase", ""));
    at = end + 1;
  }
  int mid_freezes = 0;
  for (size_t i = 1; i + 1 < phases.size(); ++i) {
    if (phases[i] == "freeze" && phases[i - 1] == "precopy" && phases[i + 1] == "precopy") ++mid_freezes;
  }
  std::string seen;
  for (const std::string& p : phases) seen += p + " ";
  EXPECT_GE(mid_freezes, 1) << "no freeze between pre-copy parts; phases: " << seen;
}

// The same oracle when the image goes to a pipe-like output that cannot be read back.
TEST(TrackedStdoutTest, ImageOnStdoutPassesTheOracle) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 384 * kMiB);
  BackupBusyFilesystemAndCheck("tracked", "ext4", fs.device(), fs.mount_point(), dir.path(), true);
}

// The tracepoint reports the whole disk and absolute sectors: a tracked backup of partition 1
// must map them back, while another filesystem on partition 2 of the same disk is busy too.
TEST(TrackedPartitionTest, BusyPartitionPassesTheOracle) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  PartitionedLoopDevice disk(dir.path(), 448 * kMiB, {{1 * kMiB, 320 * kMiB}, {321 * kMiB, 126 * kMiB}});
  ASSERT_EQ(SizeOf(disk.partition(1)), 320 * kMiB);
  testing::MakeFilesystem("ext4", disk.partition(1));
  testing::MakeFilesystem("ext4", disk.partition(2));
  MountPoint p1(disk.partition(1), dir.File("p1"));
  MountPoint p2(disk.partition(2), dir.File("p2"));
  ThawOnExit thaw(p1.path());
  LiveWriter neighbour(p2.path());  // writes to the same disk, outside the partition
  ASSERT_TRUE(neighbour.WaitForRecords(8, 60));
  BackupBusyFilesystemAndCheck("tracked", "ext4", disk.partition(1), p1.path(), dir.path());
  neighbour.Stop();
}

// ---- The tracked layout --------------------------------------------------------------------

constexpr uint32_t kRoundMagic = 0x184D2A52u;
constexpr uint32_t kZstdMagic = 0xFD2FB528u;
const char kGuard[] = "\x28\xB5\x2F\xFD\x2C\x00\x01\x00\x00\x99\xE9\xD8\x51";

uint32_t Le32(const std::string& s, uint64_t at) {
  uint32_t v = 0;
  std::memcpy(&v, s.data() + at, 4);
  return v;
}

TEST(TrackedImageTest, StockZstdRefusesItAndHotsnapRestoresIt) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 128 * kMiB);
  RunOk("head -c 40M /dev/urandom > " + Quote(fs.mount_point() + "/random.bin") + " && sync");
  const std::string image = dir.File("img.zst");
  {
    LiveWriter writer(fs.mount_point());
    ASSERT_TRUE(writer.WaitForRecords(32, 60));
    RunOk("timeout 600 " + Hotsnap("backup " + Quote(fs.device()) + " -o " + Quote(image) +
                                   " --snapshot tracked --level 1"));
  }

  // An independent look at the stream: guard frame, metadata, N first-pass chunk frames, then
  // rounds (a round header followed by its chunks' new frames), report, trailer, seek table.
  std::string bytes = ReadAll(image);
  ASSERT_GT(bytes.size(), 13u);
  ASSERT_EQ(bytes.substr(0, 13), std::string(kGuard, 13)) << "no guard frame";
  std::vector<testing::ImageFrameSpan> frames = testing::SplitImageFrames(bytes.substr(13));
  for (auto& f : frames) f.offset += 13;
  const uint64_t chunks = (SizeOf(fs.device()) + 4 * kMiB - 1) / (4 * kMiB);
  ASSERT_GT(frames.size(), chunks + 1);
  for (uint64_t i = 1; i <= chunks; ++i) ASSERT_EQ(frames[i].magic, kZstdMagic) << "frame " << i;
  std::vector<size_t> round_frames;
  for (size_t i = chunks + 1; i < frames.size(); ++i) {
    if (frames[i].magic == kRoundMagic) round_frames.push_back(i);
  }
  ASSERT_FALSE(round_frames.empty()) << "no chunk was re-copied although the writer ran throughout";
  // The first round's first chunk: its re-copied frame follows the round header; its
  // superseded first-pass frame is frames[1 + index].
  const testing::ImageFrameSpan& header = frames[round_frames[0]];
  ASSERT_EQ(bytes.substr(header.offset + 8, 8), "HSNPROND");
  uint32_t listed = Le32(bytes, header.offset + 8 + 12);
  ASSERT_GT(listed, 0u);
  uint32_t first_chunk = Le32(bytes, header.offset + 8 + 16);
  ASSERT_LT(first_chunk, chunks);
  const testing::ImageFrameSpan& recopied = frames[round_frames[0] + 1];
  const testing::ImageFrameSpan& superseded = frames[1 + first_chunk];
  ASSERT_EQ(recopied.magic, kZstdMagic);

  nlohmann::json info = Info(image);
  EXPECT_EQ(info["layout"], "tracked");
  EXPECT_EQ(info["rounds"], round_frames.size());
  ASSERT_TRUE(info["freeze_ms"].is_array());
  EXPECT_GE(info["freeze_ms"].size(), 2u) << "the starting freeze and the final one at least";
  uint64_t listed_bytes = 0;
  for (size_t r : round_frames) {
    uint32_t n = Le32(bytes, frames[r].offset + 8 + 12);
    for (uint32_t k = 0; k < n; ++k) {
      uint32_t c = Le32(bytes, frames[r].offset + 8 + 16 + 4 * k);
      listed_bytes += std::min<uint64_t>(4 * kMiB, SizeOf(fs.device()) - uint64_t{c} * 4 * kMiB);
    }
  }
  EXPECT_EQ(info["recopied_bytes"], listed_bytes);

  // Stock zstd: fails loudly, writes nothing, whatever the flags.
  for (const char* flags : {"-dc", "-dcf", "-dc --no-check", "-dcq"}) {
    std::string out = dir.File("zstd-out");
    CommandResult z = testing::Run(std::string("zstd ") + flags + " " + Quote(image) + " > " + Quote(out));
    EXPECT_NE(z.exit_code, 0) << "zstd " << flags << " accepted a tracked image";
    EXPECT_EQ(SizeOf(out), 0u) << "zstd " << flags << " wrote superseded data";
    CommandResult piped = testing::Run("cat " + Quote(image) + " | zstd " + std::string(flags) + " > " + Quote(out));
    EXPECT_NE(piped.exit_code, 0);
    EXPECT_EQ(SizeOf(out), 0u);
  }
  EXPECT_NE(testing::Run("zstd -t " + Quote(image)).exit_code, 0);

  // hotsnap: verify; restore from the file and from a pipe give the same bytes; compact
  // gives a plain image that stock zstd restores to those bytes too.
  EXPECT_EQ(testing::Run(Hotsnap("verify " + Quote(image))).exit_code, 0);
  RunOk(Hotsnap("restore " + Quote(image) + " " + Quote(dir.File("from-file.img"))));
  RunOk("cat " + Quote(image) + " | " + Hotsnap("restore - " + Quote(dir.File("from-pipe.img"))));
  std::string want = Sha256(dir.File("from-file.img"));
  EXPECT_EQ(Sha256(dir.File("from-pipe.img")), want);
  RunOk(Hotsnap("compact " + Quote(image) + " -o " + Quote(dir.File("plain.zst"))));
  RunOk("zstd -dc " + Quote(dir.File("plain.zst")) + " > " + Quote(dir.File("from-zstd.img")));
  EXPECT_EQ(Sha256(dir.File("from-zstd.img")), want);
  EXPECT_EQ(RunOk("e2fsck -fn " + Quote(dir.File("from-file.img"))).exit_code, 0);

  // Corruption in a re-copied frame, and in the frame it superseded: verify fails (5).
  for (const auto* frame : {&recopied, &superseded}) {
    uint64_t at = frame->offset + frame->bytes / 2;
    testing::FlipByte(image, at);
    CommandResult v = testing::Run(Hotsnap("verify " + Quote(image)));
    EXPECT_EQ(v.exit_code, 5) << "flipped byte " << at << (frame == &recopied ? " (re-copied" : " (superseded")
                              << " frame of chunk " << first_chunk << ") not detected: " << v.err;
    // Restoring from the file reads only final frames: the re-copied frame's damage must
    // fail it; a damaged superseded frame may be skipped, but then the result is right.
    std::string bad = dir.File(frame == &recopied ? "bad-recopied.img" : "bad-superseded.img");
    CommandResult restore = testing::Run(Hotsnap("restore " + Quote(image) + " " + Quote(bad)));
    if (frame == &recopied) {
      EXPECT_NE(restore.exit_code, 0) << "restored a corrupt image";
    } else if (restore.exit_code == 0) {
      EXPECT_EQ(Sha256(bad), want);
    }
    testing::FlipByte(image, at);
  }
  EXPECT_EQ(testing::Run(Hotsnap("verify " + Quote(image))).exit_code, 0);
}

}  // namespace
}  // namespace hotsnap
