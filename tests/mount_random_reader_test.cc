// ImageRandomReader on a small image of a regular file (3 chunks, the last one short) and
// `hotsnap cat` against `zstd -dc | dd`. Expectations come from the source bytes and from
// stock zstd, never from the code under test.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "io/image_index.h"
#include "io/image_random_reader.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::HotsnapBinary;
using testing::Quote;
using testing::ReadAll;
using testing::RunOk;
using testing::TempDir;

constexpr uint64_t kMiB = 1 << 20;

// testing::Run under a name that gtest's Test::Run does not hide inside test bodies.
testing::CommandResult Sh(const std::string& command) { return testing::Run(command); }
constexpr uint64_t kChunk = 4 * kMiB;
// Two full chunks and a short third one.
constexpr uint64_t kSourceBytes = 2 * kChunk + 1 * kMiB + 12345;

class RandomReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Random bytes (incompressible, so the frames are large) with a zero run in the middle.
    source_.resize(kSourceBytes);
    std::mt19937_64 rng(42);
    for (auto& b : source_) b = static_cast<char>(rng());
    std::fill(source_.begin() + kChunk / 2, source_.begin() + kChunk / 2 + kMiB, '\0');
    source_path_ = dir_.File("source.bin");
    image_path_ = dir_.File("image.zst");
    FILE* f = fopen(source_path_.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fwrite(source_.data(), 1, source_.size(), f), source_.size());
    fclose(f);
    RunOk(Quote(HotsnapBinary()) + " backup " + Quote(source_path_) + " -o " + Quote(image_path_) +
          " --no-progress --quiet");
  }

  std::string Slice(uint64_t offset, uint64_t length) { return source_.substr(offset, length); }

  TempDir dir_;
  std::string source_;
  std::string source_path_;
  std::string image_path_;
};

TEST_F(RandomReaderTest, ReadsSpanningChunksTheLastChunkAndPastTheEnd) {
  auto reader = ImageRandomReader::Open(image_path_);
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  ASSERT_EQ((*reader)->device_bytes(), kSourceBytes);
  struct Case {
    uint64_t offset;
    uint64_t length;
  };
  const std::vector<Case> cases = {
      {0, 4096},                            // start
      {kChunk - 100, 200},                  // across the first boundary
      {kChunk / 2 - 10, kMiB + 20},         // around the zero run
      {1, 2 * kChunk + 5},                  // three chunks
      {2 * kChunk, kSourceBytes - 2 * kChunk},  // exactly the short last chunk
      {kSourceBytes - 7, 7},                // the last bytes
  };
  for (const Case& c : cases) {
    std::string got(c.length, '\xAA');
    auto n = (*reader)->Read(c.offset, c.length, got.data());
    ASSERT_TRUE(n.ok()) << n.status().message();
    EXPECT_EQ(*n, c.length) << "offset " << c.offset;
    EXPECT_TRUE(got == Slice(c.offset, c.length)) << "offset " << c.offset << " length " << c.length;
  }
  // Past the end: clipped, never beyond the declared device size.
  std::string tail(1000, '\xAA');
  auto n = (*reader)->Read(kSourceBytes - 10, tail.size(), tail.data());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 10u);
  EXPECT_EQ(tail.substr(0, 10), Slice(kSourceBytes - 10, 10));
  EXPECT_EQ(tail.substr(10), std::string(990, '\xAA')) << "wrote past what it returned";
  n = (*reader)->Read(kSourceBytes, 10, tail.data());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
  n = (*reader)->Read(kSourceBytes + kChunk * 100, 10, tail.data());
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 0u);
}

TEST_F(RandomReaderTest, CacheIsBoundedAndConcurrentReadersAgree) {
  RandomReaderOptions options;
  options.cache_chunks = 1;
  auto reader = ImageRandomReader::Open(image_path_, options);
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::string buf;
      for (int i = 0; i < 50; ++i) {
        uint64_t offset = rng() % kSourceBytes;
        uint64_t length = 1 + rng() % (kChunk + 1000);
        buf.assign(length, '\0');
        auto n = (*reader)->Read(offset, length, buf.data());
        uint64_t expected = std::min(length, kSourceBytes - offset);
        if (!n.ok() || *n != expected || buf.compare(0, expected, source_, offset, expected) != 0) ++mismatches;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches.load(), 0);
  RandomReaderStats stats = (*reader)->stats();
  EXPECT_GT(stats.chunks_decoded, 3u) << "a one-chunk cache must evict and decode again";
  EXPECT_EQ(stats.integrity_failures, 0u);
}

// Flips one byte in the middle of chunk 1's frame (the offsets come from the seek table).
void CorruptChunk(const std::string& image, uint64_t chunk) {
  testing::FlipByteInChunkFrame(image, chunk, 0x5A);
}

