// Tests for io/chunk_codec.h and io/frame_reader.h: IsAllZero on every position of a stray
// byte; chunk frames that stock libzstd decodes and that carry content size and checksum;
// the decompressor refusing frames of the wrong size or with damage; and FrameReader
// splitting a stream that arrives one byte per read() exactly as it was built.
#include "io/chunk_codec.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "io/frame_reader.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

std::vector<uint8_t> RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(gen());
  return v;
}

// Half random, half a repeated pattern: compresses, but not to nothing.
std::vector<uint8_t> MixedBytes(size_t n, uint32_t seed) {
  std::vector<uint8_t> v = RandomBytes(n, seed);
  for (size_t i = n / 2; i < n; ++i) v[i] = static_cast<uint8_t>("pattern!"[i % 8]);
  return v;
}

std::vector<uint8_t> Compress(const std::vector<uint8_t>& src, int level = 3) {
  auto c = ChunkCompressor::Create(level);
  EXPECT_TRUE(c.ok());
  std::vector<uint8_t> dst(MaxFrameBytes(static_cast<uint32_t>(src.size())));
  auto n = (*c)->Compress(src, dst);
  EXPECT_TRUE(n.ok()) << n.status().message();
  dst.resize(n.ok() ? *n : 0);
  return dst;
}

// ---- IsAllZero ------------------------------------------------------------------------------

TEST(IsAllZeroTest, FindsAStrayByteAtEveryPosition) {
  for (size_t size : {0u, 1u, 2u, 63u, 64u, 65u, 127u, 128u, 129u, 200u, 4096u}) {
    std::vector<uint8_t> buf(size, 0);
    EXPECT_TRUE(IsAllZero(buf.data(), size)) << size;
    for (size_t pos = 0; pos < size; ++pos) {
      for (uint8_t value : {uint8_t{1}, uint8_t{0x80}, uint8_t{0xFF}}) {
        buf[pos] = value;
        ASSERT_FALSE(IsAllZero(buf.data(), size)) << "size " << size << " pos " << pos;
        buf[pos] = 0;
      }
    }
  }
}

TEST(IsAllZeroTest, LargeBuffers) {
  std::vector<uint8_t> buf(4u << 20, 0);
  EXPECT_TRUE(IsAllZero(buf.data(), buf.size()));
  for (size_t pos : {size_t{0}, size_t{63}, size_t{64}, size_t{65}, buf.size() / 2, buf.size() - 65,
                     buf.size() - 64, buf.size() - 1}) {
    buf[pos] = 1;
    EXPECT_FALSE(IsAllZero(buf.data(), buf.size())) << pos;
    buf[pos] = 0;
  }
  // A periodic non-zero pattern (period 64) after a zero prefix defeats a pure shift compare.
  for (size_t i = 64; i < buf.size(); i += 64) buf[i] = 7;
  EXPECT_FALSE(IsAllZero(buf.data(), buf.size()));
  // Only the length given counts.
  std::vector<uint8_t> tail(100, 0);
  tail[99] = 1;
  EXPECT_TRUE(IsAllZero(tail.data(), 99));
  EXPECT_FALSE(IsAllZero(tail.data(), 100));
}

// ---- ChunkCompressor / ChunkDecompressor ----------------------------------------------------

TEST(ChunkCodecTest, FramesAreStockZstdWithSizeAndChecksum) {
  for (size_t size : {size_t{1}, size_t{4096}, size_t{(1u << 20) + 3584}, size_t{4u << 20}}) {
    std::vector<uint8_t> src = MixedBytes(size, static_cast<uint32_t>(size));
    std::vector<uint8_t> frame = Compress(src);
    ASSERT_FALSE(frame.empty());
    ASSERT_GE(frame.size(), 6u);
    EXPECT_EQ(LoadLe32(frame.data()), 0xFD2FB528u);  // an ordinary zstd frame
    // Frame_Header_Descriptor (RFC 8878 3.1.1.1.1): bit 2 is Content_Checksum_flag.
    EXPECT_TRUE(frame[4] & 0x04) << "no content checksum";
    EXPECT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), size);
    EXPECT_EQ(ZSTD_findFrameCompressedSize(frame.data(), frame.size()), frame.size());
    std::vector<uint8_t> out(size);
    size_t n = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
    ASSERT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
    EXPECT_EQ(n, size);
    EXPECT_TRUE(out == src) << size;
  }
}

