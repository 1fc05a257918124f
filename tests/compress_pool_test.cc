// CompressPool under load: many small jobs through many workers, checked frame by frame.
// CI also runs these tests in a ThreadSanitizer build (scripts/test.sh, build-tsan), which is
// what they are for: the pool's hand-off of jobs between the caller and the workers.
#include "io/compress_pool.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "base/unique_fd.h"
#include "io/chunk_codec.h"

namespace hotsnap {
namespace {

constexpr uint32_t kChunk = kMinChunkBytes;  // 64 KiB: many jobs, quickly

struct Buffers {
  std::vector<uint8_t> input = std::vector<uint8_t>(kChunk);
  std::vector<uint8_t> output = std::vector<uint8_t>(MaxFrameBytes(kChunk));
  CompressJob job;
};

// Job `i`'s contents: every fourth is all zeros, the others vary with i.
void FillJob(uint64_t i, Buffers* b) {
  if (i % 4 == 0) {
    std::fill(b->input.begin(), b->input.end(), 0);
    return;
  }
  std::mt19937 rng(static_cast<uint32_t>(i));
  for (size_t k = 0; k < b->input.size(); ++k) {
    b->input[k] = static_cast<uint8_t>(i % 3 == 0 ? rng() : (k / 97 + i) & 0x7f);
  }
}

void ExpectFrameDecodesTo(const CompressJob& job, const std::vector<uint8_t>& input) {
  auto d = ChunkDecompressor::Create(WindowLogFor(kChunk));
  ASSERT_TRUE(d.ok());
  std::vector<uint8_t> back(kChunk);
  Status s = (*d)->Decompress(job.frame, back, kChunk);
  ASSERT_TRUE(s.ok()) << "job " << job.index << ": " << s.message();
  EXPECT_EQ(back, input) << "job " << job.index;
  EXPECT_EQ(job.hash, HashBytes(input.data(), input.size())) << "job " << job.index;
}

// Runs `total` jobs through `workers` threads with `slots` jobs in flight at most.
void RunJobs(unsigned workers, unsigned slots, uint64_t total) {
  auto zero = MakeZeroChunk(1, kChunk);
  ASSERT_TRUE(zero.ok());
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(wake.valid());
  CompressPool pool(workers, 1, kChunk, &zero.value(), wake.get());
  ASSERT_TRUE(pool.Start().ok());
  std::vector<Buffers> buffers(slots);
  std::vector<Buffers*> free;
  for (auto& b : buffers) free.push_back(&b);
  uint64_t submitted = 0, finished = 0, zeros = 0;
  std::vector<bool> seen(total, false);
  std::vector<CompressJob*> done;
  while (finished < total) {
    while (!free.empty() && submitted < total) {
      Buffers* b = free.back();
      free.pop_back();
      FillJob(submitted, b);
      b->job = CompressJob{};
      b->job.index = submitted++;
      b->job.owner = static_cast<int>(b - buffers.data());
      b->job.input = b->input;
      b->job.output = b->output;
      pool.Submit(&b->job);
    }
    done.clear();
    pool.TakeFinished(&done);
    if (done.empty()) {
      pollfd pfd{wake.get(), POLLIN, 0};
      ::poll(&pfd, 1, 1000);
      uint64_t count;
      ssize_t n = ::read(wake.get(), &count, sizeof(count));
      (void)n;
      continue;
    }
    for (CompressJob* job : done) {
      Buffers* b = &buffers[job->owner];
      ASSERT_EQ(job, &b->job);
      ASSERT_TRUE(job->status.ok()) << job->status.message();
      ASSERT_LT(job->index, total);
      EXPECT_FALSE(seen[job->index]) << "job " << job->index << " finished twice";
      seen[job->index] = true;
      if (job->zero) {
        ++zeros;
        EXPECT_EQ(job->index % 4, 0u) << "a non-zero chunk was taken for zeros";
      }
      ExpectFrameDecodesTo(*job, b->input);
      ++finished;
      free.push_back(b);
    }
  }
  EXPECT_EQ(zeros, (total + 3) / 4);
}

TEST(CompressPoolTest, ManySmallJobsThroughManyWorkers) { RunJobs(8, 24, 1500); }

TEST(CompressPoolTest, OneWorkerKeepsUpWithManySlots) { RunJobs(1, 16, 300); }

TEST(CompressPoolTest, MoreWorkersThanJobsInFlight) { RunJobs(6, 2, 400); }

TEST(CompressPoolTest, DestroyedWithJobsStillQueued) {
  // The pipeline's error path: the pool goes away while jobs wait; the workers must stop
  // and be joined without touching the (still alive) jobs again after the destructor.
  auto zero = MakeZeroChunk(1, kChunk);
  ASSERT_TRUE(zero.ok());
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  std::vector<Buffers> buffers(64);
  for (int round = 0; round < 10; ++round) {
    CompressPool pool(4, 1, kChunk, &zero.value(), wake.get());
    ASSERT_TRUE(pool.Start().ok());
    for (size_t i = 0; i < buffers.size(); ++i) {
      FillJob(i + 1, &buffers[i]);
      buffers[i].job = CompressJob{};
      buffers[i].job.index = i;
      buffers[i].job.input = buffers[i].input;
      buffers[i].job.output = buffers[i].output;
      pool.Submit(&buffers[i].job);
    }
  }
}

}  // namespace
}  // namespace hotsnap
