// Tests for ChunkPipeline (agent/backup_pipeline.h), the pipeline a tracked backup keeps
// across its rounds: a second run on warm buffers gives the same frames as a first, the
// frames hold the source's bytes (hashed here straight from the file), and a pipeline
// whose run failed, or asked for another level, refuses to run.
#include <fcntl.h>
#include <unistd.h>

#include <map>
#include <string>
#include <vector>

#include "agent/backup_pipeline.h"
#include "io/chunk_codec.h"
#include "io/image_format.h"
#include "io/source_device.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::FillMixedChunks;
using ::hotsnap::testing::TempDir;

constexpr uint64_t kMiB = 1024 * 1024;

struct Frame {
  std::vector<uint8_t> bytes;
  uint32_t length = 0;
  Hash128 hash;
};

class ChunkPipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.File("disk.raw");
    FillMixedChunks(path_, 26 * kMiB + 4096);  // 7 chunks of 4 MiB, the last one short
    auto source = OpenSource(path_);
    ASSERT_TRUE(source.ok()) << source.status().message();
    source_ = std::move(source.value());
    meta_.source_path = path_;
    meta_.device_bytes = source_.size_bytes;
    meta_.logical_sector_bytes = source_.logical_sector_bytes;
    options_.workers = 2;
    options_.queue_depth = 2;
  }

  // Runs `pipeline` over `chunks`, collecting the frames by chunk index.
  Status Run(ChunkPipeline* pipeline, const std::vector<uint64_t>& chunks,
             std::map<uint64_t, Frame>* out) {
    PipelineOptions p = options_;
    p.chunks = chunks;
    ChunkEmitter emit = [out](uint64_t index, std::span<const uint8_t> frame, uint32_t length,
                              const Hash128& hash) {
      (*out)[index] = Frame{std::vector<uint8_t>(frame.begin(), frame.end()), length, hash};
      return Status::Ok();
    };
    auto stats = pipeline->Run(p, emit);
    return stats.ok() ? Status::Ok() : stats.status();
  }

  // XXH3-128 of chunk `index` read straight from the file.
  Hash128 FileChunkHash(uint64_t index) {
    std::vector<uint8_t> bytes(meta_.ChunkLength(index));
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(
        ::pread(fd, bytes.data(), bytes.size(), static_cast<off_t>(index * meta_.chunk_bytes)),
        static_cast<ssize_t>(bytes.size()));
    ::close(fd);
    return HashBytes(bytes.data(), bytes.size());
  }

  TempDir dir_;
  std::string path_;
  SourceDevice source_;
  ImageMetadata meta_;
  PipelineOptions options_;
};

TEST_F(ChunkPipelineTest, ASecondRunOnWarmBuffersGivesTheSameFrames) {
  auto pipeline = ChunkPipeline::Create(source_, meta_, options_);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().message();
  std::map<uint64_t, Frame> first, second;
  ASSERT_TRUE(Run(pipeline->get(), {0, 1, 2, 3, 4, 5, 6}, &first).ok());
  ASSERT_TRUE(Run(pipeline->get(), {6, 2, 5}, &second).ok());
  ASSERT_EQ(first.size(), 7u);
  ASSERT_EQ(second.size(), 3u);
  auto decompressor = ChunkDecompressor::Create(WindowLogFor(meta_.chunk_bytes));
  ASSERT_TRUE(decompressor.ok());
  for (const auto& [index, frame] : second) {
    SCOPED_TRACE("chunk " + std::to_string(index));
    EXPECT_EQ(frame.bytes, first[index].bytes);
    EXPECT_EQ(frame.length, meta_.ChunkLength(index));
    EXPECT_TRUE(frame.hash == FileChunkHash(index));
    std::vector<uint8_t> out(frame.length);
    ASSERT_TRUE((*decompressor)->Decompress(frame.bytes, out, frame.length).ok());
    EXPECT_TRUE(HashBytes(out.data(), out.size()) == FileChunkHash(index));
  }
  for (const auto& [index, frame] : first) EXPECT_TRUE(frame.hash == FileChunkHash(index)) << index;
}

TEST_F(ChunkPipelineTest, AFailedRunLeavesAPipelineThatRefusesToRunAgain) {
  auto pipeline = ChunkPipeline::Create(source_, meta_, options_);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().message();
  PipelineOptions p = options_;
  int emitted = 0;
  ChunkEmitter failing = [&emitted](uint64_t, std::span<const uint8_t>, uint32_t, const Hash128&) {
    return ++emitted == 2 ? Status(Code::kTarget, "injected: output full") : Status::Ok();
  };
  auto failed = (*pipeline)->Run(p, failing);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), Code::kTarget);
  std::map<uint64_t, Frame> frames;
  Status again = Run(pipeline->get(), {0}, &frames);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.code(), Code::kInternal);
  EXPECT_NE(again.message().find("failed run"), std::string::npos) << again.message();
  EXPECT_TRUE(frames.empty());
}

TEST_F(ChunkPipelineTest, ARunWithAnotherLevelIsRefused) {
  auto pipeline = ChunkPipeline::Create(source_, meta_, options_);
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().message();
  options_.level = 9;
  std::map<uint64_t, Frame> frames;
  Status s = Run(pipeline->get(), {0}, &frames);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kInternal);
  EXPECT_TRUE(frames.empty());
}

}  // namespace
}  // namespace hotsnap
