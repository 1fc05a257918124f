// Tests for io/sink.h: the file sink publishes under the final name only on Commit(), keeps
// its data in a private temporary file in the destination's directory until then, removes
// it when destroyed uncommitted, refuses existing destinations without overwrite, and does
// not follow a symlink planted at its temporary name. Publishing keeps the no-replace
// guarantee on filesystems that refuse RENAME_NOREPLACE (link + unlink), and once the final
// name holds the image Commit() succeeds (later failures are warnings). The fd sink writes
// through to a pipe.
#include "io/sink.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <string>
#include <vector>

#include "io/stale_temp_files.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::PathExists;
using ::hotsnap::testing::ReadAll;
using ::hotsnap::testing::TempDir;
using ::hotsnap::testing::WriteFile;

using ::hotsnap::testing::ListDir;

TEST(TemporaryNameTest, IsHiddenBesideTheDestination) {
  EXPECT_EQ(TemporaryNameFor("/backups/a.zst", 1234), "/backups/.a.zst.hotsnap-1234.tmp");
  EXPECT_EQ(TemporaryNameFor("/a.zst", 7), "/.a.zst.hotsnap-7.tmp");
  std::string rel = TemporaryNameFor("a.zst", 7);
  EXPECT_TRUE(rel == "./.a.zst.hotsnap-7.tmp" || rel == ".a.zst.hotsnap-7.tmp") << rel;
}

TEST(FileSinkTest, PublishesOnlyOnCommit) {
  TempDir dir;
  std::string dest = dir.File("img.zst");
  std::string temp = dir.File(".img.zst.hotsnap-" + std::to_string(getpid()) + ".tmp");
  auto sink = MakeFileSink(dest, {});
  ASSERT_TRUE(sink.ok()) << sink.status().message();
  std::string data(3 << 20, 'x');
  data[12345] = 'y';
  ASSERT_TRUE((*sink)->Write(data.data(), 1000).ok());
  ASSERT_TRUE((*sink)->Write(data.data() + 1000, data.size() - 1000).ok());
  EXPECT_FALSE(PathExists(dest)) << "final name visible before Commit";
  ASSERT_TRUE(PathExists(temp)) << "no temporary file at " << temp;
  struct stat st;
  ASSERT_EQ(lstat(temp.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_TRUE((*sink)->Commit().ok());
  EXPECT_FALSE(PathExists(temp));
  EXPECT_EQ(ReadAll(dest), data);
  ASSERT_EQ(stat(dest.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  sink->reset();  // destroying a committed sink must not remove the published file
  EXPECT_EQ(ReadAll(dest), data);
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"img.zst"});
}

TEST(FileSinkTest, DestroyedWithoutCommitLeavesNothing) {
  TempDir dir;
  std::string dest = dir.File("img.zst");
  {
    auto sink = MakeFileSink(dest, {});
    ASSERT_TRUE(sink.ok()) << sink.status().message();
    ASSERT_TRUE((*sink)->Write("abc", 3).ok());
    EXPECT_EQ(ListDir(dir.path()).size(), 1u);
  }
  EXPECT_TRUE(ListDir(dir.path()).empty()) << "left: " << ListDir(dir.path()).front();
}

TEST(FileSinkTest, ModeIs0600EvenUnderUmask000) {
  TempDir dir;
  mode_t old = umask(0);
  auto sink = MakeFileSink(dir.File("img.zst"), {});
  umask(old);
  ASSERT_TRUE(sink.ok());
  ASSERT_TRUE((*sink)->Commit().ok());
  struct stat st;
  ASSERT_EQ(stat(dir.File("img.zst").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(FileSinkTest, RefusesExistingDestinationWithoutOverwrite) {
  TempDir dir;
  std::string dest = dir.File("img.zst");
  WriteFile(dest, "old content");
  auto sink = MakeFileSink(dest, {});
  ASSERT_FALSE(sink.ok());
  EXPECT_EQ(sink.status().code(), Code::kTarget);
  EXPECT_EQ(ReadAll(dest), "old content");
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"img.zst"});
}

TEST(FileSinkTest, OverwriteReplacesOnlyOnCommit) {
  TempDir dir;
  std::string dest = dir.File("img.zst");
  WriteFile(dest, "old content");
  {
    auto sink = MakeFileSink(dest, {.overwrite = true});
    ASSERT_TRUE(sink.ok()) << sink.status().message();
    ASSERT_TRUE((*sink)->Write("new", 3).ok());
    EXPECT_EQ(ReadAll(dest), "old content");
  }
  EXPECT_EQ(ReadAll(dest), "old content") << "an uncommitted overwrite replaced the file";
  auto sink = MakeFileSink(dest, {.overwrite = true});
  ASSERT_TRUE(sink.ok());
  ASSERT_TRUE((*sink)->Write("new", 3).ok());
  ASSERT_TRUE((*sink)->Commit().ok());
  EXPECT_EQ(ReadAll(dest), "new");
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"img.zst"});
}

TEST(FileSinkTest, CommitDoesNotReplaceAFileThatAppearedMeanwhile) {
  TempDir dir;
  std::string dest = dir.File("img.zst");
  auto sink = MakeFileSink(dest, {});
  ASSERT_TRUE(sink.ok());
  ASSERT_TRUE((*sink)->Write("new", 3).ok());
  WriteFile(dest, "someone else's");
  Status s = (*sink)->Commit();
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kTarget);
  sink->reset();
  EXPECT_EQ(ReadAll(dest), "someone else's");
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"img.zst"});
}

