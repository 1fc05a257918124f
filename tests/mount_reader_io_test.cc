// ImageRandomReader's I/O paths, on a real image of ten chunks (one of them all zeros) made
// by `hotsnap backup`: frames are read with O_DIRECT where the filesystem allows it (ext4)
// and through the page cache where it does not (ramfs), with the same bytes either way; a
// sequential reader with read-ahead gets the next chunks decoded in the background, each
// chunk exactly once; random reads decode nothing ahead; a corrupt chunk met by the
// read-ahead still fails the reads that touch it; pinned bytes stay valid after the reader
// is gone. Expected bytes come from the source file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <thread>

#include "base/unique_fd.h"
#include "io/image_index.h"
#include "io/image_random_reader.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::HotsnapBinary;
using testing::LoopDevice;
using testing::MountPoint;
using testing::Quote;
using testing::RunOk;
using testing::TempDir;

// testing::Run under a name that gtest's Test::Run does not hide inside test bodies.
testing::CommandResult Sh(const std::string& command) { return testing::Run(command); }

constexpr uint64_t kMiB = 1 << 20;
constexpr uint64_t kChunk = 4 * kMiB;
constexpr uint64_t kChunks = 10;
constexpr uint64_t kZeroChunk = 5;

class ReaderIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    source_.resize(kChunks * kChunk);
    std::mt19937_64 rng(7);
    for (auto& b : source_) b = static_cast<char>(rng());
    std::fill(source_.begin() + kZeroChunk * kChunk, source_.begin() + (kZeroChunk + 1) * kChunk, '\0');
    const std::string source_path = dir_.File("source.bin");
    image_path_ = dir_.File("image.zst");
    FILE* f = fopen(source_path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fwrite(source_.data(), 1, source_.size(), f), source_.size());
    fclose(f);
    RunOk(Quote(HotsnapBinary()) + " backup " + Quote(source_path) + " -o " + Quote(image_path_) +
          " --no-progress --quiet");
  }

  std::unique_ptr<ImageRandomReader> Open(size_t readahead_chunks) {
    return OpenAt(image_path_, readahead_chunks);
  }

  std::unique_ptr<ImageRandomReader> OpenAt(const std::string& image, size_t readahead_chunks) {
    RandomReaderOptions options;
    options.cache_chunks = 16;  // holds every chunk: nothing is decoded twice
    options.readahead_chunks = readahead_chunks;
    options.readahead_threads = 1;
    auto reader = ImageRandomReader::Open(image, options);
    EXPECT_TRUE(reader.ok()) << reader.status().message();
    return reader.ok() ? std::move(reader.value()) : nullptr;
  }

  // Reads [offset, offset + length) and compares it with the source.
  void ExpectRead(ImageRandomReader& reader, uint64_t offset, uint64_t length) {
    std::string got(length, '\xAA');
    auto n = reader.Read(offset, length, got.data());
    ASSERT_TRUE(n.ok()) << n.status().message();
    ASSERT_EQ(*n, length);
    EXPECT_TRUE(got.compare(0, length, source_, offset, length) == 0) << "offset " << offset;
  }

  // Waits up to 10 s for the read-ahead to have decoded `count` chunks.
  static bool WaitForReadAhead(ImageRandomReader& reader, uint64_t count) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (reader.stats().readahead_decoded < count) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  }

  TempDir dir_;
  std::string source_;
  std::string image_path_;
};

// ramfs, mounted for the test: a filesystem without O_DIRECT (open fails with EINVAL).
class RamfsMount {
 public:
  explicit RamfsMount(std::string dir) : dir_(std::move(dir)) {
    mkdir(dir_.c_str(), 0755);
    mounted_ = RunOk("mount -t ramfs hotsnap-test " + Quote(dir_)).exit_code == 0;
  }
  ~RamfsMount() {
    if (mounted_) Sh("umount " + Quote(dir_) + " || umount -l " + Quote(dir_));
  }
  RamfsMount(const RamfsMount&) = delete;
  RamfsMount& operator=(const RamfsMount&) = delete;
  bool mounted() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

TEST_F(ReaderIoTest, FramesAreReadDirectOnExt4AndThroughThePageCacheOnRamfs) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  LoopDevice disk(dir_.path(), 128 * kMiB);
  RunOk("mkfs.ext4 -q -F " + Quote(disk.device()));
  MountPoint ext4(disk.device(), dir_.File("ext4"));
  RamfsMount ramfs(dir_.File("ramfs"));
  ASSERT_TRUE(ramfs.mounted());
  for (const std::string& dir : {ext4.path(), dir_.File("ramfs")}) {
    const std::string image = dir + "/image.zst";
    RunOk("cp " + Quote(image_path_) + " " + Quote(image));
    auto reader = OpenAt(image, /*readahead_chunks=*/0);
    ASSERT_NE(reader, nullptr);
    // Odd offsets and lengths: the frames lie at unaligned image offsets anyway.
    for (uint64_t offset = 12345; offset < kChunks * kChunk; offset += 3 * kMiB + 777) {
      ExpectRead(*reader, offset, std::min<uint64_t>(kMiB + 1, kChunks * kChunk - offset));
    }
    RandomReaderStats stats = reader->stats();
    EXPECT_EQ(stats.chunks_decoded, kChunks - 1) << dir;
    EXPECT_EQ(stats.frames_read_direct, dir == ext4.path() ? stats.chunks_decoded : 0u) << dir;
  }
}

