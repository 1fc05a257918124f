// Repositories (repo/repository.h, repo/check.h, repo/lock.h) end to end: an ext4 on a real
// loop device, backed up unmounted (--snapshot none, every block) into a local repository and
// changed through a mount between backups.
//
// Checked: the first backup is full, the next a delta on it (its parent in the catalog), and
// full_every 1 makes the third full again; each image restores to the device as it was;
// `list` prints the table and parsable JSON; `check` finds a deleted image, an unknown file, a
// broken chain and, with --read-data only, a corrupt chunk; a backup under another process's
// lease, and backups that fail (before publishing; into a read-only repository; of a source
// that is gone) leave every file and the catalog as they were.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "repo/catalog.h"
#include "repo/check.h"
#include "repo/lock.h"
#include "repo/repository.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::CommandResult;
using testing::FlipByteInChunkFrame;
using testing::Hotsnap;
using testing::LoopDevice;
using testing::MountPoint;
using testing::Quote;
using testing::RunOk;
using testing::Sha256;
using testing::TempDir;

constexpr uint64_t kMiB = 1024 * 1024;
constexpr int kExitIntegrity = 5;
constexpr int kExitBusy = 7;

bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Every regular file under `dir` (relative path) with the sha256 of its content.
std::map<std::string, std::string> Files(const std::string& dir) {
  std::map<std::string, std::string> out;
  CommandResult found = RunOk("cd " + Quote(dir) + " && find . -type f | sort");
  size_t at = 0;
  while (at < found.out.size()) {
    size_t end = found.out.find('\n', at);
    std::string name = found.out.substr(at + 2, end - at - 2);
    out[name] = Sha256(dir + "/" + name);
    at = end + 1;
  }
  return out;
}

class RepositoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HOTSNAP_REQUIRE_PRIVILEGED();
    loop_ = std::make_unique<LoopDevice>(tmp_.path(), 64 * kMiB);
    RunOk("mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 " + Quote(loop_->device()));
    repo_ = tmp_.File("repo");
  }

  // Writes a new file of random bytes into the filesystem (mounted only for that).
  void Change(int n) {
    MountPoint mount(loop_->device(), tmp_.File("mnt"));
    RunOk("head -c 3M /dev/urandom > " + Quote(mount.path() + "/file" + std::to_string(n)) + " && sync");
  }

  RepoBackupRequest Request(unsigned full_every) const {
    RepoBackupRequest request;
    request.repo = repo_;
    request.source_name = "data";
    request.full_every = full_every;
    request.options.source = loop_->device();
    request.options.snapshot = SnapshotMode::kNone;
    request.options.all_blocks = true;  // every block: the restore equals the device
    request.options.level = 1;
    return request;
  }

  Result<RepoBackupResult> Backup(unsigned full_every) { return BackupIntoRepository(Request(full_every)); }

  std::string Restored(const std::string& file) {
    std::string out = tmp_.File("restored.img");
    RunOk("rm -f " + Quote(out) + " && " + Hotsnap("restore " + Quote(repo_ + "/" + file) + " " + Quote(out) +
                                                     " --no-progress"));
    return Sha256(out);
  }

  CommandResult Check(const std::string& extra = "") {
    return testing::Run(Hotsnap("check " + Quote(repo_) + " " + extra));
  }

  TempDir tmp_;
  std::unique_ptr<LoopDevice> loop_;
  std::string repo_;
};

TEST_F(RepositoryTest, FirstFullThenDeltaOnItAndFullEveryOneMakesTheThirdFull) {
  Change(0);
  auto first = Backup(1);
  ASSERT_TRUE(first.ok()) << first.status().message();
  std::string sha_first = Sha256(loop_->device());
  Change(1);
  auto second = Backup(1);
  ASSERT_TRUE(second.ok()) << second.status().message();
  std::string sha_second = Sha256(loop_->device());
  Change(2);
  auto third = Backup(1);
  ASSERT_TRUE(third.ok()) << third.status().message();

  EXPECT_TRUE(IsFullImage(first->image)) << first->why;
  EXPECT_EQ(second->image.parent_file, first->image.file) << second->why;
  EXPECT_TRUE(IsFullImage(third->image)) << third->why;
  EXPECT_TRUE(Contains(third->why, "1 delta")) << third->why;
  // The delta holds the changed chunks only; the rest are its parent's.
  EXPECT_GT(second->report.changed_chunks, 0u);
  EXPECT_GT(second->report.unchanged_chunks, second->report.changed_chunks);
  // Names by UTC time under REPO/SOURCE/.
  for (const auto* r : {&*first, &*second, &*third}) {
    EXPECT_EQ(r->image.file.rfind("data/data-20", 0), 0u) << r->image.file;
    EXPECT_EQ(r->image.file.substr(r->image.file.size() - 4), ".zst") << r->image.file;
  }

  auto listed = ListRepository(repo_);
  ASSERT_TRUE(listed.ok()) << listed.status().message();
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0].file, first->image.file);
  EXPECT_EQ((*listed)[1].file, second->image.file);
  EXPECT_EQ((*listed)[1].parent_file, first->image.file);
  EXPECT_EQ((*listed)[1].image_hash.Hex(), second->report.image_hash.Hex());
  EXPECT_EQ((*listed)[2].file, third->image.file);

  EXPECT_EQ(Restored(first->image.file), sha_first);
  EXPECT_EQ(Restored(second->image.file), sha_second);
  EXPECT_EQ(Restored(third->image.file), Sha256(loop_->device()));
}