TEST(ChunkCodecTest, RoundTripsAtSeveralLevels) {
  std::vector<uint8_t> src = MixedBytes(4u << 20, 42);
  auto d = ChunkDecompressor::Create(WindowLogFor(4u << 20));
  ASSERT_TRUE(d.ok());
  for (int level : {-5, 1, 3, 9}) {
    std::vector<uint8_t> frame = Compress(src, level);
    std::vector<uint8_t> out(4u << 20, 0xEE);
    Status s = (*d)->Decompress(frame, out, src.size());
    ASSERT_TRUE(s.ok()) << level << ": " << s.message();
    EXPECT_TRUE(out == src) << level;
  }
}

TEST(ChunkCodecTest, RejectsLevelsOutOfRange) {
  EXPECT_FALSE(ChunkCompressor::Create(ZSTD_maxCLevel() + 1).ok());
  EXPECT_FALSE(ChunkCompressor::Create(ZSTD_minCLevel() - 1).ok());
}

TEST(ChunkCodecTest, DecompressorRefusesAFrameDeclaringMoreBytes) {
  std::vector<uint8_t> src = MixedBytes(8192, 1);
  std::vector<uint8_t> frame = Compress(src);
  auto d = ChunkDecompressor::Create(WindowLogFor(1u << 20));
  ASSERT_TRUE(d.ok());
  std::vector<uint8_t> out(4096 + 64, 0xCC);
  Status s = (*d)->Decompress(frame, out, 4096);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kIntegrity);
  // Nothing past the expected length was touched.
  for (size_t i = 4096; i < out.size(); ++i) ASSERT_EQ(out[i], 0xCC) << i;
  // Fewer bytes than expected is refused too.
  std::vector<uint8_t> big(16384);
  s = (*d)->Decompress(frame, big, 16384);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kIntegrity);
}

TEST(ChunkCodecTest, DecompressorRefusesAFrameWithoutContentSize) {
  std::vector<uint8_t> src = MixedBytes(8192, 2);
  // Stock streaming compression without a pledged size leaves the content size out.
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  std::vector<uint8_t> frame(ZSTD_compressBound(src.size()));
  size_t n = ZSTD_compress2(cctx, frame.data(), frame.size(), src.data(), src.size());
  ZSTD_freeCCtx(cctx);
  ASSERT_FALSE(ZSTD_isError(n));
  frame.resize(n);
  auto d = ChunkDecompressor::Create(WindowLogFor(1u << 20));
  std::vector<uint8_t> out(8192);
  Status s = (*d)->Decompress(frame, out, 8192);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kIntegrity);
}

TEST(ChunkCodecTest, DecompressorCatchesEveryFlippedByteOfASmallFrame) {
  std::vector<uint8_t> src = MixedBytes(3000, 3);
  std::vector<uint8_t> frame = Compress(src);
  auto d = ChunkDecompressor::Create(WindowLogFor(1u << 20));
  std::vector<uint8_t> out(3000);
  for (size_t i = 0; i < frame.size(); ++i) {
    std::vector<uint8_t> bad = frame;
    bad[i] ^= 0x01;
    Status s = (*d)->Decompress(bad, out, 3000);
    // A flip may leave the frame decodable only if it yields the same bytes (it cannot: the
    // checksum covers them); every damaged frame must be refused or reproduce src exactly.
    if (s.ok()) {
      ASSERT_TRUE(out == src) << "flip at " << i << " decoded to different bytes without error";
    } else {
      EXPECT_EQ(s.code(), Code::kIntegrity) << i;
    }
  }
  // Truncations are always refused.
  for (size_t n = 0; n < frame.size(); ++n) {
    Status s = (*d)->Decompress(std::span<const uint8_t>(frame).first(n), out, 3000);
    ASSERT_FALSE(s.ok()) << "accepted a frame cut to " << n << " bytes";
  }
}

TEST(ChunkCodecTest, ZeroChunkDecodesToZerosWithTheirHash) {
  for (uint32_t length : {4u << 20, (1u << 20) + 3584, 512u}) {
    auto z = MakeZeroChunk(3, length);
    ASSERT_TRUE(z.ok()) << z.status().message();
    std::vector<uint8_t> out(length, 0x5A);
    size_t n = ZSTD_decompress(out.data(), out.size(), z->frame.data(), z->frame.size());
    ASSERT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
    EXPECT_EQ(n, length);
    EXPECT_EQ(ZSTD_getFrameContentSize(z->frame.data(), z->frame.size()), length);
    std::vector<uint8_t> zeros(length, 0);
    EXPECT_TRUE(out == zeros);
    XXH128_hash_t h = XXH3_128bits(zeros.data(), zeros.size());
    EXPECT_EQ(z->hash.low, h.low64);
    EXPECT_EQ(z->hash.high, h.high64);
  }
}

