// End-to-end tests of `hotsnap merge` (agent/merge_job.h) on real backups: a regular file
// holding an ext4, backed up unmounted (--snapshot none), changed between backups through a
// loop mount, gives the chain F <- D1 <- D2. Merging D1 replaces it with a plain image of the
// same content (stock zstd restores it), removes F, and D2 still restores and verifies; a
// corrupt frame, a full image, a delta of a delta change nothing; a crash at either side of
// the rename leaves a chain that restores.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "agent/merge_job.h"
#include "base/unique_fd.h"
#include "io/image_index.h"
#include "io/stale_temp_files.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::CommandResult;
using ::hotsnap::testing::FlipByteInChunkFrame;
using ::hotsnap::testing::Hotsnap;
using ::hotsnap::testing::ListDir;
using ::hotsnap::testing::MountPoint;
using ::hotsnap::testing::PathExists;
using ::hotsnap::testing::Quote;
using ::hotsnap::testing::RunOk;
using ::hotsnap::testing::Sha256;
using ::hotsnap::testing::TempDir;

CommandResult Shell(const std::string& command) { return ::hotsnap::testing::Run(command); }

constexpr uint64_t kMiB = 1024 * 1024;
constexpr int kExitUsage = 2;
constexpr int kExitIntegrity = 5;
constexpr int kSigkillExit = 128 + SIGKILL;

// Every name in `dir` with the sha256 of its content: "nothing changed" is this map unchanged.
std::map<std::string, std::string> Snapshot(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const std::string& name : ListDir(dir)) out[name] = Sha256(dir + "/" + name);
  return out;
}

