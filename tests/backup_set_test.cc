// Several sources at one moment: `hotsnap backup A B -o DIR`, on two real loop devices, an
// ext4 and an XFS, mounted and busy.
//
// - Both filesystems are frozen at the final moment (a while-frozen hook's writes block on
//   each), and the restored logs of a writer that appends each transfer to the ext4 and then
//   to the XFS satisfy count(XFS) <= count(ext4) <= count(XFS) + 1: one moment for both.
// - The images share the run id, and DIR/manifest.json lists them with their image hashes.
// - A source that fails while the other is copied publishes nothing: no image, no manifest.
// - The set's refusals, in the dry run as in the run.
// And FreezeRendezvous itself, with real freezes of two mounted filesystems.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "snapshot/freeze_rendezvous.h"
#include "tests/group_probes.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::CrossWriter;
using testing::Hotsnap;
using testing::LastResultEvent;
using testing::Lines;
using testing::LiveWriter;
using testing::LoopDevice;
using testing::MountPoint;
using testing::ProbeHook;
using testing::Quote;
using testing::ReadAll;
using testing::RunOk;
using testing::TempDir;
using testing::ThawOnExit;

constexpr uint64_t kMiB = 1024 * 1024;

CommandResult Sh(const std::string& command) { return testing::Run(command); }

std::string NameOf(const std::string& device) { return device.substr(device.rfind('/') + 1); }

// An ext4 on one loop device and an XFS on another, both mounted read-write.
class TwoSources : public testing::TwoLoopFilesystems {
 public:
  explicit TwoSources(const std::string& dir) : TwoLoopFilesystems(dir, 160 * kMiB, 320 * kMiB) {}
};

bool Writable(const std::string& dir) {
  return Sh("timeout 20 sh -c 'echo x > " + dir + "/after && sync -f " + dir + "'").exit_code == 0;
}

class BackupSetTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BackupSetTest, BothSourcesAreCapturedAtOneMoment) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  TwoSources src(dir.path());
  ThawOnExit thaw_ext4(src.ext4()), thaw_xfs(src.xfs());
  const std::string out = dir.File("set");
  RunOk("mkdir -p " + Quote(out));
  const std::string probes = dir.File("probes");
  const std::string hook = dir.File("hook.sh");
  testing::WriteFile(hook, ProbeHook(probes, {src.ext4(), src.xfs()}));
  nlohmann::json result;
  {
    CrossWriter transfers(src.ext4(), src.xfs());
    LiveWriter busy(src.xfs());
    ASSERT_TRUE(testing::WaitUntil([&] { return Lines(src.ext4() + "/transfers.log") >= 50; }, 60));
    CommandResult r = Sh("timeout 600 " +
                         Hotsnap("backup " + Quote(src.a()) + " " + Quote(src.b()) + " -o " +
                                 Quote(out) + " --snapshot " + GetParam() +
                                 " --max-freeze 60 --while-frozen " + Quote("sh " + hook)));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_EQ(ReadAll(probes + "/result"), "0 blocked\n1 blocked\n")
      << "0 is the ext4, 1 the XFS: a source whose write was taken was not frozen";
  EXPECT_EQ(ReadAll(probes + "/env"), src.ext4() + "\n" + src.xfs() + "\n");
  EXPECT_TRUE(Writable(src.ext4()) && Writable(src.xfs())) << "a filesystem stayed frozen";

  // The manifest lists both images, with the hashes their trailers hold, and one run id.
  const std::string image_a = out + "/" + NameOf(src.a()) + ".zst";
  const std::string image_b = out + "/" + NameOf(src.b()) + ".zst";
  auto manifest = nlohmann::json::parse(ReadAll(out + "/manifest.json"));
  auto info_a = nlohmann::json::parse(RunOk(Hotsnap("info --json " + Quote(image_a))).out);
  auto info_b = nlohmann::json::parse(RunOk(Hotsnap("info --json " + Quote(image_b))).out);
  ASSERT_TRUE(info_a.contains("run_id")) << info_a.dump();
  EXPECT_EQ(info_a["run_id"], manifest["run_id"]);
  EXPECT_EQ(info_b["run_id"], manifest["run_id"]);
  ASSERT_EQ(manifest["images"].size(), 2u);
  EXPECT_EQ(manifest["images"][0]["source"], src.a());
  EXPECT_EQ(manifest["images"][0]["image_hash"],
            "xxh3-128:" + info_a["image_hash"].get<std::string>());
  EXPECT_EQ(manifest["images"][1]["image_hash"],
            "xxh3-128:" + info_b["image_hash"].get<std::string>());
  EXPECT_EQ(manifest["frozen"], nlohmann::json::array({src.ext4(), src.xfs()}));
  RunOk(Hotsnap("verify " + Quote(image_a) + " -q"));
  RunOk(Hotsnap("verify " + Quote(image_b) + " -q"));

  // Restored: both fsck clean, and the logs are from one moment.
  LoopDevice ta(dir.path(), 160 * kMiB, "ta.img"), tb(dir.path(), 320 * kMiB, "tb.img");
  RunOk(Hotsnap("restore " + Quote(image_a) + " " + Quote(ta.device()) + " --force -q"));
  RunOk(Hotsnap("restore " + Quote(image_b) + " " + Quote(tb.device()) + " --force -q"));
  CommandResult fsck = Sh("e2fsck -fn " + Quote(ta.device()));
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
  RunOk("mkdir -p " + Quote(dir.File("r1")) + " " + Quote(dir.File("r2")));
  RunOk("mount -o nouuid " + Quote(tb.device()) + " " + Quote(dir.File("r2")) + " && umount " +
        Quote(dir.File("r2")));
  CommandResult repair = Sh("xfs_repair -n " + Quote(tb.device()));
  EXPECT_EQ(repair.exit_code, 0) << repair.out << repair.err;
  uint64_t ext4_count = 0, xfs_count = 0;
  {
    MountPoint r1(ta.device(), dir.File("r1"), "ro");
    MountPoint r2(tb.device(), dir.File("r2"), "ro,nouuid");
    ext4_count = Lines(r1.path() + "/transfers.log");
    xfs_count = Lines(r2.path() + "/transfers.log");
  }
  EXPECT_GE(ext4_count, 50u);
  EXPECT_LE(xfs_count, ext4_count);
  EXPECT_LE(ext4_count, xfs_count + 1) << "the XFS was copied at a later moment than the ext4";
}

INSTANTIATE_TEST_SUITE_P(Modes, BackupSetTest, ::testing::Values("freeze", "tracked"));

// An unmounted source that shrinks while it is read fails its copy; the mounted source's copy,
// which needs no wait for it, must not be published without it: no image, no manifest, no
// temporary file, nothing frozen.
TEST(BackupSetFailureTest, ASourceThatFailsLeavesNothingPublished) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice a(dir.path(), 160 * kMiB, "a.img");
  testing::MakeFilesystem("ext4", a.device());
  MountPoint ext4(a.device(), dir.File("ext4"));
  ThawOnExit thaw(ext4.path());
  LiveWriter busy(ext4.path());
  ASSERT_TRUE(busy.WaitForRecords(8, 60));
  LoopDevice b(dir.path(), 64 * kMiB, "b.img");
  RunOk("dd if=/dev/urandom of=" + Quote(b.device()) + " bs=1M count=64 status=none");
  const std::string out = dir.File("set");
  RunOk("mkdir -p " + Quote(out));
  // 8 MB/s: b's 64 MiB take 8 s; it shrinks once a read has begun (all sources are opened
  // before any is read, so the shrink always comes after hotsnap sized b).
  int pid = testing::Spawn(Hotsnap("backup " + Quote(a.device()) + " " + Quote(b.device()) +
                                   " -o " + Quote(out) + " --all-blocks --rate-limit 8 --json"),
                           dir.File("stdout"), dir.File("stderr"));
  bool reading = testing::WaitUntil(
      [&] { return ReadAll(dir.File("stderr")).find("\"phase\":\"read\"") != std::string::npos; },
      30);
  if (!reading) {
    ::kill(pid, SIGKILL);
    testing::WaitExit(pid);
    FAIL() << "no read began within 30 s: " << ReadAll(dir.File("stderr"));
  }
  RunOk("truncate -s 16M " + Quote(b.backing_file()) + " && losetup -c " + Quote(b.device()));
  int status = testing::WaitExit(pid);
  std::string err = ReadAll(dir.File("stderr"));
  EXPECT_EQ(status, 3) << err;
  EXPECT_NE(err.find(b.device()), std::string::npos) << err;
  EXPECT_EQ(Sh("ls -A " + Quote(out)).out, "") << "something was published or left behind";
  EXPECT_TRUE(Writable(ext4.path())) << "the ext4 stayed frozen";
}

