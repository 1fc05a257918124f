// The backup as one flow of passes: the dry run is the run's own plan (it refuses exactly what
// the run refuses, and its figures agree with what the run then reads), and progress is
// reported the same way in every snapshot mode. Real loop devices and mounted filesystems;
// the expected figures come from the system (statfs through df, the run's own refusal).
#include <sys/statvfs.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::Hotsnap;
using testing::MountedLoopFs;
using testing::PathExists;
using testing::Quote;
using testing::ReadAll;
using testing::RunOk;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

std::vector<nlohmann::json> Events(const std::string& text) {
  std::vector<nlohmann::json> events;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) events.push_back(j);
  }
  return events;
}

const nlohmann::json* Find(const std::vector<nlohmann::json>& events, const std::string& kind) {
  for (const auto& e : events) {
    if (e.value("event", "") == kind) return &e;
  }
  return nullptr;
}

// Bytes of a device of `device_bytes` that the filesystem mounted at `mnt` does not report
// free, as the kernel's statfs says.
uint64_t StatfsUsed(const std::string& mnt, uint64_t device_bytes) {
  struct statvfs st;
  EXPECT_EQ(::statvfs(mnt.c_str(), &st), 0);
  return device_bytes - static_cast<uint64_t>(st.f_bfree) * st.f_frsize;
}

// Runs `args` as a dry run and as a real run; both must end with the same exit code, and
// the dry run must leave nothing behind.
void ExpectDryRunAgrees(const std::string& args, const std::string& image, int expected) {
  const bool existed = PathExists(image);
  CommandResult dry = testing::Run(Hotsnap("backup " + args + " --dry-run -q"));
  if (!existed) {
    EXPECT_FALSE(PathExists(image)) << "the dry run wrote " << image;
  }
  CommandResult real = testing::Run(Hotsnap("backup " + args + " -q"));
  EXPECT_EQ(real.exit_code, expected) << "real run of: " << args << "\n" << real.err;
  EXPECT_EQ(dry.exit_code, real.exit_code)
      << "the dry run and the run disagree on: " << args << "\ndry run: " << dry.out << dry.err
      << "\nrun: " << real.err;
}

// What the real run refuses, the dry run refuses, with the same exit code; what it accepts,
// the dry run accepts. On a mounted ext4 (tracked and freeze modes) and an idle one.
TEST(BackupFlowTest, DryRunRefusesExactlyWhatTheRunRefuses) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 64 * kMiB);
  RunOk("head -c 4M /dev/urandom > " + Quote(fs.mount_point() + "/f") + " && sync");
  const std::string dev = Quote(fs.device());
  const std::string on_itself = fs.mount_point() + "/img.zst";
  // The image on the filesystem that would be frozen: tracked (auto) and freeze modes.
  ExpectDryRunAgrees(dev + " -o " + Quote(on_itself), on_itself, 2);
  ExpectDryRunAgrees(dev + " -o " + Quote(on_itself) + " --snapshot freeze", on_itself, 2);
  // --snapshot none on a filesystem mounted read-write.
  const std::string out = dir.File("img.zst");
  ExpectDryRunAgrees(dev + " -o " + Quote(out) + " --snapshot none", out, 3);
  // A destination that exists, without --overwrite.
  const std::string existing = dir.File("existing.zst");
  testing::WriteFile(existing, "keep me");
  ExpectDryRunAgrees(dev + " -o " + Quote(existing), existing, 4);
  EXPECT_EQ(ReadAll(existing), "keep me");
  // Tracked mode on a regular file.
  const std::string file = dir.File("disk.raw");
  RunOk("truncate -s 16M " + Quote(file));
  ExpectDryRunAgrees(Quote(file) + " -o " + Quote(dir.File("f.zst")) + " --snapshot tracked",
                     dir.File("f.zst"), 2);
  // Accepted: the mounted filesystem, tracked, to another filesystem.
  ExpectDryRunAgrees(dev + " -o " + Quote(out), out, 0);
  ASSERT_TRUE(PathExists(out));
  EXPECT_EQ(testing::Run(Hotsnap("verify -q " + Quote(out))).exit_code, 0);
}