TEST_F(RandomReaderTest, CorruptChunkFailsOnlyReadsThatTouchIt) {
  CorruptChunk(image_path_, 1);
  auto reader = ImageRandomReader::Open(image_path_);
  ASSERT_TRUE(reader.ok()) << reader.status().message();
  std::string buf(8192, '\0');
  auto bad = (*reader)->Read(kChunk + 100, 100, buf.data());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kIntegrity);
  EXPECT_NE(bad.status().message().find("chunk 1"), std::string::npos) << bad.status().message();
  // A read that only ends in the bad chunk fails too.
  EXPECT_FALSE((*reader)->Read(kChunk - 10, 20, buf.data()).ok());
  // Chunks 0 and 2 still read correctly.
  auto good = (*reader)->Read(kChunk - 4096, 4096, buf.data());
  ASSERT_TRUE(good.ok()) << good.status().message();
  EXPECT_TRUE(buf.compare(0, 4096, source_, kChunk - 4096, 4096) == 0);
  good = (*reader)->Read(2 * kChunk, 8192, buf.data());
  ASSERT_TRUE(good.ok()) << good.status().message();
  EXPECT_TRUE(buf.compare(0, 8192, source_, 2 * kChunk, 8192) == 0);
  EXPECT_GE((*reader)->stats().integrity_failures, 2u);
}

TEST_F(RandomReaderTest, CatEqualsZstdAndDd) {
  const std::string bin = Quote(HotsnapBinary());
  const std::string img = Quote(image_path_);
  struct Range {
    uint64_t offset;
    uint64_t length;
  };
  for (const Range& r : {Range{0, 1000}, Range{kChunk - 3, kChunk + kMiB}, Range{kSourceBytes - 777, 777}}) {
    std::string ours = dir_.File("cat.out");
    std::string theirs = dir_.File("dd.out");
    RunOk(bin + " cat " + img + " --offset " + std::to_string(r.offset) + " --length " +
          std::to_string(r.length) + " -o " + Quote(ours) + " --overwrite");
    RunOk("zstd -dc " + img + " | dd of=" + Quote(theirs) + " iflag=skip_bytes,count_bytes,fullblock bs=64K skip=" +
          std::to_string(r.offset) + " count=" + std::to_string(r.length) + " status=none");
    std::string a = ReadAll(ours), b = ReadAll(theirs);
    EXPECT_EQ(a.size(), r.length);
    EXPECT_TRUE(a == b) << "range " << r.offset << "+" << r.length;
  }
  // To stdout, the default.
  auto out = RunOk(bin + " cat " + img + " --offset 5 --length 11 | od -An -tx1");
  auto ref = RunOk("zstd -dc " + img + " | head -c 16 | tail -c 11 | od -An -tx1");
  EXPECT_EQ(out.out, ref.out);
  // Past the end: a usage error, nothing written.
  auto past = Sh(bin + " cat " + img + " --offset " + std::to_string(kSourceBytes - 1) + " --length 2 -o " +
                  Quote(dir_.File("past.out")));
  EXPECT_EQ(past.exit_code, 2) << past.err;
  EXPECT_NE(access(dir_.File("past.out").c_str(), F_OK), 0);
  // A stream is refused with a message saying why.
  auto stream = Sh("cat " + img + " | " + bin + " cat - --length 10");
  EXPECT_EQ(stream.exit_code, 6) << stream.err;
  EXPECT_NE(stream.err.find("random access needs an image file"), std::string::npos) << stream.err;
}

TEST_F(RandomReaderTest, CatOfCorruptChunkExitsFiveNamingIt) {
  CorruptChunk(image_path_, 1);
  std::string out = dir_.File("cat.out");
  auto r = Sh(Quote(HotsnapBinary()) + " cat " + Quote(image_path_) + " --offset " + std::to_string(kChunk - 10) +
               " --length 100 -o " + Quote(out));
  EXPECT_EQ(r.exit_code, 5) << r.err;
  EXPECT_NE(r.err.find("chunk 1"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("device bytes " + std::to_string(kChunk)), std::string::npos) << r.err;
  EXPECT_NE(access(out.c_str(), F_OK), 0) << "a failed cat must not leave a partial file";
  // A range in good chunks still extracts.
  auto ok = Sh(Quote(HotsnapBinary()) + " cat " + Quote(image_path_) + " --offset 0 --length 100 | wc -c");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(std::stoi(ok.out), 100);
}

// `hotsnap cat -o DEVICE`: written to, never fsynced (EINVAL on a character device) and
// never removed, even when the extraction fails. The devices are private nodes made here
// (the kernel's null and full devices), so a regression cannot remove the system's.
TEST_F(RandomReaderTest, CatToADeviceNeitherRemovesNorSyncsIt) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  const std::string null_node = dir_.File("null");
  const std::string full_node = dir_.File("full");
  ASSERT_EQ(mknod(null_node.c_str(), S_IFCHR | 0666, makedev(1, 3)), 0) << strerror(errno);
  ASSERT_EQ(mknod(full_node.c_str(), S_IFCHR | 0666, makedev(1, 7)), 0) << strerror(errno);
  const std::string cat = Quote(HotsnapBinary()) + " cat " + Quote(image_path_) + " --length " +
                          std::to_string(kChunk + 10) + " --overwrite -o ";
  auto ok = Sh(cat + Quote(null_node));
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  auto full = Sh(cat + Quote(full_node));
  EXPECT_NE(full.exit_code, 0) << "writing to the full device must fail";
  for (const std::string& node : {null_node, full_node}) {
    struct stat st;
    ASSERT_EQ(stat(node.c_str(), &st), 0) << node << " was removed";
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << node << " is no longer a device";
  }
}

}  // namespace
}  // namespace hotsnap
