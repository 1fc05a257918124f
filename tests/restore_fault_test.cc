// Faults on the restore write path: the real write queue (io_uring) wrapped to fail the way a
// failing disk or a full filesystem does, and a real full filesystem under the binary. Each
// fault must give a target error (exit 4) naming the target and the byte offset, and a
// regular-file target must leave nothing that looks like a complete restore: no file under
// the target's name, no temporary file.
//
// The seam wraps the queue MakeBlockWriter builds (RestoreOptions::wrap_write_queue), so the
// writes really go through io_uring and the faults arrive as rewritten completions: what the
// writer's completion handling (short-write continuation, -EAGAIN, errors) sees from the
// kernel. strace fault injection cannot reach io_uring writes, which are not system calls.
#include <unistd.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "agent/image_jobs.h"
#include "io/block_writer.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using ::hotsnap::testing::CommandResult;
using ::hotsnap::testing::FillMixedChunks;
using ::hotsnap::testing::Hotsnap;
using ::hotsnap::testing::InCi;
using ::hotsnap::testing::ListDir;
using ::hotsnap::testing::LoopDevice;
using ::hotsnap::testing::PathExists;
using ::hotsnap::testing::Quote;
using ::hotsnap::testing::RunOk;
using ::hotsnap::testing::TempDir;

CommandResult Shell(const std::string& command) { return ::hotsnap::testing::Run(command); }

constexpr uint64_t kMiB = 1024 * 1024;

struct WriteFaults {
  int64_t eio_at = -1;        // a write covering this target byte offset fails with -EIO
  int64_t space_bytes = -1;   // the target takes bytes below this offset only: a write across it
                              // is cut short there, one starting at or past it gets -ENOSPC
  bool short_writes = false;  // every write of 8 KiB or more does about half
  bool eagain = false;        // every offset's first write completes with -EAGAIN
};

// Forwards to the real queue and rewrites its completions.
class FaultyWriteQueue : public WriteQueue {
 public:
  FaultyWriteQueue(std::unique_ptr<WriteQueue> real, WriteFaults faults, int* injected)
      : real_(std::move(real)), faults_(faults), injected_(injected) {}
  const char* name() const override { return real_->name(); }
  unsigned in_flight() const override { return real_->in_flight(); }
  Status Queue(const WriteRequest& request) override {
    requests_[request.tag] = request;
    return real_->Queue(request);
  }
  Status Reap(std::vector<WriteCompletion>* out, bool wait) override {
    size_t before = out->size();
    HOTSNAP_RETURN_IF_ERROR(real_->Reap(out, wait));
    for (size_t i = before; i < out->size(); ++i) Rewrite(&(*out)[i]);
    return Status::Ok();
  }

 private:
  void Rewrite(WriteCompletion* c) {
    const WriteRequest& w = requests_[c->tag];
    if (c->result <= 0) return;
    if (faults_.eagain && again_.insert(w.offset_bytes).second) {
      c->result = -EAGAIN;
      ++*injected_;
      return;
    }
    if (faults_.eio_at >= 0 && uint64_t(faults_.eio_at) >= w.offset_bytes &&
        uint64_t(faults_.eio_at) < w.offset_bytes + w.length_bytes) {
      c->result = -EIO;
      ++*injected_;
      return;
    }
    if (faults_.space_bytes >= 0 && w.offset_bytes + c->result > uint64_t(faults_.space_bytes)) {
      c->result = w.offset_bytes >= uint64_t(faults_.space_bytes)
                      ? -ENOSPC
                      : static_cast<int32_t>(faults_.space_bytes - w.offset_bytes);
      ++*injected_;
      return;
    }
    // Half, kept a multiple of 4 KiB so that the rest stays O_DIRECT-aligned.
    if (faults_.short_writes && c->result >= 8192) {
      c->result = c->result / 2 / 4096 * 4096;
      ++*injected_;
    }
  }

  std::unique_ptr<WriteQueue> real_;
  WriteFaults faults_;
  int* injected_;
  std::map<uint64_t, WriteRequest> requests_;  // by tag
  std::set<uint64_t> again_;                   // offsets already failed with -EAGAIN
};

class RestoreFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Chunks (4 MiB): 0 random, 1 text, 2 zeros, 3 1 MiB random, 4 zeros, 5 0x5A,
    // 6 (2 MiB + 4 KiB) random. A file target skips the zero chunks.
    source_ = dir_.File("disk.raw");
    FillMixedChunks(source_, 26 * kMiB + 4096);
    image_ = dir_.File("disk.zst");
    RunOk(Hotsnap("backup " + Quote(source_) + " -o " + Quote(image_) + " --all-blocks -q"));
    target_ = dir_.File("restored.raw");
  }

  // Restores image_ onto `target` through the faults; returns the job's status. `tweak`, if
  // set, adjusts the options (flush seam, flush interval); `report`, if set, gets the report.
  Status Restore(const WriteFaults& faults, const std::string& target,
                 const std::function<void(RestoreOptions*)>& tweak = nullptr,
                 RestoreReport* report_out = nullptr) {
    RestoreOptions options;
    options.image = image_;
    options.target = target;
    options.wrap_write_queue =
        [&](std::unique_ptr<WriteQueue> real) -> std::unique_ptr<WriteQueue> {
      writer_name_ = real->name();
      return std::make_unique<FaultyWriteQueue>(std::move(real), faults, &injected_);
    };
    if (tweak) tweak(&options);
    auto report = RunRestore(options);
    if (report.ok() && report_out != nullptr) *report_out = report.value();
    return report.ok() ? Status::Ok() : report.status();
  }

  void ExpectIoUringWasWrapped() {
    if (writer_name_ != "io_uring") {
      if (InCi())
        ADD_FAILURE() << "io_uring unavailable in CI; the io_uring path went untested";
      else
        std::printf("note: io_uring unavailable here (writer %s)\n", writer_name_.c_str());
    }
  }

  // Nothing under the target's name, no temporary file beside it.
  void ExpectNoRestoredFile() {
    EXPECT_FALSE(PathExists(target_)) << "a failed restore left a file under the target's name";
    for (const std::string& n : ListDir(dir_.path())) {
      EXPECT_EQ(n.find(".hotsnap-"), std::string::npos) << "temporary file left: " << n;
    }
  }

  void ExpectTargetError(const Status& s, const std::string& target, uint64_t offset,
                         const std::string& error) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), Code::kTarget) << s.message();  // exit 4
    EXPECT_NE(s.message().find("writing " + target + " at byte offset " + std::to_string(offset)),
              std::string::npos)
        << s.message();
    EXPECT_NE(s.message().find(error), std::string::npos) << s.message();
  }

  TempDir dir_;
  std::string source_;
  std::string image_;
  std::string target_;
  std::string writer_name_;
  int injected_ = 0;
};

TEST_F(RestoreFaultTest, NoFaultsRestoresByteIdentical) {
  ASSERT_TRUE(Restore({}, target_).ok());
  ExpectIoUringWasWrapped();
  EXPECT_EQ(injected_, 0);
  EXPECT_EQ(Shell("cmp " + Quote(source_) + " " + Quote(target_)).exit_code, 0);
}

TEST_F(RestoreFaultTest, EioAtAnOffsetNamesTheTargetAndOffsetAndLeavesNoFile) {
  WriteFaults f;
  f.eio_at = 13 * kMiB + 4096;  // inside chunk 3, whose write starts at byte 12582912
  Status s = Restore(f, target_);
  ExpectIoUringWasWrapped();
  EXPECT_GT(injected_, 0);
  ExpectTargetError(s, target_, 12 * kMiB, "Input/output error");
  ExpectNoRestoredFile();
}

// The last chunk's write may still be in flight when every chunk has been queued: its error
// must surface in Finish(), before the file is published.
TEST_F(RestoreFaultTest, EioOnTheLastWriteIsCaughtBeforePublishing) {
  WriteFaults f;
  f.eio_at = 26 * kMiB;  // inside the last chunk (24 MiB .. 26 MiB + 4 KiB)
  Status s = Restore(f, target_);
  EXPECT_EQ(injected_, 1);
  ExpectTargetError(s, target_, 24 * kMiB, "Input/output error");
  ExpectNoRestoredFile();
}

TEST_F(RestoreFaultTest, EnospcNamesTheTargetAndWhereSpaceRanOutAndLeavesNoFile) {
  for (uint64_t space : {uint64_t{0}, 14 * kMiB, 24 * kMiB + 8192}) {
    SCOPED_TRACE("the target takes " + std::to_string(space) + " bytes");
    WriteFaults f;
    f.space_bytes = static_cast<int64_t>(space);
    Status s = Restore(f, target_);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), Code::kTarget) << s.message();  // exit 4
    EXPECT_NE(s.message().find("No space left on device"), std::string::npos) << s.message();
    // The write across the limit is cut short there and its continuation fails; a later
    // chunk's write, in flight at the same time, may fail first at its own start. The last
    // chunk is the only write past 24 MiB + 8 KiB.
    std::string prefix = "writing " + target_ + " at byte offset ";
    size_t at = s.message().find(prefix);
    ASSERT_NE(at, std::string::npos) << s.message();
    uint64_t offset = std::stoull(s.message().substr(at + prefix.size()));
    if (space == 24 * kMiB + 8192) {
      EXPECT_EQ(offset, space);
    } else {
      EXPECT_TRUE(offset == space || (offset > space && offset % (4 * kMiB) == 0)) << offset;
    }
    ExpectNoRestoredFile();
  }
}

TEST_F(RestoreFaultTest, ShortWritesAndEagainAreContinued) {
  WriteFaults f;
  f.short_writes = true;
  f.eagain = true;
  ASSERT_TRUE(Restore(f, target_).ok());
  ExpectIoUringWasWrapped();
  EXPECT_GT(injected_, 10);
  EXPECT_EQ(Shell("cmp " + Quote(source_) + " " + Quote(target_)).exit_code, 0);
}