TEST(FileSinkTest, RefusesDirectoriesAndEmptyNames) {
  TempDir dir;
  mkdir(dir.File("d").c_str(), 0755);
  auto a = MakeFileSink(dir.File("d"), {.overwrite = true});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), Code::kTarget);
  EXPECT_FALSE(MakeFileSink("", {}).ok());
  EXPECT_FALSE(MakeFileSink(dir.path() + "/", {}).ok());
  EXPECT_FALSE(MakeFileSink(dir.File("missing-dir/img.zst"), {}).ok());
}

TEST(FileSinkTest, DoesNotFollowASymlinkAtTheTemporaryName) {
  TempDir dir;
  std::string dest = dir.File("img.zst");
  std::string victim = dir.File("victim");
  WriteFile(victim, "precious");
  std::string temp = TemporaryNameFor(dest, static_cast<int>(getpid()));
  ASSERT_EQ(symlink(victim.c_str(), temp.c_str()), 0);
  {
    auto sink = MakeFileSink(dest, {});
    if (sink.ok()) {
      // Only reached when the sink is already wrong: these calls show the damage, which the
      // checks of the victim below catch; their own results do not matter.
      (void)(*sink)->Write("evil", 4);
      (void)(*sink)->Commit();
    }
    EXPECT_FALSE(sink.ok()) << "the sink opened a planted symlink";
  }
  EXPECT_EQ(ReadAll(victim), "precious");
  EXPECT_FALSE(PathExists(dest));
  struct stat st;
  ASSERT_EQ(lstat(temp.c_str(), &st), 0) << "the planted symlink is not the sink's to remove";
  EXPECT_TRUE(S_ISLNK(st.st_mode));
}

// The real directory operations, with the errors of filesystems that lack some of them:
// a non-zero field is returned instead of making that call.
class FaultyPublishOps : public PublishOps {
 public:
  int rename_noreplace_error = 0;  // e.g. EINVAL, as NFS, 9p and FUSE answer the flag
  int link_error = 0;
  int unlink_error = 0;
  int sync_directory_error = 0;
  bool kill_after_link = false;  // SIGKILL the process right after a successful link()
  std::vector<std::string> calls;

  int Rename(const std::string& from, const std::string& to, unsigned flags) override {
    calls.push_back(flags == RENAME_NOREPLACE ? "renameat2-noreplace" : "rename");
    if (flags == RENAME_NOREPLACE && rename_noreplace_error != 0) return rename_noreplace_error;
    return PublishOps::Rename(from, to, flags);
  }
  int Link(const std::string& from, const std::string& to) override {
    calls.push_back("link");
    if (link_error != 0) return link_error;
    int err = PublishOps::Link(from, to);
    if (err == 0 && kill_after_link) raise(SIGKILL);
    return err;
  }
  int Unlink(const std::string& path) override {
    calls.push_back("unlink");
    if (unlink_error != 0) return unlink_error;
    return PublishOps::Unlink(path);
  }
  int SyncDirectory(const std::string& dir) override {
    calls.push_back("fsync-dir");
    if (sync_directory_error != 0) return sync_directory_error;
    return PublishOps::SyncDirectory(dir);
  }
};

