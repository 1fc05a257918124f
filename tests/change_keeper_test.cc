// The agent's change logs between runs (daemon/change_keeper.h), on real loop devices with the
// real write tracker: writes between two backups are in the log, the delta driven by it reads
// only their chunks, a log persisted and reloaded in another process with no write in between
// is trusted, and a write while no process recorded, or another boot, discards it with the reason.
#include "daemon/change_keeper.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "agent/backup_job.h"
#include "base/process_identity.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::Hotsnap;
using testing::LiveWriter;
using testing::LoopDevice;
using testing::MountedLoopFs;
using testing::Quote;
using testing::RunOk;
using testing::TempDir;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kChunk = 4 * kMiB;
constexpr uint64_t kDevice = 64 * kMiB;

// A device with no filesystem (every block used), filled with random data.
struct Fixture {
  TempDir dir;
  LoopDevice loop{dir.path(), kDevice};
  std::string state = dir.File("state");
  Fixture() { testing::FillRegion(loop.device(), 0, kDevice); }
  const std::string& device() const { return loop.device(); }
};

Result<BackupReport> Backup(ChangeKeeper* keeper, const std::string& device, const std::string& out,
                            const std::string& base) {
  Status armed = keeper->BeforeBackup(device);
  EXPECT_TRUE(armed.ok()) << armed.message();
  BackupOptions o;
  o.source = device;
  o.dest = out;
  o.base = base;
  o.snapshot = SnapshotMode::kNone;
  o.level = 1;
  o.change_log = keeper->SourceFor(device);
  Result<BackupReport> r = RunBackup(o);
  keeper->AfterBackup(device, r);
  return r;
}

bool Covers(const std::vector<ByteExtent>& v, uint64_t offset, uint64_t length) {
  for (const ByteExtent& e : v) {
    if (e.offset_bytes <= offset && e.end_bytes() >= offset + length) return true;
  }
  return false;
}

TEST(ChangeKeeperTest, WritesBetweenRunsAreLoggedAndTheDeltaReadsOnlyTheirChunks) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  Fixture f;
  ChangeKeeper keeper({f.state});
  const std::string full = f.dir.File("full.zst"), delta = f.dir.File("delta.zst");
  auto r1 = Backup(&keeper, f.device(), full, "");
  ASSERT_TRUE(r1.ok()) << r1.status().message();
  ASSERT_NE(r1->used_map, nullptr);

  // Two writes: inside chunk 3, and across the border of chunks 9 and 10.
  testing::FillRegion(f.device(), 3 * kChunk + 8192, 4096);
  testing::FillRegion(f.device(), 10 * kChunk - 4096, 8192);
  auto peek = keeper.Peek(f.device());
  ASSERT_TRUE(peek.ok()) << peek.status().message();
  EXPECT_TRUE(Covers(peek->changed, 3 * kChunk + 8192, 4096));
  EXPECT_TRUE(Covers(peek->changed, 10 * kChunk - 4096, 8192));
  EXPECT_EQ(peek->token.parent_image_hash, r1->image_hash);
  EXPECT_EQ(peek->token.boot_id, BootId());

  auto r2 = Backup(&keeper, f.device(), delta, full);
  ASSERT_TRUE(r2.ok()) << r2.status().message();
  EXPECT_EQ(r2->change_source, "change log") << r2->change_reason;
  EXPECT_EQ(r2->changed_chunks, 3u);
  EXPECT_EQ(r2->unchanged_chunks, kDevice / kChunk - 3);
  EXPECT_EQ(r2->bytes_read, 3 * kChunk) << "only the three written chunks are read";

  const std::string restored = f.dir.File("restored.img");
  RunOk(Hotsnap("restore " + Quote(delta) + " " + Quote(restored) + " --no-progress"));
  EXPECT_EQ(testing::Sha256(restored), testing::Sha256(f.device()));

  // After the delta, the log starts at it: empty but for writes since.
  auto after = keeper.Peek(f.device());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->token.parent_image_hash, r2->image_hash);
  EXPECT_FALSE(Covers(after->changed, 3 * kChunk + 8192, 4096));
}

TEST(ChangeKeeperTest, AFailedBackupKeepsTheLogForTheNextAttempt) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  Fixture f;
  ChangeKeeper keeper({f.state});
  const std::string full = f.dir.File("full.zst");
  auto r1 = Backup(&keeper, f.device(), full, "");
  ASSERT_TRUE(r1.ok()) << r1.status().message();
  testing::FillRegion(f.device(), 5 * kChunk, 4096);
  // A backup into a directory that does not exist fails.
  auto failed = Backup(&keeper, f.device(), f.dir.File("missing/x.zst"), full);
  ASSERT_FALSE(failed.ok());
  testing::FillRegion(f.device(), 7 * kChunk, 4096);
  auto r3 = Backup(&keeper, f.device(), f.dir.File("delta.zst"), full);
  ASSERT_TRUE(r3.ok()) << r3.status().message();
  EXPECT_EQ(r3->change_source, "change log") << r3->change_reason;
  EXPECT_EQ(r3->changed_chunks, 2u) << "both writes since the parent, across the failed attempt";
}

