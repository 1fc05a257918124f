#include "io/block_writer.h"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <string_view>
#include <vector>

#include "base/interrupt.h"
#include "io/aligned_buffer.h"
#include "io/uring_queue.h"

namespace hotsnap {
namespace {

// ---- Write queues: the kernel's side --------------------------------------------------------

class UringWriteQueue : public WriteQueue {
 public:
  explicit UringWriteQueue(int fd) : fd_(fd) {}

  // Returns 0 or -errno from the ring's setup.
  int Init(unsigned depth) { return queue_.Init(depth); }

  const char* name() const override { return "io_uring"; }
  unsigned in_flight() const override { return queue_.in_flight(); }

  Status Queue(const WriteRequest& request) override {
    queue_.Push(request);
    return Status::Ok();
  }

  Status Reap(std::vector<WriteCompletion>* out, bool wait) override {
    return queue_.Reap(out, wait, [this](io_uring_sqe* sqe, const WriteRequest& w) {
      io_uring_prep_write(sqe, fd_, w.data, w.length_bytes, w.offset_bytes);
    });
  }

 private:
  int fd_;
  UringQueue<WriteRequest, WriteCompletion> queue_;  // waits for in-flight writes when destroyed
};

// Writes at once; the completions wait for the next Reap().
class PwriteWriteQueue : public WriteQueue {
 public:
  explicit PwriteWriteQueue(int fd) : fd_(fd) {}
  const char* name() const override { return "pwrite"; }
  unsigned in_flight() const override { return static_cast<unsigned>(done_.size()); }

  Status Queue(const WriteRequest& w) override {
    ssize_t n = ::pwrite(fd_, w.data, w.length_bytes, static_cast<off_t>(w.offset_bytes));
    done_.push_back(WriteCompletion{w.tag, n < 0 ? -errno : static_cast<int32_t>(n)});
    return Status::Ok();
  }
  Status Reap(std::vector<WriteCompletion>* out, bool wait) override {
    out->insert(out->end(), done_.begin(), done_.end());
    done_.clear();
    return Status::Ok();
  }

 private:
  int fd_;
  std::vector<WriteCompletion> done_;
};

// ---- The chunk writer -----------------------------------------------------------------------

class QueuedBlockWriter : public BlockWriter {
 public:
  QueuedBlockWriter(int fd, std::string target, uint64_t flush_every_bytes, TargetFlush flush)
      : fd_(fd),
        target_(std::move(target)),
        flush_every_bytes_(flush_every_bytes),
        flush_(flush ? std::move(flush) : FlushTarget),
        flusher_(fd, target_, flush_) {}
  // The queue goes first: it waits for writes still in flight from the buffers.
  ~QueuedBlockWriter() override { queue_.reset(); }

  Status Init(uint32_t chunk_bytes, unsigned buffers, std::unique_ptr<WriteQueue> queue) {
    auto arena = AlignedBuffer::Allocate(size_t{chunk_bytes} * buffers);
    if (!arena.ok()) return arena.status();
    arena_ = std::move(arena.value());
    slots_.resize(buffers);
    for (unsigned i = 0; i < buffers; ++i) {
      slots_[i].buffer = arena_.span().subspan(size_t{i} * chunk_bytes, chunk_bytes);
    }
    queue_ = std::move(queue);
    return Status::Ok();
  }

  const char* name() const override { return queue_->name(); }

  Result<std::span<uint8_t>> Acquire() override {
    for (;;) {
      HOTSNAP_RETURN_IF_ERROR(failed_);
      for (Slot& s : slots_) {
        if (!s.busy) return s.buffer;
      }
      if (queue_->in_flight() == 0) {
        return Status(Code::kInternal,
                      "every write buffer for " + target_ + " is busy but no write is in flight");
      }
      HOTSNAP_RETURN_IF_ERROR(Collect(true));
      if (Interrupted()) return Status(Code::kInterrupted, "interrupted while writing " + target_);
    }
  }

  Status Write(std::span<uint8_t> data, uint64_t offset_bytes) override {
    HOTSNAP_RETURN_IF_ERROR(failed_);
    size_t slot = static_cast<size_t>(data.data() - arena_.data()) / slots_[0].buffer.size();
    Slot& s = slots_[slot];
    s.data = data;
    s.offset = offset_bytes;
    s.done = 0;
    s.busy = true;
    Issue(slot);
    HOTSNAP_RETURN_IF_ERROR(Collect(false));
    if (flush_every_bytes_ != 0 && completed_bytes_ - flush_requested_at_ >= flush_every_bytes_ &&
        flusher_.Request(completed_bytes_)) {
      flush_requested_at_ = completed_bytes_;
    }
    // A failed flush means written data may not have reached the device: stop at once.
    if (Status f = flusher_.error(); !f.ok() && failed_.ok()) failed_ = f;
    return failed_;
  }