// ---- FrameReader ----------------------------------------------------------------------------

std::string Skippable(uint32_t magic, const std::string& payload) {
  std::string f;
  AppendLe32(&f, magic);
  AppendLe32(&f, static_cast<uint32_t>(payload.size()));
  return f + payload;
}

std::string StockZstdFrame(const std::vector<uint8_t>& src, int level) {
  std::string out(ZSTD_compressBound(src.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), src.data(), src.size(), level);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

// The frames of a small image-shaped stream, built with stock zstd and by hand.
std::vector<std::string> SampleFrames() {
  std::vector<std::string> frames;
  frames.push_back(Skippable(kMetadataMagic, "HSNPMETA" + std::string(300, 'm')));
  frames.push_back(StockZstdFrame(RandomBytes(1500, 7), 3));         // stored (raw) blocks
  frames.push_back(StockZstdFrame(std::vector<uint8_t>(20000, 0), 3));  // RLE
  frames.push_back(StockZstdFrame(MixedBytes(2500, 8), 1));
  frames.push_back(Skippable(kSkippableMagicBase + 7, ""));          // empty skippable frame
  frames.push_back(StockZstdFrame({}, 3));                           // empty zstd frame
  frames.push_back(Skippable(kTrailerMagic, std::string(100, 't')));
  frames.push_back(Skippable(kSeekTableMagic, std::string(41, 's')));
  return frames;
}

// Writes `data` into a pipe one byte at a time, each byte only once the reader has taken
// the previous one, so every read() the FrameReader makes returns at most one byte.
class TricklePipe {
 public:
  explicit TricklePipe(std::string data) : data_(std::move(data)) {
    std::signal(SIGPIPE, SIG_IGN);  // a failed test closes the read end early
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    writer_ = std::thread([this] {
      for (char c : data_) {
        if (write(write_fd_, &c, 1) != 1) break;
        int pending = 1;
        while (ioctl(read_fd_, FIONREAD, &pending) == 0 && pending > 0 && !stop_) std::this_thread::yield();
        if (stop_) break;
      }
      close(write_fd_);
    });
  }
  ~TricklePipe() {
    stop_ = true;
    close_read();
    writer_.join();
  }
  int fd() const { return read_fd_; }
  void close_read() {
    if (read_fd_ >= 0) {
      // Drain so the writer cannot block, then close.
      stop_ = true;
      close(read_fd_);
      read_fd_ = -1;
    }
  }

 private:
  std::string data_;
  int read_fd_ = -1;
  int write_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread writer_;
};

void ExpectSplitsInto(int fd, const std::vector<std::string>& frames, size_t max_zstd) {
  FrameReader reader(fd, "pipe", max_zstd);
  uint64_t offset = 0;
  for (size_t i = 0; i < frames.size(); ++i) {
    Frame f;
    auto got = reader.Next(&f);
    ASSERT_TRUE(got.ok()) << "frame " << i << ": " << got.status().message();
    ASSERT_TRUE(*got) << "stream ended before frame " << i;
    EXPECT_EQ(f.offset, offset) << i;
    std::string bytes(reinterpret_cast<const char*>(f.bytes.data()), f.bytes.size());
    ASSERT_EQ(bytes.size(), frames[i].size()) << "frame " << i;
    EXPECT_TRUE(bytes == frames[i]) << "frame " << i << " bytes differ";
    uint32_t magic = LoadLe32(reinterpret_cast<const uint8_t*>(frames[i].data()));
    EXPECT_EQ(f.magic, magic);
    bool skippable = (magic & kSkippableMagicMask) == kSkippableMagicBase;
    EXPECT_EQ(f.skippable, skippable) << i;
    if (skippable) {
      EXPECT_EQ(f.payload.size(), frames[i].size() - 8) << i;
      EXPECT_EQ(f.payload.data(), f.bytes.data() + 8);
    }
    offset += frames[i].size();
    EXPECT_EQ(reader.offset(), offset);
  }
  Frame f;
  auto end = reader.Next(&f);
  ASSERT_TRUE(end.ok()) << end.status().message();
  EXPECT_FALSE(*end) << "a frame after the last one";
}

TEST(FrameReaderTest, SplitsAStreamArrivingOneByteAtATime) {
  std::vector<std::string> frames = SampleFrames();
  std::string all;
  for (const auto& f : frames) all += f;
  // A small zstd window limit so frames are split while later bytes are still arriving.
  for (size_t max_zstd : {size_t{4096}, size_t{1} << 20}) {
    TricklePipe pipe(all);
    ExpectSplitsInto(pipe.fd(), frames, max_zstd);
  }
}

TEST(FrameReaderTest, SplitsARegularFile) {
  std::vector<std::string> frames = SampleFrames();
  std::string all;
  for (const auto& f : frames) all += f;
  ::hotsnap::testing::TempDir dir;
  ::hotsnap::testing::WriteFile(dir.File("img"), all);
  int fd = open(dir.File("img").c_str(), O_RDONLY);
  ExpectSplitsInto(fd, frames, 4096);
  close(fd);
}

TEST(FrameReaderTest, TruncationAnywhereIsAnIntegrityError) {
  std::vector<std::string> frames = SampleFrames();
  std::string all;
  std::vector<size_t> boundaries = {0};
  for (const auto& f : frames) {
    all += f;
    boundaries.push_back(all.size());
  }
  ::hotsnap::testing::TempDir dir;
  for (size_t cut = 1; cut < all.size(); ++cut) {
    bool at_boundary = std::find(boundaries.begin(), boundaries.end(), cut) != boundaries.end();
    if (cut % 7 != 0 && !at_boundary && cut + 1 != all.size()) continue;  // a sample, plus edges
    ::hotsnap::testing::WriteFile(dir.File("img"), all.substr(0, cut));
    int fd = open(dir.File("img").c_str(), O_RDONLY);
    FrameReader reader(fd, "img", 4096);
    Status error;
    size_t clean = 0;
    for (;;) {
      Frame f;
      auto got = reader.Next(&f);
      if (!got.ok()) {
        error = got.status();
        break;
      }
      if (!*got) break;
      ++clean;
    }
    close(fd);
    if (at_boundary) {
      EXPECT_TRUE(error.ok()) << "cut at frame boundary " << cut << ": " << error.message();
    } else {
      ASSERT_FALSE(error.ok()) << "a stream cut at " << cut << " read cleanly (" << clean << " frames)";
      EXPECT_EQ(error.code(), Code::kIntegrity) << cut;
    }
  }
}

TEST(FrameReaderTest, RejectsJunkAndOversizedSkippableFrames) {
  ::hotsnap::testing::TempDir dir;
  auto first_error = [&](const std::string& data, uint64_t max_skippable) {
    ::hotsnap::testing::WriteFile(dir.File("img"), data);
    int fd = open(dir.File("img").c_str(), O_RDONLY);
    FrameReader reader(fd, "img", 4096);
    reader.set_max_skippable_bytes(max_skippable);
    Status error;
    for (;;) {
      Frame f;
      auto got = reader.Next(&f);
      if (!got.ok()) {
        error = got.status();
        break;
      }
      if (!*got) break;
    }
    close(fd);
    return error;
  };
  EXPECT_EQ(first_error("not a frame at all", 1 << 20).code(), Code::kIntegrity);
  EXPECT_EQ(first_error(Skippable(kMetadataMagic, "x") + "junkjunk", 1 << 20).code(), Code::kIntegrity);
  // A header declaring 3.9 GiB: refused from the header alone.
  std::string huge;
  AppendLe32(&huge, kTrailerMagic);
  AppendLe32(&huge, 0xF0000000u);
  Status s = first_error(huge + "abc", 1 << 20);
  EXPECT_EQ(s.code(), Code::kIntegrity);
  EXPECT_EQ(first_error(Skippable(kTrailerMagic, std::string(200, 'x')), 100).code(), Code::kIntegrity);
  EXPECT_TRUE(first_error(Skippable(kTrailerMagic, std::string(100, 'x')), 100).ok());
  // A zstd frame larger than the limit.
  std::string big = StockZstdFrame(RandomBytes(10000, 9), 3);
  EXPECT_EQ(first_error(big, 1 << 20).code(), Code::kIntegrity);
}

}  // namespace
}  // namespace hotsnap