TEST(ChangeKeeperTest, ASecondBackupOfASourceUnderWayIsRefusedTheLog) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  Fixture f;
  ChangeKeeper keeper({f.state});
  ASSERT_TRUE(keeper.BeforeBackup(f.device()).ok());
  Status second = keeper.BeforeBackup(f.device());
  EXPECT_EQ(second.code(), Code::kBusy) << second.message();
  EXPECT_NE(second.message().find("under way"), std::string::npos) << second.message();
  keeper.AfterBackup(f.device(), Status(Code::kSource, "failed"));
  EXPECT_TRUE(keeper.BeforeBackup(f.device()).ok()) << "the log is free again after the first ends";
}

// Reloads the kept logs in a forked child (a new ChangeKeeper in another process, as after an
// agent restart); returns each source's "valid" or reason, one line each.
std::string LoadInChild(const std::string& state, const std::string& boot_id) {
  TempDir out_dir;
  const std::string out = out_dir.File("loaded");
  pid_t pid = ::fork();
  if (pid == 0) {
    ChangeKeeperOptions o{state};
    if (!boot_id.empty()) o.boot_id = [boot_id] { return boot_id; };
    ChangeKeeper k(o);
    auto loaded = k.Load();
    std::ofstream f(out);
    if (!loaded.ok()) f << "error: " << loaded.status().message() << "\n";
    for (const LoadedLog& l : loaded.ok() ? *loaded : std::vector<LoadedLog>{}) {
      f << (l.valid ? "valid" : l.reason) << "\n";
    }
    f.close();
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return testing::ReadAll(out);
}

TEST(ChangeKeeperTest, APersistedLogIsTrustedInANewProcessWhenNothingWroteMeanwhile) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  Fixture f;
  const std::string full = f.dir.File("full.zst");
  Hash128 parent;
  {
    ChangeKeeper keeper({f.state});
    auto r1 = Backup(&keeper, f.device(), full, "");
    ASSERT_TRUE(r1.ok()) << r1.status().message();
    parent = r1->image_hash;
    testing::FillRegion(f.device(), 2 * kChunk, 4096);
    Status kept = keeper.PersistAndStop();
    ASSERT_TRUE(kept.ok()) << kept.message();
  }
  EXPECT_TRUE(
      testing::PathExists(f.state + "/changelog/" + ChangeLogFileName(f.device()) + ".json"));
  EXPECT_EQ(LoadInChild(f.state, ""), "valid\n");

  // The agent's next start: the log is taken back, and drives the delta.
  ChangeKeeper keeper({f.state});
  auto loaded = keeper.Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_TRUE((*loaded)[0].valid) << (*loaded)[0].reason;
  testing::FillRegion(f.device(), 12 * kChunk, 4096);  // recorded by the reloaded keeper
  auto r2 = Backup(&keeper, f.device(), f.dir.File("delta.zst"), full);
  ASSERT_TRUE(r2.ok()) << r2.status().message();
  EXPECT_EQ(r2->change_source, "change log") << r2->change_reason;
  EXPECT_EQ(r2->changed_chunks, 2u);
  EXPECT_EQ(r2->bytes_read, 2 * kChunk);
  const std::string restored = f.dir.File("restored.img");
  RunOk(Hotsnap("restore " + Quote(f.dir.File("delta.zst")) + " " + Quote(restored) +
                " --no-progress"));
  EXPECT_EQ(testing::Sha256(restored), testing::Sha256(f.device()));
}

TEST(ChangeKeeperTest, AWriteWhileNoProcessRecordedDiscardsTheLogNamingTheCounters) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  Fixture f;
  const std::string full = f.dir.File("full.zst");
  {
    ChangeKeeper keeper({f.state});
    auto r1 = Backup(&keeper, f.device(), full, "");
    ASSERT_TRUE(r1.ok()) << r1.status().message();
    ASSERT_TRUE(keeper.PersistAndStop().ok());
  }
  testing::FillRegion(f.device(), 6 * kChunk, 4096);  // the agent is "down"
  const std::string said = LoadInChild(f.state, "");
  EXPECT_NE(said.find("written while no write recording ran"), std::string::npos) << said;
  EXPECT_NE(said.find("write I/Os"), std::string::npos) << said;
  EXPECT_NE(said.find("/stat"), std::string::npos) << said;

  // The next run reports it and compares hashes.
  ChangeKeeper keeper({f.state});
  auto loaded = keeper.Load();
  ASSERT_TRUE(loaded.ok());
  // The child removed the discarded file: nothing is left to load.
  EXPECT_TRUE(loaded->empty());
  auto r2 = Backup(&keeper, f.device(), f.dir.File("delta.zst"), full);
  ASSERT_TRUE(r2.ok()) << r2.status().message();
  EXPECT_EQ(r2->change_source, "hash compare");
  EXPECT_EQ(r2->bytes_read, kDevice);
}

