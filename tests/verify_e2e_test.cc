// End-to-end tests of `hotsnap verify`: an intact image passes from a file and from stdin;
// one flipped byte in any section (metadata, chunk frames, zero-chunk frames, trailer, seek
// table and its footer) and truncation at any kind of point fail with exit 5, from a file
// and from stdin. Frame boundaries come from an independent parser (stock libzstd).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <set>
#include <string>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::CommandResult;
using ::hotsnap::testing::FillMixedChunks;
using ::hotsnap::testing::Hotsnap;
using ::hotsnap::testing::ImageFrameSpan;
using ::hotsnap::testing::LoopDevice;
using ::hotsnap::testing::Quote;
using ::hotsnap::testing::ReadAll;
using ::hotsnap::testing::SplitImageFrames;
using ::hotsnap::testing::TempDir;
using ::hotsnap::testing::WriteFile;

CommandResult Shell(const std::string& command) { return ::hotsnap::testing::Run(command); }

// A prefix for a simple command that bounds what it may allocate to `kib` KiB: `ulimit -v`.
// AddressSanitizer's shadow memory needs terabytes of address space, so under ASan the bound
// is put on each allocation instead (max_allocation_size_mb: a larger request is reported and
// fails the command).
std::string MemoryLimit(uint64_t kib) {
#if defined(__SANITIZE_ADDRESS__)
  return "ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}max_allocation_size_mb=" +
         std::to_string(kib / 1024) + "\" ";
#else
  return "ulimit -v " + std::to_string(kib) + "; ";
#endif
}