ImageIndex IndexOf(const std::string& image) {
  UniqueFd fd(open(image.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_TRUE(fd.valid()) << image;
  auto index = LoadImageIndex(fd.get(), image);
  EXPECT_TRUE(index.ok()) << index.status().message();
  return index.ok() ? std::move(index.value()) : ImageIndex{};
}

// The chunks whose frame `image` (a delta) holds itself.
std::vector<uint64_t> OwnChunks(const std::string& image) {
  ImageIndex index = IndexOf(image);
  std::vector<uint64_t> own;
  for (uint64_t i = 0; i < index.chunk_frame_bytes.size(); ++i) {
    if (index.HasFrame(i)) own.push_back(i);
  }
  return own;
}

class MergeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HOTSNAP_REQUIRE_PRIVILEGED();
    source_ = tmp_.File("fs.img");
    images_ = tmp_.File("images");
    ASSERT_EQ(mkdir(images_.c_str(), 0700), 0);
    f_ = images_ + "/F.zst";
    d1_ = images_ + "/D1.zst";
    d2_ = images_ + "/D2.zst";
    RunOk("truncate -s " + std::to_string(64 * kMiB) + " " + Quote(source_));
    RunOk("mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 " + Quote(source_));
    Change(
        "head -c 12582912 /dev/urandom > a && head -c 1048576 /dev/urandom > b && echo one > note");
    Backup(f_, "");
    // Rewrite the middle of a, delete b, add c: new, freed and rewritten blocks. D2 leaves the
    // middle of a alone: it takes that chunk from D1.
    Change(
        "dd if=/dev/urandom of=a bs=64K count=4 seek=96 conv=notrunc status=none && rm b && "
        "head -c 2097152 /dev/urandom > c && echo two > note");
    Backup(d1_, f_);
    Change(
        "dd if=/dev/urandom of=c bs=64K count=4 conv=notrunc status=none && "
        "head -c 1048576 /dev/urandom > d && echo three > note");
    Backup(d2_, d1_);
    sha_f_ = Restored(f_);
    sha_d1_ = Restored(d1_);
    sha_d2_ = Restored(d2_);
    // Each backup differs, and D1 takes chunks both from itself and from F: a merge that
    // copied from the wrong image would show.
    ASSERT_NE(sha_f_, sha_d1_);
    ASSERT_NE(sha_d1_, sha_d2_);
    std::vector<uint64_t> own = OwnChunks(d1_);
    ASSERT_FALSE(own.empty());
    ASSERT_LT(own.size(), IndexOf(d1_).chunk_frame_bytes.size());
    // And D2 takes chunks from each link of its chain: a copy from the wrong link would show.
    ImageIndex d2 = IndexOf(d2_);
    bool from_d1 = false, from_f = false, own_d2 = false;
    for (uint64_t i = 0; i < d2.chunk_frame_bytes.size(); ++i) {
      bool d1_holds = std::find(own.begin(), own.end(), i) != own.end();
      own_d2 |= d2.HasFrame(i);
      from_d1 |= !d2.HasFrame(i) && d1_holds;
      from_f |= !d2.HasFrame(i) && !d1_holds;
    }
    ASSERT_TRUE(own_d2 && from_d1 && from_f)
        << "D2 holds chunks itself: " << own_d2 << ", takes some from D1: " << from_d1
        << ", from F: " << from_f;
  }

  // Runs `commands` in the mounted filesystem, then unmounts it.
  void Change(const std::string& commands) {
    MountPoint mount(source_, tmp_.File("mnt"), "loop");
    RunOk("cd " + Quote(mount.path()) + " && " + commands + " && sync");
    mount.Unmount();
  }

  void Backup(const std::string& image, const std::string& base) {
    RunOk(Hotsnap("backup " + Quote(source_) + " -o " + Quote(image) + " --snapshot none -q" +
                  (base.empty() ? "" : " --base " + Quote(base))));
  }

  // sha256 of what `hotsnap restore IMAGE` writes.
  std::string Restored(const std::string& image) {
    std::string out = tmp_.File("restored.img");
    unlink(out.c_str());
    CommandResult r = RunOk(Hotsnap("restore " + Quote(image) + " " + Quote(out) + " -q"));
    if (r.exit_code != 0) return "restore failed: " + r.err;
    std::string sha = Sha256(out);
    unlink(out.c_str());
    return sha;
  }

  // sha256 of what stock `zstd -dc IMAGE` writes, after `zstd -t` passes.
  std::string StockRestored(const std::string& image) {
    CommandResult t = Shell("zstd -q -t " + Quote(image));
    EXPECT_EQ(t.exit_code, 0) << "zstd -t " << image << ": " << t.err;
    std::string out = tmp_.File("stock.img");
    CommandResult r = RunOk("zstd -q -dc " + Quote(image) + " > " + Quote(out));
    std::string sha = r.exit_code == 0 ? Sha256(out) : "zstd -dc failed: " + r.err;
    unlink(out.c_str());
    return sha;
  }

  CommandResult Merge(const std::string& args, const std::string& env = "") {
    return Shell(env + Hotsnap("merge " + args));
  }

  void ExpectNoTemporaryFiles() {
    for (const std::string& n : ListDir(images_)) {
      EXPECT_LE(TemporaryFilePid(n), 0) << "left behind: " << n;
    }
  }

  TempDir tmp_;
  std::string source_, images_, f_, d1_, d2_;
  std::string sha_f_, sha_d1_, sha_d2_;
};

TEST_F(MergeTest, FoldsTheOldestDeltaAndItsChildStillRestores) {
  CommandResult m = Merge(Quote(d1_));
  ASSERT_EQ(m.exit_code, 0) << m.out << m.err;
  EXPECT_NE(m.err.find("removed the old parent"), std::string::npos) << m.err;
  EXPECT_FALSE(PathExists(f_)) << "the parent was not removed";
  EXPECT_EQ(ListDir(images_), (std::vector<std::string>{"D1.zst", "D2.zst"}));
  // D1's name now holds a plain image of D1's content, which stock zstd restores.
  EXPECT_EQ(IndexOf(d1_).meta.layout, Layout::kPlain);
  EXPECT_FALSE(IndexOf(d1_).meta.base.has_value());
  EXPECT_EQ(StockRestored(d1_), sha_d1_);
  EXPECT_EQ(Restored(d1_), sha_d1_);
  // D2 finds it under D1's name and accepts it (stands_for).
  EXPECT_EQ(Restored(d2_), sha_d2_);
  CommandResult v = Shell(Hotsnap("verify " + Quote(d2_)));
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  ExpectNoTemporaryFiles();

  // The next delta merges the same way.
  CommandResult m2 = Merge(Quote(d2_));
  ASSERT_EQ(m2.exit_code, 0) << m2.out << m2.err;
  EXPECT_EQ(ListDir(images_), (std::vector<std::string>{"D2.zst"}));
  EXPECT_EQ(StockRestored(d2_), sha_d2_);
  CommandResult v2 = Shell(Hotsnap("verify " + Quote(d2_)));
  EXPECT_EQ(v2.exit_code, 0) << v2.out << v2.err;
}