  Status Finish() override {
    while (queue_->in_flight() > 0) {
      HOTSNAP_RETURN_IF_ERROR(Collect(true));
      if (Interrupted()) return Status(Code::kInterrupted, "interrupted while writing " + target_);
    }
    HOTSNAP_RETURN_IF_ERROR(failed_);
    HOTSNAP_RETURN_IF_ERROR(flusher_.Stop());
    if (int err = flush_(fd_); err != 0) {
      return Status::FromErrno(Code::kTarget, err, "fsync " + target_);
    }
    return Status::Ok();
  }

  unsigned flushes() const override { return flusher_.flushes(); }

 private:
  struct Slot {
    std::span<uint8_t> buffer;  // the whole chunk-sized buffer
    std::span<uint8_t> data;    // what is being written from it
    uint64_t offset = 0;        // target byte offset of data[0]
    size_t done = 0;            // bytes of data written so far
    bool busy = false;
  };

  // Queues what is left of the slot's write.
  void Issue(size_t slot) {
    Slot& s = slots_[slot];
    Status q = queue_->Queue(WriteRequest{slot, s.data.data() + s.done,
                                          static_cast<uint32_t>(s.data.size() - s.done),
                                          s.offset + s.done});
    if (!q.ok()) Fail(slot, q);
  }

  void Fail(size_t slot, const Status& status) {
    slots_[slot].busy = false;
    if (failed_.ok()) failed_ = status;
  }

  Status WriteError(int err, const Slot& s) const {
    return Status::FromErrno(
        Code::kTarget, err,
        "writing " + target_ + " at byte offset " + std::to_string(s.offset + s.done));
  }

  // Reaps finished writes: continues short ones, retries -EAGAIN, records the first error.
  Status Collect(bool wait) {
    completions_.clear();
    Status reaped = queue_->Reap(&completions_, wait);
    if (!reaped.ok() && failed_.ok()) failed_ = reaped;
    for (const WriteCompletion& c : completions_) {
      size_t slot = static_cast<size_t>(c.tag);
      Slot& s = slots_[slot];
      if (!failed_.ok()) {
        s.busy = false;  // no point continuing: the restore has failed
      } else if (c.result == -EAGAIN || (c.result == -EINTR && !Interrupted())) {
        Issue(slot);
      } else if (c.result == -EINTR) {
        Fail(slot, Status(Code::kInterrupted, "interrupted while writing " + target_));
      } else if (c.result < 0) {
        Fail(slot, WriteError(-c.result, s));
      } else if (c.result == 0) {
        // No progress and no error: nothing more fits (a file on a full filesystem).
        Fail(slot, WriteError(ENOSPC, s));
      } else {
        s.done += static_cast<size_t>(c.result);
        completed_bytes_ += static_cast<uint64_t>(c.result);
        if (s.done < s.data.size())
          Issue(slot);  // short write: continue
        else
          s.busy = false;
      }
    }
    return failed_;
  }

  int fd_;
  std::string target_;
  AlignedBuffer arena_;
  std::vector<Slot> slots_;
  std::unique_ptr<WriteQueue> queue_;
  std::vector<WriteCompletion> completions_;
  Status failed_;  // the first error; sticks
  uint64_t flush_every_bytes_;
  TargetFlush flush_;
  uint64_t completed_bytes_ = 0;     // bytes the kernel reported written
  uint64_t flush_requested_at_ = 0;  // completed_bytes_ when the last flush started
  BackgroundFlusher flusher_;        // destroyed (joined) first
};

}  // namespace

Result<std::unique_ptr<WriteQueue>> MakeWriteQueue(int fd, unsigned depth,
                                                   std::string* fallback_reason) {
  auto uring = std::make_unique<UringWriteQueue>(fd);
  int rc = uring->Init(depth);
  if (rc == 0) return std::unique_ptr<WriteQueue>(std::move(uring));
  if (fallback_reason != nullptr) {
    *fallback_reason = std::string("io_uring unavailable (") + std::strerror(-rc) + ")";
  }
  return MakePwriteQueue(fd);
}

std::unique_ptr<WriteQueue> MakePwriteQueue(int fd) {
  return std::make_unique<PwriteWriteQueue>(fd);
}

Result<std::unique_ptr<BlockWriter>> MakeBlockWriter(int fd, const std::string& target,
                                                     const BlockWriterOptions& options,
                                                     std::string* fallback_reason) {
  unsigned depth = options.queue_depth < 2 ? 2 : options.queue_depth;
  auto queue = MakeWriteQueue(fd, depth, fallback_reason);
  if (!queue.ok()) return queue.status();
  std::unique_ptr<WriteQueue> q = std::move(queue.value());
  if (options.wrap) q = options.wrap(std::move(q));
  auto writer =
      std::make_unique<QueuedBlockWriter>(fd, target, options.flush_every_bytes, options.flush);
  // One buffer per write in flight; pwrite finishes each write before the next is queued.
  unsigned buffers = std::string_view(q->name()) == "pwrite" ? 1 : depth;
  HOTSNAP_RETURN_IF_ERROR(writer->Init(options.chunk_bytes, buffers, std::move(q)));
  return std::unique_ptr<BlockWriter>(std::move(writer));
}

}  // namespace hotsnap
