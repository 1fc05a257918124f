// Tests for io/writeback_behind.h against a real file on a real filesystem: every window the
// writer has announced is written back and dropped from the page cache (seen with mincore),
// also when the writer is far ahead of the thread and for the tail Finish writes back; the
// file's bytes are intact; Finish and the destructor are safe whether or not the thread ran.
#include "io/writeback_behind.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::InCi;
using ::hotsnap::testing::ReadAll;
using ::hotsnap::testing::TempDir;

constexpr uint64_t kMiB = 1024 * 1024;

// Pages of the file's [0, bytes) that are in the page cache, or SIZE_MAX if mincore failed.
size_t ResidentPages(int fd, uint64_t bytes) {
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return SIZE_MAX;
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> v((bytes + page - 1) / page);
  size_t resident = SIZE_MAX;
  if (::mincore(map, bytes, v.data()) == 0) {
    resident = 0;
    for (unsigned char c : v) resident += c & 1;
  }
  ::munmap(map, bytes);
  return resident;
}

// `bytes` of recognisable text.
std::string Data(uint64_t bytes) {
  std::string data;
  for (int i = 0; data.size() < bytes; ++i) data += "block " + std::to_string(i) + "\n";
  data.resize(bytes);
  return data;
}

class WritebackBehindTest : public ::testing::Test {
 protected:
  void SetUp() override {
    struct statfs fs;
    ASSERT_EQ(::statfs(dir_.path().c_str(), &fs), 0);
    if (fs.f_type == TMPFS_MAGIC) {
      if (InCi()) FAIL() << "CI=true but " << dir_.path() << " is tmpfs: it has no writeback";
      GTEST_SKIP() << dir_.path() << " is tmpfs: it has no writeback";
    }
    path_ = dir_.File("image");
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd_, 0);
    // The oracle works here: a page just written, with no WritebackBehind, is seen cached.
    int probe = ::open(dir_.File("probe").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(probe, 0);
    ASSERT_EQ(::write(probe, "probe", 5), 5);
    size_t probe_resident = ResidentPages(probe, 5);
    ::close(probe);
    ASSERT_EQ(probe_resident, 1u) << "mincore does not see a page just written in " << dir_.path();
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
  }

  // Writes `data` in `piece_bytes` writes, announcing each to `writeback`.
  void WriteAll(const std::string& data, size_t piece_bytes, WritebackBehind& writeback) {
    for (size_t at = 0; at < data.size(); at += piece_bytes) {
      size_t n = std::min(piece_bytes, data.size() - at);
      ASSERT_EQ(::write(fd_, data.data() + at, n), static_cast<ssize_t>(n));
      writeback.Written(at + n);
    }
  }

  TempDir dir_;
  std::string path_;
  int fd_ = -1;
};

// The writer announces eight windows in a row, usually faster than the thread writes one back (a
// burst), then stops without Finish: the thread must still drop all eight, on its own.
TEST_F(WritebackBehindTest, WindowsBehindTheWriterLeaveThePageCacheAndKeepTheirBytes) {
  std::string data = Data(8 * kMiB);
  {
    WritebackBehind writeback(fd_, 1 * kMiB);
    ASSERT_NO_FATAL_FAILURE(WriteAll(data, 256 * 1024, writeback));
    // Waits for the event (every page gone); the bound only turns a hang into a failure.
    size_t resident = SIZE_MAX;
    auto guard = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while ((resident = ResidentPages(fd_, data.size())) != 0 &&
           std::chrono::steady_clock::now() < guard) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_EQ(resident, 0u) << "pages of the 8 announced windows still cached a minute after "
                               "the writer stopped";
  }
  ASSERT_EQ(::fsync(fd_), 0);
  EXPECT_TRUE(ReadAll(path_) == data) << "the file's bytes changed";
}

// Finish leaves nothing in the page cache, as soon as it returns: the windows the thread has
// not reached, the tail short of a window and its partial last page, and the pages straddling
// window boundaries that are not page-aligned (odd-sized writes).
TEST_F(WritebackBehindTest, FinishWritesBackAndDropsEverythingIncludingTheTail) {
  std::string data = Data(8 * kMiB + 300 * 1024 + 123);
  WritebackBehind writeback(fd_, 1 * kMiB);
  ASSERT_NO_FATAL_FAILURE(WriteAll(data, 100'003, writeback));
  writeback.Finish();
  EXPECT_EQ(ResidentPages(fd_, data.size()), 0u) << "pages still cached after Finish";
  writeback.Finish();                         // idempotent
  writeback.Written(data.size() + 1 * kMiB);  // ignored after Finish: no thread restarts
  ASSERT_EQ(::fsync(fd_), 0);
  EXPECT_TRUE(ReadAll(path_) == data) << "the file's bytes changed";
}

// Less than a window: no thread ever runs, and Finish still drops what was written.
TEST_F(WritebackBehindTest, FinishBeforeAnyWindowDropsTheSmallFile) {
  WritebackBehind writeback(fd_, 1 * kMiB);
  ASSERT_EQ(::write(fd_, "abc", 3), 3);
  writeback.Written(3);
  writeback.Finish();
  EXPECT_EQ(ResidentPages(fd_, 3), 0u) << "the small file is still cached after Finish";
  EXPECT_EQ(ReadAll(path_), "abc");
}

// Destroyed without Finish (the owner discards the file): returns without writing the rest.
TEST_F(WritebackBehindTest, DestroyWithoutFinishIsHarmless) {
  std::string data = Data(4 * kMiB);
  {
    WritebackBehind writeback(fd_, 1 * kMiB);
    ASSERT_NO_FATAL_FAILURE(WriteAll(data, 256 * 1024, writeback));
  }
  { WritebackBehind never_started(fd_, 1 * kMiB); }
  ASSERT_EQ(::fsync(fd_), 0);
  EXPECT_TRUE(ReadAll(path_) == data) << "the file's bytes changed";
}

}  // namespace
}  // namespace hotsnap