TEST_F(RepositoryTest, DeltasChainOnTheNewestImageUntilFullEvery) {
  std::vector<RepoImage> made;
  for (int n = 0; n < 4; ++n) {
    Change(n);
    auto r = Backup(2);
    ASSERT_TRUE(r.ok()) << r.status().message();
    made.push_back(r->image);
  }
  EXPECT_TRUE(IsFullImage(made[0]));
  EXPECT_EQ(made[1].parent_file, made[0].file);
  EXPECT_EQ(made[2].parent_file, made[1].file);
  EXPECT_TRUE(IsFullImage(made[3])) << "two deltas, then a full image";
  EXPECT_EQ(Restored(made[2].file), Restored(made[2].file));  // restores through its chain
}

TEST_F(RepositoryTest, CliBackupListTableAndJson) {
  for (int n = 0; n < 2; ++n) {
    Change(n);
    RunOk(Hotsnap("backup " + Quote(loop_->device()) + " --repo " + Quote(repo_) +
                  " --snapshot none --level 1 --no-progress"));
  }
  std::string source = RepoSourceName(loop_->device());
  EXPECT_EQ(source, loop_->device().substr(5)) << "/dev/loopN is named loopN";

  CommandResult json_out = RunOk(Hotsnap("list " + Quote(repo_) + " --json"));
  nlohmann::json list = nlohmann::json::parse(json_out.out, nullptr, false);
  ASSERT_TRUE(list.is_array()) << json_out.out;
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["source"], source);
  EXPECT_EQ(list[0]["kind"], "full");
  EXPECT_EQ(list[0]["parent"], "");
  EXPECT_EQ(list[1]["kind"], "delta");
  EXPECT_EQ(list[1]["parent"], list[0]["file"]);
  for (const auto& image : list) {
    for (const char* key : {"file", "image_hash", "created_utc", "run_id"}) EXPECT_TRUE(image[key].is_string()) << key;
    EXPECT_TRUE(image["created_utc_s"].is_number_integer());
    EXPECT_GT(image["image_bytes"].get<uint64_t>(), 0u);
    EXPECT_EQ(image["image_bytes"].get<uint64_t>(),
              testing::SizeOf(repo_ + "/" + image["file"].get<std::string>()));
  }

  CommandResult table = RunOk(Hotsnap("list " + Quote(repo_)));
  std::vector<std::string> lines;
  for (size_t at = 0; at < table.out.size();) {
    size_t end = table.out.find('\n', at);
    lines.push_back(table.out.substr(at, end - at));
    at = end + 1;
  }
  ASSERT_EQ(lines.size(), 3u) << table.out;
  EXPECT_TRUE(Contains(lines[0], "SOURCE") && Contains(lines[0], "KIND")) << lines[0];
  EXPECT_TRUE(Contains(lines[1], source) && Contains(lines[1], " full ") &&
              Contains(lines[1], list[0]["created_utc"].get<std::string>()))
      << lines[1];
  EXPECT_TRUE(Contains(lines[2], " delta ") && Contains(lines[2], "(" + list[0]["file"].get<std::string>() + ")"))
      << lines[2];
}