// Writes `data` through a file sink at `dest` with `ops`; returns Commit()'s status and the
// stderr it printed.
Status WriteAndCommit(const std::string& dest, const std::string& data, PublishOps* ops,
                      std::string* err = nullptr, bool overwrite = false) {
  auto sink = MakeFileSink(dest, {.overwrite = overwrite, .ops = ops});
  if (!sink.ok()) return sink.status();
  HOTSNAP_RETURN_IF_ERROR((*sink)->Write(data.data(), data.size()));
  ::testing::internal::CaptureStderr();
  Status s = (*sink)->Commit();
  std::string printed = ::testing::internal::GetCapturedStderr();
  if (err != nullptr) *err = printed;
  return s;
}

TEST(FileSinkPublishTest, FallsBackToLinkWhereRenameNoReplaceIsRefused) {
  for (int refusal : {EINVAL, ENOSYS, EOPNOTSUPP}) {
    TempDir dir;
    std::string dest = dir.File("img.zst");
    FaultyPublishOps ops;
    ops.rename_noreplace_error = refusal;
    std::string data(1 << 20, 'z');
    Status s = WriteAndCommit(dest, data, &ops);
    ASSERT_TRUE(s.ok()) << strerror(refusal) << ": " << s.message();
    EXPECT_EQ(ops.calls,
              (std::vector<std::string>{"renameat2-noreplace", "link", "unlink", "fsync-dir"}));
    EXPECT_EQ(ReadAll(dest), data);
    EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"img.zst"}) << "temporary name left";
    struct stat st;
    ASSERT_EQ(stat(dest.c_str(), &st), 0);
    EXPECT_EQ(st.st_nlink, 1u);
    EXPECT_EQ(st.st_mode & 07777, 0600u);
  }
}

TEST(FileSinkPublishTest, FallbackDoesNotReplaceAFileThatAppearedMeanwhile) {
  TempDir dir;
  std::string dest = dir.File("img.zst");
  FaultyPublishOps ops;
  ops.rename_noreplace_error = EINVAL;
  auto sink = MakeFileSink(dest, {.ops = &ops});
  ASSERT_TRUE(sink.ok());
  ASSERT_TRUE((*sink)->Write("new", 3).ok());
  WriteFile(dest, "someone else's");
  Status s = (*sink)->Commit();
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kTarget);
  EXPECT_NE(s.message().find(dest), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("not replaced"), std::string::npos) << s.message();
  sink->reset();
  EXPECT_EQ(ReadAll(dest), "someone else's");
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"img.zst"});
}

TEST(FileSinkPublishTest, RefusesToPublishWhereNeitherNoReplaceNorLinksWork) {
  for (int link_refusal : {EPERM, EOPNOTSUPP}) {
    TempDir dir;
    std::string dest = dir.File("img.zst");
    FaultyPublishOps ops;
    ops.rename_noreplace_error = EINVAL;
    ops.link_error = link_refusal;
    auto sink = MakeFileSink(dest, {.ops = &ops});
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE((*sink)->Write("img", 3).ok());
    Status s = (*sink)->Commit();
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.code(), Code::kTarget);
    EXPECT_NE(s.message().find(dest), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("--overwrite"), std::string::npos) << s.message();
    EXPECT_EQ(std::count(ops.calls.begin(), ops.calls.end(), "rename"), 0)
        << "fell back to a rename that could replace a file";
    sink->reset();
    EXPECT_TRUE(ListDir(dir.path()).empty()) << ListDir(dir.path()).front();
  }
  // --overwrite asks for replacement: a plain rename publishes there.
  TempDir dir;
  FaultyPublishOps ops;
  ops.rename_noreplace_error = EINVAL;
  ops.link_error = EPERM;
  ASSERT_TRUE(WriteAndCommit(dir.File("img.zst"), "img", &ops, nullptr, true).ok());
  EXPECT_EQ(ReadAll(dir.File("img.zst")), "img");
}

TEST(FileSinkPublishTest, OtherRenameErrorsAreNotRetriedWithLink) {
  TempDir dir;
  FaultyPublishOps ops;
  ops.rename_noreplace_error = EIO;
  Status s = WriteAndCommit(dir.File("img.zst"), "img", &ops);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kTarget);
  EXPECT_EQ(ops.calls, (std::vector<std::string>{"renameat2-noreplace", "unlink"}));
  EXPECT_TRUE(ListDir(dir.path()).empty());
}

