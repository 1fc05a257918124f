// Delta images from tracked mode (`backup --snapshot tracked --base PARENT`) of a mounted,
// busy filesystem: the pre-copy stores only chunks that differ from the parent's, rounds copy
// what is written meanwhile, and chunks left to the parent and written just before the final
// freeze are rebuilt from the parent's frames. The oracle is the one of tests/tracked_test.cc:
// a copy of the whole device taken by a --while-frozen hook at the image's point in time, the
// used blocks from dumpe2fs / xfs_db, fsck, and the writer's own record log.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <string>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::Hotsnap;
using testing::LiveWriter;
using testing::MountedLoopFs;
using testing::Quote;
using testing::RunOk;
using testing::SizeOf;
using testing::TempDir;

constexpr uint64_t kMiB = 1024 * 1024;

nlohmann::json Info(const std::string& image) {
  CommandResult r = RunOk(Hotsnap("info --json " + Quote(image)));
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j;
}

class DeltaTrackedTest : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Filesystems, DeltaTrackedTest, ::testing::Values("ext4", "xfs"));

TEST_P(DeltaTrackedTest, BusyFilesystemDeltaPassesTheOracleAndStoresFewChunks) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const std::string fs_type = GetParam();
  TempDir dir;
  MountedLoopFs fs(dir.path(), fs_type, 384 * kMiB);
  const std::string mnt = fs.mount_point(), device = fs.device();
  RunOk("mkdir " + Quote(mnt + "/data") + " && head -c 64M /dev/urandom > " + Quote(mnt + "/data/random.bin") +
        " && seq 1 2000000 > " + Quote(mnt + "/data/numbers.txt") + " && sync -f " + Quote(mnt));
  const std::string full = dir.File("full.zst"), delta = dir.File("delta.zst"), ref = dir.File("ref.img"),
                    restored = dir.File("restored.img");
  RunOk(Hotsnap("backup " + Quote(device) + " -o " + Quote(full) + " --snapshot tracked --level 1 --no-progress"));

  uint64_t before = 0, after = 0;
  {
    LiveWriter writer(mnt);
    ASSERT_TRUE(writer.WaitForRecords(32, 60)) << "the writer does not write";
    before = writer.Records();
    std::string reference = "dd if=" + Quote(device) + " of=" + Quote(ref) + " bs=4M iflag=direct status=none";
    CommandResult r = testing::Run("HOTSNAP_TEST_MID_FREEZE_CHUNKS=1 timeout 900 " +
                                   Hotsnap("backup " + Quote(device) + " -o " + Quote(delta) + " --base " +
                                           Quote(full) + " --snapshot tracked --level 1 --max-freeze 120 "
                                           "--hook-timeout 120 --no-progress --while-frozen " + Quote(reference)));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    uint64_t at_end = writer.Records();
    EXPECT_TRUE(writer.WaitForRecords(at_end + 8, 30)) << "the writer stopped during the backup";
    writer.Stop();
    after = writer.Records();
  }
  ASSERT_EQ(SizeOf(ref), SizeOf(device)) << "the while-frozen hook did not copy the whole device";
  nlohmann::json info = Info(delta);
  EXPECT_EQ(info["layout"], "delta");
  EXPECT_EQ(info["snapshot_mode"], "tracked");
  const uint64_t chunks = info["chunks"].get<uint64_t>();
  const uint64_t changed = info["changed_chunks"].get<uint64_t>();
  EXPECT_EQ(changed + info["unchanged_chunks"].get<uint64_t>(), chunks);
  // The writer touches its log, its rewrite files and churn files, the journal or log and
  // some metadata: far from the 64 MiB of random data, which stays the parent's.
  EXPECT_GT(changed, 0u);
  EXPECT_LT(changed, chunks / 2) << info.dump();
  EXPECT_LT(SizeOf(delta), SizeOf(full) / 2);
  std::printf("[ measured ] tracked delta on %s: %lu of %lu chunks stored, %lu bytes (full %lu), rounds %s, "
              "freeze_ms %s\n",
              fs_type.c_str(), static_cast<unsigned long>(changed), static_cast<unsigned long>(chunks),
              static_cast<unsigned long>(SizeOf(delta)), static_cast<unsigned long>(SizeOf(full)),
              info["rounds"].dump().c_str(), info["freeze_ms"].dump().c_str());

  RunOk(Hotsnap("verify " + Quote(delta) + " --no-progress"));
  RunOk(Hotsnap("restore " + Quote(delta) + " " + Quote(restored) + " --no-progress"));
  uint64_t records = testing::CheckAgainstReference(fs_type, ref, restored, dir.path());
  EXPECT_GE(records, before) << "records fsynced before the backup began are missing";
  EXPECT_LT(records, after) << "the writer did not run after the consistency point";
}

}  // namespace
}  // namespace hotsnap