TEST(ChangeKeeperTest, ALogOfAnotherBootIsDiscardedAndTheRunSaysWhy) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  Fixture f;
  const std::string full = f.dir.File("full.zst");
  {
    ChangeKeeper keeper({f.state});
    auto r1 = Backup(&keeper, f.device(), full, "");
    ASSERT_TRUE(r1.ok()) << r1.status().message();
    ASSERT_TRUE(keeper.PersistAndStop().ok());
  }
  ChangeKeeperOptions o{f.state};
  o.boot_id = [] { return std::string("0a1b2c3d-other-boot"); };
  ChangeKeeper keeper(o);
  auto loaded = keeper.Load();
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->size(), 1u);
  EXPECT_FALSE((*loaded)[0].valid);
  EXPECT_NE((*loaded)[0].reason.find("this is boot 0a1b2c3d-other-boot"), std::string::npos)
      << (*loaded)[0].reason;
  auto r2 = Backup(&keeper, f.device(), f.dir.File("delta.zst"), full);
  ASSERT_TRUE(r2.ok()) << r2.status().message();
  EXPECT_EQ(r2->change_source, "hash compare");
  EXPECT_NE(r2->change_reason.find("was discarded: it was recorded in boot"), std::string::npos)
      << r2->change_reason;
}

// The agent's case: a filesystem written all the time, frozen for each backup. The writer runs
// across both backups, so the log holds writes from before the full image's consistency point
// too; the delta it drives must still pass the consistency oracle against the frozen moment.
class ChangeKeeperBusyTest : public ::testing::TestWithParam<std::string> {};
INSTANTIATE_TEST_SUITE_P(Filesystems, ChangeKeeperBusyTest, ::testing::Values("ext4", "xfs"));

TEST_P(ChangeKeeperBusyTest, ADeltaOfABusyFilesystemDrivenByTheKeptLogPassesTheOracle) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const std::string fs_type = GetParam();
  TempDir dir;
  MountedLoopFs fs(dir.path(), fs_type, 384 * kMiB);  // xfs needs 300 MB at least
  const std::string mnt = fs.mount_point(), device = fs.device();
  RunOk("mkdir " + Quote(mnt + "/data") + " && head -c 64M /dev/urandom > " +
        Quote(mnt + "/data/random.bin") + " && sync -f " + Quote(mnt));
  const std::string full = dir.File("full.zst"), delta = dir.File("delta.zst"),
                    ref = dir.File("ref.img"), restored = dir.File("restored.img");
  ChangeKeeper keeper({dir.File("state")});
  auto backup = [&](const std::string& out, const std::string& base,
                    const std::string& while_frozen) {
    Status armed = keeper.BeforeBackup(device);
    EXPECT_TRUE(armed.ok()) << armed.message();
    BackupOptions o;
    o.source = device;
    o.dest = out;
    o.base = base;
    o.snapshot = SnapshotMode::kFreeze;
    o.max_freeze = std::chrono::milliseconds(120000);
    o.hooks.timeout = std::chrono::milliseconds(120000);
    o.hooks.while_frozen = while_frozen;
    o.level = 1;
    o.change_log = keeper.SourceFor(device);
    Result<BackupReport> r = RunBackup(o);
    keeper.AfterBackup(device, r);
    return r;
  };
  uint64_t before = 0, after = 0;
  Result<BackupReport> r2 = Status(Code::kInternal, "not run");
  {
    LiveWriter writer(mnt);
    ASSERT_TRUE(writer.WaitForRecords(32, 60)) << "the writer does not write";
    auto r1 = backup(full, "", "");
    ASSERT_TRUE(r1.ok()) << r1.status().message();
    ASSERT_TRUE(writer.WaitForRecords(writer.Records() + 64, 60));
    before = writer.Records();
    r2 = backup(delta, full,
                "dd if=" + Quote(device) + " of=" + Quote(ref) + " bs=4M iflag=direct status=none");
    ASSERT_TRUE(r2.ok()) << r2.status().message();
    EXPECT_TRUE(writer.WaitForRecords(writer.Records() + 8, 30))
        << "the writer stopped during the backup";
    writer.Stop();
    after = writer.Records();
  }
  EXPECT_EQ(r2->change_source, "change log") << r2->change_reason;
  EXPECT_LT(r2->bytes_read * 2, r2->used_bytes) << "the log should spare most reads";
  std::printf(
      "[ measured ] keeper delta on %s: %lu of %lu chunks stored, %lu of %lu used bytes read\n",
      fs_type.c_str(), static_cast<unsigned long>(r2->changed_chunks),
      static_cast<unsigned long>(r2->chunks), static_cast<unsigned long>(r2->bytes_read),
      static_cast<unsigned long>(r2->used_bytes));
  RunOk(Hotsnap("restore " + Quote(delta) + " " + Quote(restored) + " --no-progress"));
  uint64_t records = testing::CheckAgainstReference(fs_type, ref, restored, dir.path());
  EXPECT_GE(records, before) << "records fsynced before the delta began are missing";
  EXPECT_LT(records, after) << "the writer did not run after the consistency point";
}

}  // namespace
}  // namespace hotsnap