// Exit status of `hotsnap verify IMAGE` (or, with `via_stdin`, of `hotsnap verify -` fed the
// image's bytes through a pipe), spawned directly: the flip loop runs hundreds of these, and a
// shell per run would dominate its time.
int VerifyExit(const std::string& image, bool via_stdin) {
  std::string data = via_stdin ? ReadAll(image) : "";
  int fds[2] = {-1, -1};
  if (via_stdin && pipe(fds) != 0) return -1;
  std::string binary = ::hotsnap::testing::HotsnapBinary();
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(via_stdin ? fds[0] : null, 0);
    dup2(null, 1);
    dup2(null, 2);
    if (via_stdin) {
      close(fds[0]);
      close(fds[1]);
    }
    const char* path = via_stdin ? "-" : image.c_str();
    execl(binary.c_str(), binary.c_str(), "verify", "--no-progress", path, static_cast<char*>(nullptr));
    _exit(127);
  }
  if (via_stdin) {
    close(fds[0]);
    auto old = std::signal(SIGPIPE, SIG_IGN);  // verify may stop reading early
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = write(fds[1], data.data() + done, data.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    close(fds[1]);
    std::signal(SIGPIPE, old);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kSize = 24 * kMiB;  // six 4 MiB chunks; 2 and 4 are zero
constexpr size_t kChunks = 6;

class VerifyE2eTest : public ::testing::Test {
 protected:
  // Backs up a mixed 24 MiB loop device (privileged) into image_.
  void Prepare() {
    LoopDevice source(dir_.path(), kSize, "source.img");
    FillMixedChunks(source.device(), kSize);
    image_ = dir_.File("img.zst");
    CommandResult b = Shell(Hotsnap("backup " + Quote(source.device()) + " -o " + Quote(image_)));
    ASSERT_EQ(b.exit_code, 0) << b.err;
    ASSERT_EQ(Shell("zstd -q -dc " + Quote(image_) + " | cmp - " + Quote(source.device())).exit_code, 0);
    original_ = ReadAll(image_);
    frames_ = SplitImageFrames(original_);
    // Plain layout: metadata, one zstd frame per chunk, report, trailer, seek table.
    ASSERT_EQ(frames_.size(), 1 + kChunks + 3);
    ASSERT_EQ(frames_.front().magic, 0x184D2A50u);
    for (size_t i = 1; i <= kChunks; ++i) ASSERT_EQ(frames_[i].magic, 0xFD2FB528u) << i;
    ASSERT_EQ(frames_[kChunks + 1].magic, 0x184D2A53u);
    ASSERT_EQ(Trailer().magic, 0x184D2A51u);
    ASSERT_EQ(frames_.back().magic, 0x184D2A5Eu);
    // The two zero chunks compress to the same small frame.
    ASSERT_EQ(original_.substr(frames_[3].offset, frames_[3].bytes),
              original_.substr(frames_[5].offset, frames_[5].bytes));
  }
  std::string VerifyFile(const std::string& path) { return Hotsnap("verify " + Quote(path)); }
  std::string VerifyStdin(const std::string& path) {
    return "cat " + Quote(path) + " | " + Hotsnap("verify -");
  }
  const ImageFrameSpan& Trailer() const { return frames_[frames_.size() - 2]; }
  // Offsets to corrupt, covering every section.
  std::vector<uint64_t> FlipOffsets() const {
    std::set<uint64_t> at;
    auto all = [&](const ImageFrameSpan& f, uint64_t from, uint64_t to) {
      for (uint64_t i = from; i < to && i < f.bytes; ++i) at.insert(f.offset + i);
    };
    const ImageFrameSpan& meta = frames_.front();
    all(meta, 0, 8 + 24);                          // header, tag, version, start of JSON
    for (uint64_t i = 32; i < meta.bytes; i += 37) at.insert(meta.offset + i);
    all(meta, meta.bytes - 16, meta.bytes);        // its hash
    for (size_t c = 0; c < kChunks; ++c) {
      const ImageFrameSpan& f = frames_[1 + c];
      if (c == 2) {
        all(f, 0, f.bytes);                        // a zero-chunk frame: every byte
      } else {
        all(f, 0, 12);                             // frame header and first block header
        all(f, f.bytes - 6, f.bytes);              // end of last block, content checksum
        at.insert(f.offset + f.bytes / 2);
      }
    }
    const ImageFrameSpan& report = frames_[kChunks + 1];
    all(report, 0, 8 + 16);                        // header, tag, version, start of JSON
    for (uint64_t i = 24; i < report.bytes; i += 13) at.insert(report.offset + i);
    const ImageFrameSpan& trailer = Trailer();
    all(trailer, 0, 8 + 40);                       // header, tag, version, geometry, count
    for (uint64_t i = 48; i < trailer.bytes; i += 9) at.insert(trailer.offset + i);
    all(trailer, trailer.bytes - 32, trailer.bytes);  // image hash and self-hash
    all(frames_.back(), 0, frames_.back().bytes);  // seek table including the 9-byte footer
    return {at.begin(), at.end()};
  }

  TempDir dir_;
  std::string image_;
  std::string original_;
  std::vector<ImageFrameSpan> frames_;
};

TEST_F(VerifyE2eTest, IntactImagePassesFromFileAndStdin) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NO_FATAL_FAILURE(Prepare());
  CommandResult r = Shell(VerifyFile(image_));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Shell(VerifyStdin(image_));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(Shell("zstd -q -t " + Quote(image_)).exit_code, 0);
}

TEST_F(VerifyE2eTest, EveryFlippedByteFailsWithExit5) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NO_FATAL_FAILURE(Prepare());
  std::vector<uint64_t> offsets = FlipOffsets();
  ASSERT_GT(offsets.size(), 250u);
  std::string bad = dir_.File("bad.zst");
  WriteFile(bad, original_);
  int failures = 0;
  for (size_t n = 0; n < offsets.size(); ++n) {
    uint64_t off = offsets[n];
    for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
      if (mask == 0x80 && n % 8 != 0) continue;  // the high bit on a sample
      ::hotsnap::testing::FlipByte(bad, off, mask);
      int code = VerifyExit(bad, false);
      int stdin_code = (n % 12 == 0 && mask == 0x01) ? VerifyExit(bad, true) : 5;
      if (code != 5 || stdin_code != 5) {
        CommandResult r = Shell(VerifyFile(bad));
        ADD_FAILURE() << "flip 0x" << std::hex << int(mask) << std::dec << " at offset " << off
                      << ": verify exited " << code << " (file), " << stdin_code << " (stdin)\n"
                      << r.out << r.err;
        if (++failures > 20) return;
      }
      ::hotsnap::testing::FlipByte(bad, off, mask);  // back to the original
    }
  }
  EXPECT_EQ(ReadAll(bad), original_);
  EXPECT_EQ(VerifyExit(bad, false), 0) << "the test harness broke the image";
}