// The set's own refusals, and a member of the second source that cannot be frozen: said by
// the dry run exactly as by the run, before anything is touched.
TEST(BackupSetRefusalTest, RefusalsAreTheSameInTheDryRunAndTheRun) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  LoopDevice a(dir.path(), 160 * kMiB, "a.img");
  testing::MakeFilesystem("ext4", a.device());
  MountPoint ext4(a.device(), dir.File("ext4"));
  ThawOnExit thaw(ext4.path());
  LoopDevice b(dir.path(), 64 * kMiB, "b.img");
  RunOk("mkntfs -Q -F " + Quote(b.device()) + " >/dev/null");
  RunOk("mkdir -p " + Quote(dir.File("ntfs")) + " && ntfs-3g " + Quote(b.device()) + " " +
        Quote(dir.File("ntfs")));
  struct Unmount {
    std::string path;
    ~Unmount() { testing::Run("umount " + Quote(path) + " || umount -l " + Quote(path)); }
  } ntfs{dir.File("ntfs")};
  const std::string out = dir.File("set");
  RunOk("mkdir -p " + Quote(out));
  RunOk("ln -s " + Quote(a.device()) + " " + Quote(dir.File("loopalias")));
  struct Case {
    std::string args;
    int exit_code;
    std::string says;
  };
  const std::string ab = Quote(a.device()) + " " + Quote(b.device());
  const std::vector<Case> cases = {
      {ab + " -o " + Quote(out), 3,
       b.device() + " (fuseblk, mounted read-write at " + ntfs.path + ") cannot be frozen"},
      {ab + " -o " + Quote(dir.File("missing")), 2, "-o " + dir.File("missing")},
      {ab + " -o -", 2, "must be a local directory"},
      {Quote(a.device()) + " " + Quote(a.device()) + " -o " + Quote(out), 2, "named '"},
      {Quote(a.device()) + " " + Quote(dir.File("loopalias")) + " -o " + Quote(out), 2,
       "is the same device as " + a.device()},
      {ab + " -o " + Quote(out) + " --allow-crash-consistent /nonexistent", 2,
       "--allow-crash-consistent /nonexistent"},
      {ab + " -o " + Quote(ext4.path()) + " --allow-crash-consistent " + Quote(ntfs.path), 2,
       "would be frozen (" + ext4.path() + ")"},
  };
  for (const Case& c : cases) {
    for (const char* dry : {"", " --dry-run"}) {
      SCOPED_TRACE(c.args + dry);
      CommandResult r = Sh(Hotsnap("backup " + c.args + dry));
      EXPECT_EQ(r.exit_code, c.exit_code) << r.err;
      EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
      EXPECT_EQ(Sh("ls -A " + Quote(out)).out, "");
    }
  }
  // Allowed by its mount point, the NTFS is copied as it is; the manifest says so.
  CommandResult ok = Sh(Hotsnap("backup " + ab + " -o " + Quote(out) +
                                " --snapshot freeze --allow-crash-consistent " + Quote(ntfs.path)));
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  auto manifest = nlohmann::json::parse(ReadAll(out + "/manifest.json"));
  EXPECT_EQ(manifest["frozen"], nlohmann::json::array({ext4.path()}));
  EXPECT_EQ(manifest["crash_consistent"],
            nlohmann::json::array({b.device() + " at " + ntfs.path}));
  // A second run into the same directory: refused, the set left as it is.
  CommandResult again = Sh(Hotsnap("backup " + ab + " -o " + Quote(out) +
                                   " --snapshot freeze --allow-crash-consistent " + Quote(ntfs.path)));
  EXPECT_EQ(again.exit_code, 4) << again.err;
  EXPECT_NE(again.err.find("manifest.json already exists"), std::string::npos) << again.err;
}