// A device target (O_DIRECT, every chunk written, zero ones too): the error also says the
// device now holds a partial image.
TEST_F(RestoreFaultTest, EioOnADeviceTargetSaysItHoldsAPartialImage) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  LoopDevice loop(dir_.path(), 32 * kMiB, "target.img");
  WriteFaults f;
  f.eio_at = 9 * kMiB + 4096;  // chunk 2, zeros: written to a device
  Status s = Restore(f, loop.device());
  ExpectIoUringWasWrapped();
  ExpectTargetError(s, loop.device(), 8 * kMiB, "Input/output error");
  EXPECT_NE(s.message().find("which now holds a partial image"), std::string::npos) << s.message();
}

// The target is flushed in the background while chunks are still being written (so the
// device writes back while the restore decodes), through the real fdatasync, and once more
// at the end; with the interval 0, only at the end.
TEST_F(RestoreFaultTest, TheTargetIsFlushedWhileWritingAndAtTheEnd) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  LoopDevice loop(dir_.path(), 32 * kMiB, "target.img");
  for (uint64_t every : {uint64_t{0}, 4 * kMiB}) {
    SCOPED_TRACE("flush every " + std::to_string(every) + " bytes");
    int calls = 0;
    RestoreReport report;
    Status s = Restore(
        {}, loop.device(),
        [&](RestoreOptions* o) {
          o->flush_every_bytes = every;
          o->flush = [&calls](int fd) {
            ++calls;
            return FlushTarget(fd);
          };
        },
        &report);
    ASSERT_TRUE(s.ok()) << s.message();
    if (every == 0) {
      EXPECT_EQ(report.background_flushes, 0u);
      EXPECT_EQ(calls, 1);  // the final fsync
    } else {
      // The first request always starts a flush (none is running); 26 MiB of writes in 4 MiB
      // chunks make at least one request.
      EXPECT_GE(report.background_flushes, 1u);
      EXPECT_EQ(calls, static_cast<int>(report.background_flushes) + 1);
    }
    EXPECT_EQ(Shell("cmp -n " + std::to_string(26 * kMiB + 4096) + " " + Quote(source_) + " " +
                    Quote(loop.device()))
                  .exit_code,
              0);
  }
}

// A flush that fails means written bytes may never reach the device: the restore stops with
// a target error naming the target and how far the flush reached, and publishes nothing.
TEST_F(RestoreFaultTest, AFailedBackgroundFlushStopsTheRestoreAndLeavesNoFile) {
  int calls = 0;
  Status s = Restore({}, target_, [&](RestoreOptions* o) {
    o->flush_every_bytes = 4 * kMiB;
    o->flush = [&calls](int fd) {
      ++calls;
      int real = FlushTarget(fd);  // the real flush runs; its success is then lost
      return real != 0 ? real : EIO;
    };
  });
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kTarget) << s.message();  // exit 4
  EXPECT_NE(s.message().find("flushing " + target_ + " after the first "), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("Input/output error"), std::string::npos) << s.message();
  EXPECT_EQ(calls, 1);  // nothing flushes or syncs after the failure
  ExpectNoRestoredFile();
}

TEST_F(RestoreFaultTest, AFailedFinalFsyncNamesTheTargetAndLeavesNoFile) {
  Status s = Restore({}, target_, [&](RestoreOptions* o) {
    o->flush_every_bytes = 0;
    o->flush = [](int fd) {
      int real = FlushTarget(fd);
      return real != 0 ? real : EIO;
    };
  });
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kTarget) << s.message();
  EXPECT_NE(s.message().find("fsync " + target_), std::string::npos) << s.message();
  ExpectNoRestoredFile();
}

// A real full filesystem under the binary: a 2 MiB tmpfs takes part of the first chunk.
TEST(RestoreFullFilesystemTest, Exits4NamingTheTargetAndLeavesNothing) {
  HOTSNAP_REQUIRE_PRIVILEGED();
  TempDir dir;
  std::string source = dir.File("disk.raw");
  FillMixedChunks(source, 16 * kMiB);
  std::string image = dir.File("disk.zst");
  RunOk(Hotsnap("backup " + Quote(source) + " -o " + Quote(image) + " --all-blocks -q"));
  std::string small = dir.File("small");
  RunOk("mkdir " + Quote(small) + " && mount -t tmpfs -o size=2m tmpfs " + Quote(small));
  std::string target = small + "/restored.raw";
  CommandResult r = Shell(Hotsnap("restore " + Quote(image) + " " + Quote(target) + " -q"));
  std::vector<std::string> left = ListDir(small);
  Shell("umount " + Quote(small));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("writing " + target + " at byte offset "), std::string::npos)
      << "the error must name the target and the offset: " << r.err;
  EXPECT_TRUE(left.empty()) << "left behind on the full filesystem: " << left.front();
}

}  // namespace
}  // namespace hotsnap