TEST_F(MergeTest, MergedImageStandsForTheDeltaAndCopiesEveryFrameVerbatim) {
  const ImageIndex before = IndexOf(d1_);
  const ImageIndex parent = IndexOf(f_);
  ASSERT_EQ(Merge(Quote(d1_)).exit_code, 0);
  const ImageIndex after = IndexOf(d1_);
  ASSERT_EQ(after.meta.stands_for.size(), 1u);
  EXPECT_TRUE(after.meta.stands_for[0] == before.trailer.image_hash);
  ASSERT_EQ(after.trailer.chunk_hashes.size(), before.trailer.chunk_hashes.size());
  for (uint64_t i = 0; i < after.trailer.chunk_hashes.size(); ++i) {
    EXPECT_TRUE(after.trailer.chunk_hashes[i] == before.trailer.chunk_hashes[i]) << "chunk " << i;
    // Nothing recompressed: each frame is the byte count of the one it was copied from.
    uint32_t source_bytes =
        before.HasFrame(i) ? before.ChunkFrameBytes(i) : parent.ChunkFrameBytes(i);
    EXPECT_EQ(after.ChunkFrameBytes(i), source_bytes) << "chunk " << i;
  }
  CommandResult info = RunOk(Hotsnap("info " + Quote(d1_)));
  EXPECT_NE(info.out.find("stands for:     xxh3-128:" + before.trailer.image_hash.Hex()),
            std::string::npos)
      << info.out;
  EXPECT_EQ(after.report.changed_chunks, 0u);
  EXPECT_TRUE(after.report.change_source.empty());
}

TEST_F(MergeTest, CompactOfTheChainBeforeAndAfterAMergeRestoresTheSame) {
  // compact shares merge's frame copy (agent/chain_copy.h): a three-link chain, then two.
  const std::string plain = tmp_.File("plain.zst");
  RunOk(Hotsnap("compact " + Quote(d2_) + " -o " + Quote(plain)));
  EXPECT_EQ(StockRestored(plain), sha_d2_);
  ASSERT_EQ(Merge(Quote(d1_)).exit_code, 0);
  RunOk(Hotsnap("compact " + Quote(d2_) + " -o " + Quote(plain) + " --overwrite"));
  EXPECT_EQ(StockRestored(plain), sha_d2_);
}

TEST_F(MergeTest, CorruptChunkInTheDeltaFailsWithExit5AndChangesNothing) {
  std::vector<uint64_t> own = OwnChunks(d1_);
  // The largest frame D1 holds: its middle byte is compressed data, not a header.
  uint64_t victim = own[0];
  for (uint64_t c : own) {
    if (IndexOf(d1_).ChunkFrameBytes(c) > IndexOf(d1_).ChunkFrameBytes(victim)) victim = c;
  }
  FlipByteInChunkFrame(d1_, victim);
  auto before = Snapshot(images_);
  CommandResult m = Merge(Quote(d1_));
  EXPECT_EQ(m.exit_code, kExitIntegrity) << m.out << m.err;
  EXPECT_NE(m.err.find("chunk " + std::to_string(victim)), std::string::npos) << m.err;
  EXPECT_EQ(Snapshot(images_), before) << "a failed merge changed the images";
  ExpectNoTemporaryFiles();
}

TEST_F(MergeTest, CorruptChunkInTheParentFailsWithExit5AndChangesNothing) {
  ImageIndex d1 = IndexOf(d1_);
  ImageIndex f = IndexOf(f_);
  uint64_t victim = UINT64_MAX;
  for (uint64_t i = 0; i < d1.chunk_frame_bytes.size(); ++i) {
    if (!d1.HasFrame(i) &&
        (victim == UINT64_MAX || f.ChunkFrameBytes(i) > f.ChunkFrameBytes(victim)))
      victim = i;
  }
  ASSERT_NE(victim, UINT64_MAX);
  FlipByteInChunkFrame(f_, victim);
  auto before = Snapshot(images_);
  CommandResult m = Merge(Quote(d1_));
  EXPECT_EQ(m.exit_code, kExitIntegrity) << m.out << m.err;
  EXPECT_NE(m.err.find(f_), std::string::npos) << m.err;
  EXPECT_EQ(Snapshot(images_), before) << "a failed merge changed the images";
  ExpectNoTemporaryFiles();
}

