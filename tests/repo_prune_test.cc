// `hotsnap prune` (repo/prune.h) on a real repository: an ext4 on a loop device backed up
// unmounted (every block), changed between backups. The plans come from PlanPrune
// (repo/prune_plan.h); checked here is that they are carried out: a dry run changes nothing
// and prints the plan; a chain whose newest image is the only one kept is merged forward into
// it; a chain nothing keeps is removed; the catalog matches the files after (check
// --read-data passes) and every image that stays restores to the device as it was.
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "repo/catalog.h"
#include "repo/prune.h"
#include "repo/repository.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::Hotsnap;
using testing::LoopDevice;
using testing::MountPoint;
using testing::Quote;
using testing::RunOk;
using testing::Sha256;
using testing::TempDir;

constexpr uint64_t kMiB = 1024 * 1024;

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

class RepoPruneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HOTSNAP_REQUIRE_PRIVILEGED();
    loop_ = std::make_unique<LoopDevice>(tmp_.path(), 64 * kMiB);
    RunOk("mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 " + Quote(loop_->device()));
    repo_ = tmp_.File("repo");
  }

  // Changes the filesystem, backs it up, remembers what the device held.
  RepoImage BackUp(int n, unsigned full_every) {
    {
      MountPoint mount(loop_->device(), tmp_.File("mnt"));
      RunOk("head -c 2M /dev/urandom > " + Quote(mount.path() + "/file" + std::to_string(n)) + " && sync");
    }
    RepoBackupRequest request;
    request.repo = repo_;
    request.source_name = "data";
    request.full_every = full_every;
    request.options.source = loop_->device();
    request.options.snapshot = SnapshotMode::kNone;
    request.options.all_blocks = true;
    request.options.level = 1;
    auto r = BackupIntoRepository(request);
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (!r.ok()) return {};
    device_at_[r->image.file] = Sha256(loop_->device());
    return r->image;
  }

  std::vector<std::string> CatalogFiles() {
    auto images = ListRepository(repo_);
    EXPECT_TRUE(images.ok()) << images.status().message();
    std::vector<std::string> files;
    if (images.ok()) {
      for (const RepoImage& image : *images) files.push_back(image.file);
    }
    return files;
  }

  std::vector<std::string> ImageFiles() { return testing::ListDir(repo_ + "/data"); }

  void ExpectRestoresToItsMoment(const std::string& file) {
    std::string out = tmp_.File("restored.img");
    RunOk("rm -f " + Quote(out) + " && " + Hotsnap("restore " + Quote(repo_ + "/" + file) + " " + Quote(out) +
                                                     " --no-progress"));
    EXPECT_EQ(Sha256(out), device_at_[file]) << file << " does not restore to the device as it was";
  }

  void ExpectCheckPasses() {
    CommandResult check = testing::Run(Hotsnap("check " + Quote(repo_) + " --read-data"));
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err;
  }

  TempDir tmp_;
  std::unique_ptr<LoopDevice> loop_;
  std::string repo_;
  std::map<std::string, std::string> device_at_;
};

TEST_F(RepoPruneTest, KeepingOnlyTheNewestDeltaMergesTheChainForwardIntoIt) {
  RepoImage f = BackUp(0, 7), d1 = BackUp(1, 7), d2 = BackUp(2, 7);
  ASSERT_EQ(d2.parent_file, d1.file);
  ASSERT_EQ(d1.parent_file, f.file);

  // The dry run: the plan printed, nothing changed.
  auto before = ImageFiles();
  std::string catalog = testing::ReadAll(repo_ + "/catalog.json");
  CommandResult dry = RunOk(Hotsnap("prune " + Quote(repo_) + " --keep-last 1 --dry-run"));
  EXPECT_TRUE(Contains(dry.out, "would merge " + d1.file)) << dry.out;
  EXPECT_TRUE(Contains(dry.out, "would merge " + d2.file)) << dry.out;
  EXPECT_TRUE(Contains(dry.out, "keep " + d2.file + ": last snapshot")) << dry.out;
  EXPECT_EQ(ImageFiles(), before);
  EXPECT_EQ(testing::ReadAll(repo_ + "/catalog.json"), catalog);

  RunOk(Hotsnap("prune " + Quote(repo_) + " --keep-last 1"));
  EXPECT_EQ(CatalogFiles(), std::vector<std::string>{d2.file});
  EXPECT_EQ(ImageFiles(), std::vector<std::string>{d2.file.substr(5)});
  auto images = ListRepository(repo_);
  ASSERT_TRUE(images.ok());
  EXPECT_TRUE(IsFullImage(images->front())) << "the kept image is now a full image";
  ExpectRestoresToItsMoment(d2.file);
  ExpectCheckPasses();
  // Stock zstd restores it: a merged image is plain.
  CommandResult zstd = testing::Run("zstd -dc " + Quote(repo_ + "/" + d2.file) + " | sha256sum");
  EXPECT_EQ(zstd.out.substr(0, 64), device_at_[d2.file]);
}

TEST_F(RepoPruneTest, AChainNothingKeepsIsRemovedNewestFirst) {
  RepoImage f1 = BackUp(0, 1), d1 = BackUp(1, 1), f2 = BackUp(2, 1);
  ASSERT_EQ(d1.parent_file, f1.file);
  ASSERT_TRUE(IsFullImage(f2));
  PruneOptions options;
  options.repo = repo_;
  options.policy.keep_last = 1;
  auto r = PruneRepository(options);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->sources.size(), 1u);
  ASSERT_EQ(r->sources[0].done.size(), 2u);
  EXPECT_EQ(r->sources[0].done[0], "removed " + d1.file);
  EXPECT_EQ(r->sources[0].done[1], "removed " + f1.file);
  EXPECT_EQ(CatalogFiles(), std::vector<std::string>{f2.file});
  EXPECT_EQ(ImageFiles(), std::vector<std::string>{f2.file.substr(5)});
  ExpectRestoresToItsMoment(f2.file);
  ExpectCheckPasses();
}

TEST_F(RepoPruneTest, KeepingTheTwoNewestMergesOnlyTheOldestDeltaAndTheChainStillRestores) {
  RepoImage f = BackUp(0, 7), d1 = BackUp(1, 7), d2 = BackUp(2, 7);
  PruneOptions options;
  options.repo = repo_;
  options.policy.keep_last = 2;
  auto r = PruneRepository(options);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(CatalogFiles(), (std::vector<std::string>{d1.file, d2.file}));
  auto images = ListRepository(repo_);
  ASSERT_TRUE(images.ok());
  ASSERT_EQ(images->size(), 2u);
  EXPECT_TRUE(IsFullImage((*images)[0]));
  EXPECT_EQ((*images)[1].parent_file, d1.file);
  EXPECT_EQ((*images)[1].image_hash.Hex(), d2.image_hash.Hex()) << "a kept image's content never changes";
  ExpectRestoresToItsMoment(d1.file);
  ExpectRestoresToItsMoment(d2.file);
  ExpectCheckPasses();
  // A policy that keeps nothing is refused.
  CommandResult empty = testing::Run(Hotsnap("prune " + Quote(repo_)));
  EXPECT_EQ(empty.exit_code, 2) << empty.err;
}

}  // namespace
}  // namespace hotsnap
