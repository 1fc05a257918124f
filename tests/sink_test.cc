// Tests for io/sink.h: the file sink publishes under the final name only on Commit(), keeps
// its data in a private temporary file in the destination's directory until then, removes
// it when destroyed uncommitted, refuses existing destinations without overwrite, and does
// not follow a symlink planted at its temporary name. The fd sink writes through to a pipe.
#include "io/sink.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <string>
#include <vector>

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
