// Change logs (agent/change_log.h): which tokens a delta backup trusts, which chunks a trusted
// log spares from reading, and, end to end on a real mounted ext4 with the real write tracker,
// a delta backup that reads only what the log and the used-block maps say changed — and still
// restores to the frozen moment on every used block, with a deleted file's data gone.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/backup_job.h"
#include "agent/change_log.h"
#include "base/process_identity.h"
#include "base/unique_fd.h"
#include "fsmap/used_block_map.h"
#include "fsmap/used_block_map_builder.h"
#include "io/image_index.h"
#include "snapshot/write_tracker.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::Hotsnap;
using testing::MountedLoopFs;
using testing::Quote;
using testing::RunOk;
using testing::TempDir;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kDevice = 64 * kMiB;

std::shared_ptr<const UsedBlockMap> MapOf(const std::vector<ByteExtent>& used) {
  UsedBlockMapBuilder b("test", kDevice, 4096);
  for (const ByteExtent& e : used) {
    EXPECT_TRUE(b.AddUsedBlocks(e.offset_bytes / 4096, e.length_bytes / 4096).ok());
  }
  auto map = std::move(b).Build();
  return std::make_shared<const UsedBlockMap>(std::move(map));
}

ChangeLog GoodLog(const Hash128& parent) {
  ChangeLog log;
  log.token = {BootId(), parent, 0, kDevice};
  log.parent_used = MapOf({{0, 8 * kMiB}});
  return log;
}

TEST(ChangeSourceTest, OnlyAWholeLogOfThisBootFromThisParentIsTrusted) {
  const Hash128 parent{1, 2};
  ChangeLog log = GoodLog(parent);
  EXPECT_TRUE(ChooseChangeSource(&log, parent, kDevice, BootId()).use_log);
  EXPECT_EQ(ChooseChangeSource(&log, parent, kDevice, BootId()).source, "change log");

  ChangeSourceChoice none = ChooseChangeSource(nullptr, parent, kDevice, BootId());
  EXPECT_FALSE(none.use_log);
  EXPECT_EQ(none.source, "hash compare");
  EXPECT_NE(none.reason.find("no change log"), std::string::npos) << none.reason;

  struct Case {
    const char* why;
    std::function<void(ChangeLog*)> spoil;
    const char* said;
  };
  const std::vector<Case> cases = {
      {"reboot", [](ChangeLog* l) { l->token.boot_id = "0a1b2c3d-other-boot"; }, "boot 0a1b2c3d-other-boot"},
      {"other parent", [](ChangeLog* l) { l->token.parent_image_hash = Hash128{9, 9}; }, "not at the parent"},
      {"lost records", [](ChangeLog* l) { l->token.lost_records = 3; }, "lost 3 write records"},
      {"other size", [](ChangeLog* l) { l->token.device_bytes = kDevice * 2; }, "bytes; the source has"},
      {"no parent map", [](ChangeLog* l) { l->parent_used.reset(); }, "no used-block map"},
  };
  for (const Case& c : cases) {
    ChangeLog spoiled = GoodLog(parent);
    c.spoil(&spoiled);
    ChangeSourceChoice choice = ChooseChangeSource(&spoiled, parent, kDevice, BootId());
    EXPECT_FALSE(choice.use_log) << c.why;
    EXPECT_EQ(choice.source, "hash compare") << c.why;
    EXPECT_NE(choice.reason.find(c.said), std::string::npos) << c.why << ": " << choice.reason;
  }
}

TEST(ChangeSourceTest, ChunksWrittenOrWhoseUsedBlocksChangedAreRead) {
  ImageMetadata meta;
  meta.device_bytes = kDevice;  // 16 chunks of 4 MiB
  ChangeLog log = GoodLog(Hash128{1, 2});
  // Parent: chunks 0-1 used, and half of chunk 5. Now: chunk 5 wholly used (a file grew there),
  // chunk 9 partly used (a new file), chunks 0-1 as before.
  log.parent_used = MapOf({{0, 8 * kMiB}, {20 * kMiB, 2 * kMiB}});
  auto now = MapOf({{0, 8 * kMiB}, {20 * kMiB, 4 * kMiB}, {36 * kMiB + 4096, 8192}});
  // Writes: one crossing from chunk 2 into chunk 3, one inside chunk 14.
  log.changed = {{12 * kMiB - 4096, 8192}, {56 * kMiB + 100, 1}};
  std::vector<bool> unchanged = UnchangedChunks(log, *now, meta);
  ASSERT_EQ(unchanged.size(), 16u);
  std::vector<int> read;
  for (int c = 0; c < 16; ++c) {
    if (!unchanged[c]) read.push_back(c);
  }
  EXPECT_EQ(read, (std::vector<int>{2, 3, 5, 9, 14}));
}