// The plan of a mounted ext4 is what the run will read: no "journal needs recovery" fallback
// (the run maps the blocks at its freeze, where the journal is clean), and a used-bytes figure
// that agrees with the kernel's statfs and with the bytes the run then reports in use.
TEST(BackupFlowTest, DryRunOfAMountedExt4PlansTheUsedBlocksTheRunReads) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 256 * kMiB);
  RunOk("head -c 24M /dev/urandom > " + Quote(fs.mount_point() + "/a") + " && sync");
  const std::string image = dir.File("img.zst");
  CommandResult dry = RunOk(Hotsnap("backup " + Quote(fs.device()) + " -o " + Quote(image) +
                                    " --dry-run --events-fd 3 3>" + Quote(dir.File("plan.jsonl"))));
  EXPECT_EQ(dry.err.find("reading every block"), std::string::npos) << dry.err;
  EXPECT_EQ(dry.err.find("needs recovery"), std::string::npos) << dry.err;
  auto events = Events(ReadAll(dir.File("plan.jsonl")));
  const nlohmann::json* plan = Find(events, "plan");
  ASSERT_NE(plan, nullptr) << ReadAll(dir.File("plan.jsonl"));
  const uint64_t planned = (*plan)["plan"]["used_bytes"].get<uint64_t>();
  const uint64_t statfs_used = StatfsUsed(fs.mount_point(), 256 * kMiB);
  EXPECT_EQ(planned, statfs_used) << "device bytes less what statfs reports free";
  EXPECT_LT(planned, 256 * kMiB / 2) << "the plan reads most of the device";
  EXPECT_EQ((*plan)["plan"]["snapshot_mode"], "auto -> tracked");

  CommandResult run = RunOk(Hotsnap("backup " + Quote(fs.device()) + " -o " + Quote(image) +
                                    " --events-fd 3 3>" + Quote(dir.File("run.jsonl"))));
  auto run_events = Events(ReadAll(dir.File("run.jsonl")));
  ASSERT_FALSE(run_events.empty());
  const uint64_t used = run_events.back()["used_bytes"].get<uint64_t>();
  // statfs counts every block not free as used, whole inode tables included, which the map
  // skips where no inode is in use: the estimate is an upper bound, and a close one.
  EXPECT_GE(planned, used) << "the plan promised less than the run read";
  EXPECT_LE(planned - std::min(planned, used), 256 * kMiB / 8)
      << "planned " << planned << ", the run found " << used << " in use";
}

// Progress: every mode reports it the same way, as progress events (with --json) and as the
// progress line (--progress), ending at the bytes it read.
class BackupProgressTest : public ::testing::TestWithParam<const char*> {};
INSTANTIATE_TEST_SUITE_P(Modes, BackupProgressTest, ::testing::Values("tracked", "freeze", "none"));

TEST_P(BackupProgressTest, ReportsProgressEventsAndTheProgressLine) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const std::string mode = GetParam();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 128 * kMiB);
  RunOk("head -c 40M /dev/urandom > " + Quote(fs.mount_point() + "/a") + " && sync");
  if (mode == "none") RunOk("mount -o remount,ro " + Quote(fs.mount_point()));
  const std::string image = dir.File("img.zst");
  // --rate-limit makes the copy last over a second, so a progress event falls inside it.
  CommandResult r = RunOk(Hotsnap("backup " + Quote(fs.device()) + " -o " + Quote(image) +
                                  " --snapshot " + mode + " --rate-limit 20 --progress "
                                  "--events-fd 3 3>" + Quote(dir.File("events.jsonl"))));
  auto events = Events(ReadAll(dir.File("events.jsonl")));
  std::vector<const nlohmann::json*> progress;
  for (const auto& e : events) {
    if (e.value("event", "") == "progress") progress.push_back(&e);
  }
  ASSERT_GE(progress.size(), 2u) << "no progress events in --snapshot " << mode << ":\n"
                                 << ReadAll(dir.File("events.jsonl"));
  const nlohmann::json& last = *progress.back();
  ASSERT_FALSE(events.empty());
  const uint64_t used = events.back()["used_bytes"].get<uint64_t>();
  EXPECT_GE(last["total_bytes"].get<uint64_t>(), used);
  EXPECT_EQ(last["done_bytes"], last["total_bytes"]);
  EXPECT_GE(last["output_bytes"].get<uint64_t>(), 40 * kMiB) << "random data does not compress";
  for (size_t i = 1; i < progress.size(); ++i) {
    EXPECT_GE((*progress[i])["done_bytes"].get<uint64_t>(),
              (*progress[i - 1])["done_bytes"].get<uint64_t>());
  }
  // The line on stderr: "backup: N MiB of M MiB (P%) ...".
  EXPECT_NE(r.err.find("backup: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(100%)"), std::string::npos) << r.err;
  if (mode == "none") RunOk("mount -o remount,rw " + Quote(fs.mount_point()));
}

}  // namespace
}  // namespace hotsnap