TEST(FileSinkPublishTest, FailedDirectoryFsyncAfterPublishingIsAWarningNotAnError) {
  for (bool fallback : {false, true}) {
    TempDir dir;
    std::string dest = dir.File("img.zst");
    FaultyPublishOps ops;
    ops.sync_directory_error = EIO;
    if (fallback) ops.rename_noreplace_error = EINVAL;
    std::string err;
    Status s = WriteAndCommit(dest, "image", &ops, &err);
    EXPECT_TRUE(s.ok()) << "an image under its final name with an error: " << s.message();
    EXPECT_EQ(ReadAll(dest), "image");
    EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"img.zst"});
    EXPECT_NE(err.find("warning"), std::string::npos) << err;
    EXPECT_NE(err.find(dir.path()), std::string::npos) << "the directory is not named: " << err;
    EXPECT_NE(err.find("power loss"), std::string::npos) << err;
    EXPECT_EQ(err.find("error:"), std::string::npos)
        << "a published image reported as an error: " << err;
  }
}

TEST(FileSinkPublishTest, TemporaryNameLeftAfterLinkIsAWarningAndCleanupRemovesIt) {
  // unlink() of the temporary name fails after link(): published, with a warning.
  TempDir dir;
  std::string dest = dir.File("img.zst");
  FaultyPublishOps ops;
  ops.rename_noreplace_error = EINVAL;
  ops.unlink_error = EACCES;
  std::string err;
  Status s = WriteAndCommit(dest, "image", &ops, &err);
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(ReadAll(dest), "image");
  std::string temp = TemporaryNameFor(dest, static_cast<int>(getpid()));
  EXPECT_TRUE(PathExists(temp));
  EXPECT_NE(err.find(temp), std::string::npos) << err;
  EXPECT_NE(err.find("hotsnap cleanup"), std::string::npos) << err;
}

TEST(FileSinkPublishTest, CrashBetweenLinkAndUnlinkLeavesATemporaryNameCleanupRemoves) {
  TempDir dir;
  std::string dest = dir.File("img.zst");
  std::string data(256 << 10, 'q');
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    FaultyPublishOps ops;
    ops.rename_noreplace_error = EINVAL;
    ops.kill_after_link = true;
    auto sink = MakeFileSink(dest, {.ops = &ops});
    if (!sink.ok() || !(*sink)->Write(data.data(), data.size()).ok()) _exit(1);
    (void)(*sink)->Commit();
    _exit(2);  // not reached: killed after link()
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  std::string temp = TemporaryNameFor(dest, child);
  ASSERT_TRUE(PathExists(temp)) << "the crash left no second name: "
                                << ::testing::PrintToString(ListDir(dir.path()));
  EXPECT_EQ(ReadAll(dest), data);
  StaleTempReport report;
  ASSERT_TRUE(RemoveStaleTemporaryFiles(dir.path(), &report).ok());
  EXPECT_EQ(report.removed.size(), 1u) << ::testing::PrintToString(report.kept);
  EXPECT_EQ(ListDir(dir.path()), std::vector<std::string>{"img.zst"});
  EXPECT_EQ(ReadAll(dest), data) << "cleanup harmed the published image";
}

TEST(FdSinkTest, WritesThroughToAPipe) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  auto sink = MakeFdSink(fds[1], "pipe");
  ASSERT_TRUE(sink->Write("hello ", 6).ok());
  ASSERT_TRUE(sink->Write("world", 5).ok());
  ASSERT_TRUE(sink->Commit().ok());
  EXPECT_EQ(sink->Describe(), "pipe");
  close(fds[1]);
  char buf[32] = {};
  ssize_t n = read(fds[0], buf, sizeof(buf));
  close(fds[0]);
  EXPECT_EQ(std::string(buf, n > 0 ? n : 0), "hello world");
}

TEST(FdSinkTest, AClosedReaderIsATargetError) {
  auto old = std::signal(SIGPIPE, SIG_IGN);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  close(fds[0]);
  auto sink = MakeFdSink(fds[1], "pipe");
  Status s = sink->Write("x", 1);
  close(fds[1]);
  std::signal(SIGPIPE, old);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kTarget);
}

}  // namespace
}  // namespace hotsnap