TEST_F(MergeTest, RefusesAFullImageWithExit2) {
  auto before = Snapshot(images_);
  CommandResult m = Merge(Quote(f_));
  EXPECT_EQ(m.exit_code, kExitUsage) << m.out << m.err;
  EXPECT_NE(m.err.find("not a delta"), std::string::npos) << m.err;
  EXPECT_EQ(Snapshot(images_), before);
}

TEST_F(MergeTest, RefusesADeltaWhoseParentIsADeltaWithExit2) {
  auto before = Snapshot(images_);
  CommandResult m = Merge(Quote(d2_));
  EXPECT_EQ(m.exit_code, kExitUsage) << m.out << m.err;
  EXPECT_NE(m.err.find("is itself a delta: merge " + d1_ + " first"), std::string::npos) << m.err;
  EXPECT_EQ(Snapshot(images_), before);
  ExpectNoTemporaryFiles();
}

TEST_F(MergeTest, DryRunPrintsThePlanAndChangesNothing) {
  auto before = Snapshot(images_);
  CommandResult m = Merge(Quote(d1_) + " --dry-run");
  ASSERT_EQ(m.exit_code, 0) << m.out << m.err;
  EXPECT_NE(m.out.find("would write plain image " + d1_), std::string::npos) << m.out;
  EXPECT_NE(m.out.find("would remove " + f_), std::string::npos) << m.out;
  EXPECT_EQ(Snapshot(images_), before);
}

TEST_F(MergeTest, KeepParentKeepsIt) {
  CommandResult m = Merge(Quote(d1_) + " --keep-parent");
  ASSERT_EQ(m.exit_code, 0) << m.out << m.err;
  EXPECT_TRUE(PathExists(f_));
  EXPECT_EQ(Restored(f_), sha_f_);
  EXPECT_EQ(StockRestored(d1_), sha_d1_);
  EXPECT_EQ(Restored(d2_), sha_d2_);
}

TEST_F(MergeTest, AParentAnotherDeltaStillNamesIsKept) {
  // A second branch: another delta of F.
  const std::string other = images_ + "/D1b.zst";
  Change("echo branch > note");
  Backup(other, f_);
  const std::string sha_other = Restored(other);
  CommandResult dry = Merge(Quote(d1_) + " --dry-run");
  EXPECT_NE(dry.out.find("would keep " + f_ + ": " + other + " names it as its base"),
            std::string::npos)
      << dry.out;
  CommandResult m = Merge(Quote(d1_));
  ASSERT_EQ(m.exit_code, 0) << m.out << m.err;
  EXPECT_NE(m.err.find("kept the old parent"), std::string::npos) << m.err;
  EXPECT_TRUE(PathExists(f_));
  EXPECT_EQ(Restored(other), sha_other);
  EXPECT_EQ(Restored(d2_), sha_d2_);
}

TEST_F(MergeTest, ParentFoundThroughChainDirIsRemovedThere) {
  // F in another directory: D1 and D2 find it only through --chain.
  const std::string parents = tmp_.File("parents");
  ASSERT_EQ(mkdir(parents.c_str(), 0700), 0);
  const std::string moved = parents + "/F.zst";
  ASSERT_EQ(rename(f_.c_str(), moved.c_str()), 0);
  CommandResult without = Merge(Quote(d1_));
  EXPECT_EQ(without.exit_code, kExitIntegrity) << without.out << without.err;
  CommandResult m = Merge(Quote(d1_) + " --chain " + Quote(parents));
  ASSERT_EQ(m.exit_code, 0) << m.out << m.err;
  EXPECT_FALSE(PathExists(moved));
  EXPECT_EQ(StockRestored(d1_), sha_d1_);
  EXPECT_EQ(Restored(d2_), sha_d2_);
}