TEST_F(RepositoryTest, CheckFindsMissingUnknownBrokenAndCorruptImages) {
  Change(0);
  auto full = Backup(7);
  ASSERT_TRUE(full.ok()) << full.status().message();
  Change(1);
  auto delta = Backup(7);
  ASSERT_TRUE(delta.ok()) << delta.status().message();
  const std::string full_path = repo_ + "/" + full->image.file;
  const std::string delta_path = repo_ + "/" + delta->image.file;

  CommandResult clean = Check("--read-data");
  EXPECT_EQ(clean.exit_code, 0) << clean.out << clean.err;
  EXPECT_TRUE(Contains(clean.out, "2 images in the catalog") && Contains(clean.out, "2 read in full")) << clean.out;

  // An unknown file.
  testing::WriteFile(repo_ + "/data/notes.txt", "x");
  CommandResult unknown = Check();
  EXPECT_EQ(unknown.exit_code, kExitIntegrity);
  EXPECT_TRUE(Contains(unknown.out, "unknown file: data/notes.txt")) << unknown.out;
  RunOk("rm " + Quote(repo_ + "/data/notes.txt"));

  // A deleted delta.
  RunOk("mv " + Quote(delta_path) + " " + Quote(tmp_.File("aside.zst")));
  CommandResult missing = Check();
  EXPECT_EQ(missing.exit_code, kExitIntegrity);
  EXPECT_TRUE(Contains(missing.out, "missing file: " + delta->image.file)) << missing.out;
  RunOk("mv " + Quote(tmp_.File("aside.zst")) + " " + Quote(delta_path));
  EXPECT_EQ(Check().exit_code, 0);

  // A deleted parent: missing, and the delta's chain broken.
  RunOk("mv " + Quote(full_path) + " " + Quote(tmp_.File("aside.zst")));
  CommandResult broken = Check();
  EXPECT_EQ(broken.exit_code, kExitIntegrity);
  EXPECT_TRUE(Contains(broken.out, "missing file: " + full->image.file)) << broken.out;
  EXPECT_TRUE(Contains(broken.out, "broken chain at " + delta->image.file)) << broken.out;
  RunOk("mv " + Quote(tmp_.File("aside.zst")) + " " + Quote(full_path));

  // A corrupt chunk of the full image: its index still loads, so only --read-data sees it,
  // through the delta's chain.
  FlipByteInChunkFrame(full_path, 0);
  CommandResult metadata_only = Check();
  EXPECT_EQ(metadata_only.exit_code, 0) << metadata_only.out << metadata_only.err;
  CommandResult corrupt = Check("--read-data");
  EXPECT_EQ(corrupt.exit_code, kExitIntegrity);
  EXPECT_TRUE(Contains(corrupt.out, "read-data: " + delta->image.file)) << corrupt.out;
  EXPECT_TRUE(Contains(corrupt.out, full->image.file)) << "the message should name the corrupt image\n" << corrupt.out;
}

TEST_F(RepositoryTest, CheckRebuildsTheCatalogFromTheImagesAndNamesWhatDiffers) {
  Change(0);
  ASSERT_TRUE(Backup(7).ok());
  Change(1);
  ASSERT_TRUE(Backup(7).ok());
  auto listed = ListRepository(repo_);
  ASSERT_TRUE(listed.ok());
  RepoCheckOptions options;
  options.repo = repo_;
  auto report = CheckRepository(options);
  ASSERT_TRUE(report.ok()) << report.status().message();
  EXPECT_TRUE(report->problems.empty());
  ASSERT_EQ(report->rebuilt.size(), listed->size());
  for (size_t i = 0; i < listed->size(); ++i) {
    EXPECT_EQ(RepoImageToJson(report->rebuilt[i]), RepoImageToJson((*listed)[i]));
  }
  // A catalog entry that lies about its parent.
  std::vector<RepoImage> wrong = *listed;
  wrong[1].parent_file = "";
  ASSERT_TRUE(WriteCatalog(repo_, wrong).ok());
  report = CheckRepository(options);
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_TRUE(Contains(report->problems[0], "catalog entry of " + wrong[1].file + " differs")) << report->problems[0];
}

TEST_F(RepositoryTest, BackupUnderAnotherProcesssLeaseIsRefusedAndChangesNothing) {
  Change(0);
  ASSERT_TRUE(Backup(7).ok());
  auto before = Files(repo_);
  int ready[2], release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  pid_t child = ::fork();
  if (child == 0) {
    ::close(ready[0]);
    ::close(release[1]);
    auto lock = RepoLock::Acquire(repo_, "prune");
    char ok = lock.ok() ? 'y' : 'n';
    if (::write(ready[1], &ok, 1) != 1) _exit(3);
    char c;
    while (::read(release[0], &c, 1) > 0) {
    }
    _exit(lock.ok() && lock->Release().ok() ? 0 : 2);
  }
  ::close(ready[1]);
  ::close(release[0]);
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, 'y');
  auto before_with_lock = Files(repo_);
  Change(1);
  auto refused = Backup(7);
  CommandResult cli = testing::Run(Hotsnap("backup " + Quote(loop_->device()) + " --repo " + Quote(repo_) +
                                           " --snapshot none --no-progress"));
  auto while_held = Files(repo_);
  ::close(release[1]);
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(ready[0]);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kBusy);
  EXPECT_TRUE(Contains(refused.status().message(), "hotsnap pid " + std::to_string(child))) << refused.status().message();
  EXPECT_EQ(cli.exit_code, kExitBusy) << cli.err;
  EXPECT_EQ(while_held, before_with_lock) << "a refused backup changed the repository";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(Files(repo_), before) << "the holder's release left something";
}