// FreezeRendezvous with real freezes: the freeze is made only when both parties are there,
// covers both filesystems, and ends when both shares are released; a party that withdraws
// releases the one waiting; a bounded wait returns no share.
TEST(FreezeRendezvousTest, FreezesWhenAllHaveJoinedAndThawsWhenAllHaveLeft) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  TwoSources src(dir.path());
  ThawOnExit thaw_ext4(src.ext4()), thaw_xfs(src.xfs());
  FreezeViewOptions f;
  f.source = src.a() + " " + src.b();
  f.mount_points = {src.ext4(), src.xfs()};
  f.max_freeze = std::chrono::milliseconds(60000);
  {
    FreezeRendezvous r;
    r.Configure(2, f);
    auto alone = r.Join(std::chrono::milliseconds(10));
    ASSERT_TRUE(alone.ok()) << alone.status().message();
    EXPECT_EQ(*alone, nullptr) << "a share before the other party joined";
    EXPECT_TRUE(Writable(src.ext4())) << "frozen before every party joined";
    auto first = std::async(std::launch::async, [&] { return r.Join(std::nullopt); });
    auto second = r.Join(std::nullopt);
    ASSERT_TRUE(second.ok()) << second.status().message();
    auto first_share = first.get();
    ASSERT_TRUE(first_share.ok()) << first_share.status().message();
    // Both frozen: a write to each, started now, has not finished a second later (it
    // finishes after the thaw).
    int probe = testing::Spawn("sh -c " + Quote("touch " + Quote(src.ext4() + "/during") + " " +
                                                Quote(src.xfs() + "/during") + " && touch " +
                                                Quote(dir.File("probe.done"))),
                               "/dev/null", "/dev/null");
    std::this_thread::sleep_for(std::chrono::seconds(1));
    EXPECT_FALSE(testing::PathExists(dir.File("probe.done"))) << "a write landed while frozen";
    auto leaving = std::async(std::launch::async, [&] { return (*first_share)->Release(); });
    EXPECT_EQ(leaving.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout)
        << "a share's release returned before the other share was released";
    EXPECT_TRUE((*second)->Release().ok());
    EXPECT_TRUE(leaving.get().ok());
    EXPECT_EQ(testing::WaitExit(probe), 0);
    EXPECT_TRUE(testing::PathExists(dir.File("probe.done")));
  }
  {
    FreezeRendezvous r;
    r.Configure(2, f);
    auto waiting = std::async(std::launch::async, [&] { return r.Join(std::nullopt); });
    r.Withdraw(Status(Code::kSource, "the other copy failed"));
    auto joined = waiting.get();
    EXPECT_FALSE(joined.ok());
    EXPECT_NE(joined.status().message().find("the other copy failed"), std::string::npos);
    EXPECT_FALSE(r.Join(std::nullopt).ok()) << "a join after a withdrawal";
    EXPECT_TRUE(Writable(src.ext4()));
  }
}

}  // namespace
}  // namespace hotsnap