// Drains a real write tracker into a change log whose token is this boot's and the parent's.
class TrackerLog {
 public:
  TrackerLog(const std::string& device, uint64_t bytes, const Hash128& parent,
             std::shared_ptr<const UsedBlockMap> parent_used)
      : parent_(parent), bytes_(bytes), parent_used_(std::move(parent_used)) {
    auto tracker = WriteTracker::Start(device, bytes);
    EXPECT_TRUE(tracker.ok()) << tracker.status().message();
    if (tracker.ok()) tracker_ = std::move(tracker.value());
  }
  ChangeLogSource Source(std::string boot_id, uint64_t* asked) {
    return [this, boot_id, asked]() -> Result<ChangeLog> {
      ++*asked;
      ChangeLog log;
      auto lost = tracker_->Drain([&](uint64_t offset, uint64_t length) {
        log.changed.push_back({offset, length});
      });
      if (!lost.ok()) return lost.status();
      log.token = {boot_id, parent_, *lost, bytes_};
      log.parent_used = parent_used_;
      return log;
    };
  }

 private:
  std::unique_ptr<WriteTracker> tracker_;
  Hash128 parent_;
  uint64_t bytes_;
  std::shared_ptr<const UsedBlockMap> parent_used_;
};

Hash128 ImageHashOf(const std::string& image) {
  UniqueFd fd(::open(image.c_str(), O_RDONLY | O_CLOEXEC));
  auto index = LoadImageIndex(fd.get(), image);
  EXPECT_TRUE(index.ok()) << index.status().message();
  return index.ok() ? index->trailer.image_hash : Hash128{};
}

// The restored image equals the reference on every block the reference's ext4 uses.
void ExpectUsedBlocksEqual(const std::string& reference, const std::string& restored) {
  auto used = testing::UsedRangesOf(reference, "ext4");
  ASSERT_FALSE(used.empty());
  UniqueFd a(::open(reference.c_str(), O_RDONLY | O_CLOEXEC)), b(::open(restored.c_str(), O_RDONLY | O_CLOEXEC));
  std::vector<char> x(kMiB), y(kMiB);
  uint64_t differing = 0;
  for (const auto& [begin, end] : used) {
    for (uint64_t at = begin; at < end;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(x.size(), end - at));
      ASSERT_EQ(::pread(a.get(), x.data(), n, static_cast<off_t>(at)), static_cast<ssize_t>(n));
      ASSERT_EQ(::pread(b.get(), y.data(), n, static_cast<off_t>(at)), static_cast<ssize_t>(n));
      if (std::memcmp(x.data(), y.data(), n) != 0) ++differing;
      at += n;
    }
  }
  EXPECT_EQ(differing, 0u) << "used blocks differ from the frozen reference";
}