TEST_F(VerifyE2eTest, TruncationAnywhereFailsWithExit5) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NO_FATAL_FAILURE(Prepare());
  const uint64_t size = original_.size();
  const ImageFrameSpan& meta = frames_.front();
  const ImageFrameSpan& chunk0 = frames_[1];
  const ImageFrameSpan& zero = frames_[3];
  const ImageFrameSpan& report = frames_[kChunks + 1];
  const ImageFrameSpan& trailer = Trailer();
  const ImageFrameSpan& table = frames_.back();
  std::vector<uint64_t> cuts = {
      0, 1, 4, 7, 8, 9,                          // inside the metadata header
      meta.bytes / 2, meta.bytes - 1,            // inside the metadata payload
      meta.bytes,                                // frame boundary: metadata alone
      meta.bytes + 3, chunk0.offset + chunk0.bytes / 2, chunk0.offset + chunk0.bytes - 1,
      chunk0.offset + chunk0.bytes,              // boundary after chunk 0
      zero.offset + zero.bytes / 2, zero.offset + zero.bytes,
      report.offset,                             // all chunks, nothing after
      report.offset + report.bytes / 2,
      trailer.offset,                            // no trailer
      trailer.offset + 8, trailer.offset + trailer.bytes / 2, trailer.offset + trailer.bytes - 1,
      table.offset,                              // no seek table
      table.offset + 8, table.offset + table.bytes / 2,
      size - 9,                                  // footer removed exactly
      size - 5, size - 1,                        // last byte removed
  };
  std::string cut_file = dir_.File("cut.zst");
  for (uint64_t cut : cuts) {
    ASSERT_LT(cut, size);
    WriteFile(cut_file, original_.substr(0, cut));
    EXPECT_EQ(VerifyExit(cut_file, false), 5) << "file cut to " << cut << " of " << size << " bytes: "
                                              << Shell(VerifyFile(cut_file)).err;
    EXPECT_EQ(VerifyExit(cut_file, true), 5) << "stdin cut to " << cut << " of " << size << " bytes: "
                                             << Shell(VerifyStdin(cut_file)).err;
  }
}

TEST_F(VerifyE2eTest, TrailingBytesAndSpliceFailWithExit5) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NO_FATAL_FAILURE(Prepare());
  std::string bad = dir_.File("bad.zst");
  struct Case {
    std::string data;
    const char* what;
  } cases[] = {
      {original_ + std::string(1, '\0'), "one zero byte appended"},
      {original_ + original_, "the image twice"},
      {original_.substr(0, frames_[2].offset) + original_.substr(frames_[3].offset), "chunk 1 removed"},
      {original_.substr(0, frames_[3].offset) +
           original_.substr(frames_[1].offset, frames_[1].bytes) + original_.substr(frames_[4].offset),
       "chunk 2 replaced by chunk 0's frame"},
  };
  for (const Case& c : cases) {
    WriteFile(bad, c.data);
    EXPECT_EQ(Shell(VerifyFile(bad)).exit_code, 5) << c.what;
    EXPECT_EQ(Shell(VerifyStdin(bad)).exit_code, 5) << c.what << " (stdin)";
  }
}

TEST_F(VerifyE2eTest, AbsurdSeekTableFooterFailsFast) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  ASSERT_NO_FATAL_FAILURE(Prepare());
  std::string bad = dir_.File("bad.zst");
  for (uint32_t count : {(1u << 27) + 1, 1u << 27, 0xFFFFFFFFu}) {
    std::string data = original_;
    for (int i = 0; i < 4; ++i) data[data.size() - 9 + i] = static_cast<char>(count >> (8 * i));
    WriteFile(bad, data);
    // 512 MiB of address space is far more than a 7 MiB image needs, far less than 2^27 entries.
    CommandResult r = Shell(MemoryLimit(524288) + VerifyFile(bad));
    EXPECT_EQ(r.exit_code, 5) << count << ": " << r.err;
  }
}

TEST(VerifyE2eBasicsTest, NotAnImageFailsWithExit5) {
  TempDir dir;
  WriteFile(dir.File("text"), std::string(100000, 'x'));
  EXPECT_EQ(Shell(Hotsnap("verify " + Quote(dir.File("text")))).exit_code, 5);
  EXPECT_EQ(Shell("cat " + Quote(dir.File("text")) + " | " + Hotsnap("verify -")).exit_code, 5);
  // A stock zstd file is not a hotsnap image.
  ASSERT_EQ(Shell("seq 1 100000 | zstd -q > " + Quote(dir.File("plain.zst"))).exit_code, 0);
  EXPECT_EQ(Shell(Hotsnap("verify " + Quote(dir.File("plain.zst")))).exit_code, 5);
  EXPECT_EQ(Shell("cat " + Quote(dir.File("plain.zst")) + " | " + Hotsnap("verify -")).exit_code, 5);
}

}  // namespace
}  // namespace hotsnap