TEST_F(ReaderIoTest, SequentialReadsAreDecodedAheadOnceEach) {
  auto reader = Open(/*readahead_chunks=*/2);
  ASSERT_NE(reader, nullptr);
  // Chunk 0, then into chunk 1: the reader is sequential, chunks 2 and 3 get decoded ahead.
  ExpectRead(*reader, 0, kMiB);
  ExpectRead(*reader, kChunk, kMiB);
  ASSERT_TRUE(WaitForReadAhead(*reader, 2)) << "chunks 2 and 3 were not decoded ahead";
  // The rest, in 1 MiB pieces as the kernel sends them.
  for (uint64_t offset = kChunk + kMiB; offset < kChunks * kChunk; offset += kMiB) {
    ExpectRead(*reader, offset, kMiB);
  }
  RandomReaderStats stats = reader->stats();
  EXPECT_EQ(stats.chunks_decoded, kChunks - 1) << "every non-zero chunk exactly once";
  EXPECT_GE(stats.readahead_decoded, 2u);
  EXPECT_GE(stats.readahead_queued, stats.readahead_decoded);
  EXPECT_EQ(stats.integrity_failures, 0u);
}

TEST_F(ReaderIoTest, RandomReadsDecodeNothingAhead) {
  auto reader = Open(/*readahead_chunks=*/4);
  ASSERT_NE(reader, nullptr);
  for (uint64_t chunk : {7, 2, 9, 0, 3}) ExpectRead(*reader, chunk * kChunk + 4096, 8192);
  // A chunk is queued for read-ahead during the read that makes the pattern sequential, so
  // nothing queued by now means nothing will ever be decoded ahead: no waiting needed.
  RandomReaderStats stats = reader->stats();
  EXPECT_EQ(stats.readahead_queued, 0u);
  EXPECT_EQ(stats.readahead_decoded, 0u);
  EXPECT_EQ(stats.chunks_decoded, 5u);
}

// Flips one byte in the middle of chunk `chunk`'s frame (offsets from the seek table).
void CorruptChunk(const std::string& image, uint64_t chunk) {
  testing::FlipByteInChunkFrame(image, chunk, 0x5A);
}

TEST_F(ReaderIoTest, CorruptChunkMetByTheReadAheadStillFailsItsReads) {
  CorruptChunk(image_path_, 3);
  auto reader = Open(/*readahead_chunks=*/2);
  ASSERT_NE(reader, nullptr);
  ExpectRead(*reader, kChunk, kMiB);
  ExpectRead(*reader, 2 * kChunk, kMiB);  // queues chunks 3 (corrupt) and 4, in that order
  ASSERT_TRUE(WaitForReadAhead(*reader, 1)) << "chunk 4 was not decoded ahead";
  std::string buf(kMiB, '\0');
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto bad = reader->Read(3 * kChunk + kMiB, kMiB, buf.data());
    ASSERT_FALSE(bad.ok()) << "a corrupt chunk must never be served";
    EXPECT_EQ(bad.status().code(), Code::kIntegrity);
    EXPECT_NE(bad.status().message().find("chunk 3"), std::string::npos) << bad.status().message();
  }
  ExpectRead(*reader, 4 * kChunk, kChunk);
  EXPECT_EQ(reader->stats().integrity_failures, 2u);
}

TEST_F(ReaderIoTest, PinnedBytesStayValidAfterTheReaderIsGone) {
  auto reader = Open(/*readahead_chunks=*/2);
  ASSERT_NE(reader, nullptr);
  PinnedBytes pinned;
  // Across a chunk boundary, and into the zero chunk.
  const uint64_t offset = (kZeroChunk - 1) * kChunk + kChunk / 2;
  Status s = reader->Pin(offset, kChunk, &pinned);
  ASSERT_TRUE(s.ok()) << s.message();
  ASSERT_EQ(pinned.bytes, kChunk);
  ASSERT_EQ(pinned.pieces.size(), 2u);
  reader.reset();
  std::string got;
  for (const iovec& v : pinned.pieces) got.append(static_cast<const char*>(v.iov_base), v.iov_len);
  EXPECT_TRUE(got.compare(0, kChunk, source_, offset, kChunk) == 0);
}

}  // namespace
}  // namespace hotsnap