TEST(ChangeLogBackupTest, TrustedLogReadsOnlyChangedChunksAndADoubtfulOneFallsBack) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  MountedLoopFs fs(dir.path(), "ext4", 256 * kMiB);
  const std::string mnt = fs.mount_point(), device = fs.device();
  for (int f = 0; f < 16; ++f) {
    RunOk("head -c 4M /dev/urandom > " + Quote(mnt + "/file" + std::to_string(f)));
  }
  RunOk("yes hotsnap-change-log-doomed-marker | head -c 2M > " + Quote(mnt + "/doomed") + " && sync -f " + Quote(mnt));
  const std::string full = dir.File("full.zst");
  RunOk(Hotsnap("backup " + Quote(device) + " -o " + Quote(full) + " --snapshot freeze --level 1 --no-progress"));
  const Hash128 parent = ImageHashOf(full);

  // The parent's used blocks (nothing has written since its freeze: map it frozen again), and
  // from now on every write, recorded by the real tracker.
  RunOk("fsfreeze -f " + Quote(mnt));
  std::shared_ptr<const UsedBlockMap> parent_used;
  {
    UniqueFd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
    std::string notice;
    auto map = ComputeUsedBlockMap(fd.get(), device, 256 * kMiB, &notice);
    RunOk("fsfreeze -u " + Quote(mnt));
    ASSERT_TRUE(map.ok()) << map.status().message();
    ASSERT_TRUE(notice.empty()) << notice;
    parent_used = std::make_shared<const UsedBlockMap>(std::move(map.value()));
  }
  TrackerLog tracker(device, 256 * kMiB, parent, parent_used);

  // Changes: part of one file rewritten, the marker file deleted, a file added.
  RunOk("dd if=/dev/urandom of=" + Quote(mnt + "/file3") + " bs=64k count=4 seek=10 conv=notrunc status=none");
  RunOk("rm " + Quote(mnt + "/doomed") + " && head -c 1M /dev/urandom > " + Quote(mnt + "/new") + " && sync -f " +
        Quote(mnt));

  uint64_t asked = 0;
  auto backup = [&](const std::string& out, const std::string& reference, ChangeLogSource log) {
    BackupOptions o;
    o.source = device;
    o.dest = out;
    o.base = full;
    o.snapshot = SnapshotMode::kFreeze;
    o.level = 1;
    o.hooks.while_frozen = "dd if=" + Quote(device) + " of=" + Quote(reference) + " bs=4M iflag=direct status=none";
    o.change_log = std::move(log);
    return RunBackup(o);
  };

  const std::string delta = dir.File("delta.zst"), ref = dir.File("ref.img"), restored = dir.File("restored.img");
  auto r = backup(delta, ref, tracker.Source(BootId(), &asked));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(asked, 1u) << "the log is asked for once, at the consistency point";
  EXPECT_EQ(r->change_source, "change log") << r->change_reason;
  // Chunks read: the rewritten file's, the deleted file's (free now), the new file's, and
  // metadata and journal; far from the 66 MiB of data.
  EXPECT_GT(r->changed_chunks, 0u);
  EXPECT_LT(r->bytes_read, 32 * kMiB) << "a trusted change log should spare most reads";
  EXPECT_LT(r->bytes_read * 2, r->used_bytes);
  RunOk(Hotsnap("restore " + Quote(delta) + " " + Quote(restored) + " --no-progress"));
  ExpectUsedBlocksEqual(ref, restored);
  EXPECT_NE(testing::Run("grep -q -a hotsnap-change-log-doomed-marker " + Quote(restored)).exit_code, 0)
      << "the deleted file's data survived into the delta";
  CommandResult info = RunOk(Hotsnap("info --json " + Quote(delta)));
  EXPECT_NE(info.out.find("\"change_source\": \"change log\""), std::string::npos) << info.out;

  // A log from another boot is not trusted: every used block is read and hashed, and the
  // delta is just as right.
  RunOk("head -c 1M /dev/urandom > " + Quote(mnt + "/newer") + " && sync -f " + Quote(mnt));
  const std::string delta2 = dir.File("delta2.zst"), ref2 = dir.File("ref2.img"), restored2 = dir.File("restored2.img");
  auto r2 = backup(delta2, ref2, tracker.Source("0a1b2c3d-other-boot", &asked));
  ASSERT_TRUE(r2.ok()) << r2.status().message();
  EXPECT_EQ(r2->change_source, "hash compare");
  EXPECT_NE(r2->change_reason.find("boot 0a1b2c3d-other-boot"), std::string::npos) << r2->change_reason;
  EXPECT_GE(r2->bytes_read, r2->used_bytes) << "hash compare reads every used block";
  RunOk(Hotsnap("restore " + Quote(delta2) + " " + Quote(restored2) + " --no-progress"));
  ExpectUsedBlocksEqual(ref2, restored2);
}

}  // namespace
}  // namespace hotsnap
