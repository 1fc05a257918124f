// Tests for io/writeback_behind.h against a real file on a real filesystem: windows the
// writer has gone past are written back and dropped from the page cache (seen with
// mincore), the file's bytes are intact, and Stop is safe whether or not the thread ran.
#include "io/writeback_behind.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::ReadAll;
using ::hotsnap::testing::TempDir;

constexpr uint64_t kMiB = 1024 * 1024;

// Pages of the file's [offset, offset + bytes) that are in the page cache.
size_t ResidentPages(int fd, uint64_t offset, uint64_t bytes) {
  void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (map == MAP_FAILED) return SIZE_MAX;
  std::vector<unsigned char> v(bytes / 4096);
  size_t resident = SIZE_MAX;
  if (::mincore(map, bytes, v.data()) == 0) {
    resident = 0;
    for (unsigned char c : v) resident += c & 1;
  }
  ::munmap(map, bytes);
  return resident;
}

TEST(WritebackBehindTest, WindowsBehindTheWriterLeaveThePageCacheAndKeepTheirBytes) {
  TempDir dir;
  struct statfs fs;
  ASSERT_EQ(::statfs(dir.path().c_str(), &fs), 0);
  if (fs.f_type == TMPFS_MAGIC) GTEST_SKIP() << dir.path() << " is tmpfs: it has no writeback";
  std::string path = dir.File("image");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  std::string data;
  for (int i = 0; data.size() < 8 * kMiB; ++i) data += "block " + std::to_string(i) + "\n";
  data.resize(8 * kMiB);
  {
    WritebackBehind writeback(fd, 1 * kMiB);
    uint64_t written = 0;
    for (size_t at = 0; at < data.size(); at += 256 * 1024) {
      ASSERT_EQ(::write(fd, data.data() + at, 256 * 1024), 256 * 1024);
      written += 256 * 1024;
      writeback.Written(written);
    }
    // The thread works behind the writer: wait (bounded) for the first windows to go.
    size_t resident = SIZE_MAX;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      resident = ResidentPages(fd, 0, 4 * kMiB);
      if (resident == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(resident, 0u) << "the first 4 MiB are still cached, long after the writer passed";
    writeback.Stop();
    writeback.Stop();  // idempotent
  }
  ASSERT_EQ(::fsync(fd), 0);
  ::close(fd);
  EXPECT_TRUE(ReadAll(path) == data) << "the file's bytes changed";
}

TEST(WritebackBehindTest, StopBeforeAnyWindowIsHarmless) {
  TempDir dir;
  std::string path = dir.File("small");
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "abc", 3), 3);
  WritebackBehind writeback(fd, 1 * kMiB);
  writeback.Written(3);  // less than a window: no thread
  writeback.Stop();
  ::close(fd);
  EXPECT_EQ(ReadAll(path), "abc");
}

}  // namespace
}  // namespace hotsnap