TEST_F(RepositoryTest, FailedBackupsLeaveFilesAndCatalogUnchanged) {
  Change(0);
  ASSERT_TRUE(Backup(7).ok());
  auto before = Files(repo_);
  Change(1);

  // Failing after the copy, just before publishing.
  RepoBackupRequest failing = Request(7);
  failing.options.before_publish = [] { return Status(Code::kSource, "injected: another source failed"); };
  auto r = BackupIntoRepository(failing);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(Contains(r.status().message(), "injected")) << r.status().message();
  EXPECT_EQ(Files(repo_), before);

  // The catalog cannot be written once the image is published (its temporary name is taken
  // by a directory): the image is unpublished again.
  std::string blocker = repo_ + "/.catalog.json.hotsnap-" + std::to_string(::getpid()) + ".tmp";
  ASSERT_EQ(::mkdir(blocker.c_str(), 0700), 0);
  auto unrecorded = Backup(7);
  ASSERT_FALSE(unrecorded.ok());
  EXPECT_TRUE(Contains(unrecorded.status().message(), "recording data/data-")) << unrecorded.status().message();
  ASSERT_EQ(::rmdir(blocker.c_str()), 0);
  EXPECT_EQ(Files(repo_), before);

  // A source that is gone.
  RepoBackupRequest gone = Request(7);
  gone.options.source = tmp_.File("no-such-device");
  ASSERT_FALSE(BackupIntoRepository(gone).ok());
  EXPECT_EQ(Files(repo_), before);

  // A read-only repository: on its own filesystem, remounted read-only.
  LoopDevice store(tmp_.path(), 64 * kMiB, "store.img");
  RunOk("mkfs.ext4 -q -F " + Quote(store.device()));
  MountPoint mount(store.device(), tmp_.File("store"));
  RepoBackupRequest ro = Request(7);
  ro.repo = mount.path() + "/repo";
  ASSERT_TRUE(BackupIntoRepository(ro).ok());
  auto ro_before = Files(ro.repo);
  RunOk("mount -o remount,ro " + Quote(mount.path()));
  Change(2);
  auto refused = BackupIntoRepository(ro);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kTarget) << refused.status().message();
  RunOk("mount -o remount,rw " + Quote(mount.path()));
  EXPECT_EQ(Files(ro.repo), ro_before);
  auto listed = ListRepository(ro.repo);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(listed->size(), 1u);
}

TEST_F(RepositoryTest, DryRunPrintsTheChoiceAndWritesNothing) {
  std::string dry = Hotsnap("backup " + Quote(loop_->device()) + " --repo " + Quote(repo_) +
                            " --source-name data --snapshot none --dry-run");
  CommandResult first = RunOk(dry);
  EXPECT_TRUE(Contains(first.out, "would write data/data-") && Contains(first.out, "a full image (first backup"))
      << first.out;
  EXPECT_FALSE(testing::PathExists(repo_)) << "a dry run made the repository";
  Change(0);
  auto full = Backup(7);
  ASSERT_TRUE(full.ok()) << full.status().message();
  auto before = Files(repo_);
  CommandResult second = RunOk(dry);
  EXPECT_TRUE(Contains(second.out, "a delta on " + full->image.file)) << second.out;
  EXPECT_EQ(Files(repo_), before);
}

TEST_F(RepositoryTest, NotARepositoryIsRefused) {
  RunOk("mkdir -p " + Quote(repo_) + " && echo x > " + Quote(repo_ + "/other"));
  auto r = Backup(7);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTarget);
  EXPECT_TRUE(Contains(r.status().message(), "not a hotsnap repository")) << r.status().message();
  CommandResult list = testing::Run(Hotsnap("list " + Quote(repo_)));
  EXPECT_EQ(list.exit_code, 2) << list.err;
  EXPECT_TRUE(Contains(list.err, "is not a hotsnap repository")) << list.err;
}

}  // namespace
}  // namespace hotsnap