TEST_F(MergeTest, ASiblingBesideTheDeltaKeepsAParentInChainDir) {
  // A second delta of F beside D1, then F moved away: it is still F's child.
  const std::string other = images_ + "/D1b.zst";
  Change("echo branch > note");
  Backup(other, f_);
  const std::string parents = tmp_.File("parents");
  ASSERT_EQ(mkdir(parents.c_str(), 0700), 0);
  const std::string moved = parents + "/F.zst";
  ASSERT_EQ(rename(f_.c_str(), moved.c_str()), 0);
  CommandResult m = Merge(Quote(d1_) + " --chain " + Quote(parents));
  ASSERT_EQ(m.exit_code, 0) << m.out << m.err;
  EXPECT_NE(m.err.find(other + " names it as its base"), std::string::npos) << m.err;
  EXPECT_TRUE(PathExists(moved));
  EXPECT_EQ(StockRestored(d1_), sha_d1_);
}

// The real publishing calls, with the directory fsync made to fail.
class FailingDirectorySync : public PublishOps {
 public:
  int SyncDirectory(const std::string&) override { return EIO; }
};

TEST_F(MergeTest, AFailedDirectoryFsyncAfterTheRenameKeepsTheParent) {
  // The rename may not be durable: removing the parent then could lose D1's content.
  FailingDirectorySync ops;
  MergeOptions o;
  o.delta = d1_;
  o.ops = &ops;
  auto r = RunMerge(o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r->parent_removed);
  EXPECT_NE(r->warning.find("is kept"), std::string::npos) << r->warning;
  EXPECT_TRUE(PathExists(f_));
  EXPECT_EQ(StockRestored(d1_), sha_d1_);
  EXPECT_EQ(Restored(d2_), sha_d2_);
}

TEST_F(MergeTest, CrashAfterTheRenameBeforeTheUnlinkLeavesAChainThatRestores) {
  CommandResult m = Merge(Quote(d1_), "HOTSNAP_CRASH_AT=merge-before-unlink ");
  ASSERT_EQ(m.exit_code, kSigkillExit) << "the crash point did not fire: " << m.err;
  // D1's name holds the merged image; F, which nothing needs now, is still there.
  EXPECT_TRUE(PathExists(f_));
  EXPECT_EQ(IndexOf(d1_).meta.layout, Layout::kPlain);
  EXPECT_EQ(StockRestored(d1_), sha_d1_);
  EXPECT_EQ(Restored(d2_), sha_d2_);
  CommandResult v = Shell(Hotsnap("verify " + Quote(d2_)));
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  ExpectNoTemporaryFiles();
  // The chain goes on: D2 merges into the merged D1.
  CommandResult m2 = Merge(Quote(d2_));
  ASSERT_EQ(m2.exit_code, 0) << m2.out << m2.err;
  EXPECT_EQ(StockRestored(d2_), sha_d2_);
}

TEST_F(MergeTest, CrashBeforeTheRenameLeavesTheChainAsItWas) {
  auto before = Snapshot(images_);
  CommandResult m = Merge(Quote(d1_), "HOTSNAP_CRASH_AT=before-rename ");
  ASSERT_EQ(m.exit_code, kSigkillExit) << "the crash point did not fire: " << m.err;
  // Only the temporary file is new; `hotsnap cleanup` removes it.
  auto after = Snapshot(images_);
  std::vector<std::string> temporaries;
  for (const auto& [name, sha] : after) {
    if (TemporaryFilePid(name) > 0) temporaries.push_back(name);
  }
  EXPECT_EQ(temporaries.size(), 1u);
  for (const std::string& t : temporaries) after.erase(t);
  EXPECT_EQ(after, before);
  EXPECT_EQ(Restored(d1_), sha_d1_);
  EXPECT_EQ(Restored(d2_), sha_d2_);
  RunOk(Hotsnap("cleanup " + Quote(images_)));
  ExpectNoTemporaryFiles();
  CommandResult m2 = Merge(Quote(d1_));
  ASSERT_EQ(m2.exit_code, 0) << m2.out << m2.err;
  EXPECT_EQ(Restored(d2_), sha_d2_);
}

}  // namespace
}  // namespace hotsnap
