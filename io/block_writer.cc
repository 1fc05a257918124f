#include "io/block_writer.h"

#include <liburing.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/interrupt.h"
#include "io/aligned_buffer.h"

namespace hotsnap {
namespace {

struct Pending {
  std::span<uint8_t> data;
  uint64_t offset = 0;
  size_t done = 0;
  bool busy = false;
};

class WriterBase : public BlockWriter {
 protected:
  WriterBase(int fd, std::string target) : fd_(fd), target_(std::move(target)) {}

  Status InitBuffers(uint32_t chunk_bytes, unsigned count) {
    auto arena = AlignedBuffer::Allocate(size_t{chunk_bytes} * count);
    if (!arena.ok()) return arena.status();
    arena_ = std::move(arena.value());
    slots_.resize(count);
    for (unsigned i = 0; i < count; ++i) {
      slots_[i].data = arena_.span().subspan(size_t{i} * chunk_bytes, chunk_bytes);
    }
    return Status::Ok();
  }
  int SlotOf(std::span<uint8_t> data) const {
    return static_cast<int>((data.data() - arena_.data()) / slots_[0].data.size());
  }
  Status WriteError(int err, const Pending& p) const {
    return Status::FromErrno(Code::kTarget, err,
                             "writing " + target_ + " at byte offset " + std::to_string(p.offset + p.done));
  }
  Status Sync() {
    if (::fsync(fd_) != 0) return Status::FromErrno(Code::kTarget, errno, "fsync " + target_);
    return Status::Ok();
  }

  int fd_;
  std::string target_;
  AlignedBuffer arena_;
  std::vector<Pending> slots_;
};

class PwriteWriter : public WriterBase {
 public:
  PwriteWriter(int fd, std::string target) : WriterBase(fd, std::move(target)) {}
  Status Init(uint32_t chunk_bytes) { return InitBuffers(chunk_bytes, 1); }
  const char* name() const override { return "pwrite"; }
  Result<std::span<uint8_t>> Acquire() override { return slots_[0].data; }
  Status Write(std::span<uint8_t> data, uint64_t offset) override {
    Pending p{data, offset, 0, true};
    while (p.done < data.size()) {
      ssize_t n = ::pwrite(fd_, data.data() + p.done, data.size() - p.done,
                           static_cast<off_t>(offset + p.done));
      if (n < 0) {
        if (errno == EINTR && !Interrupted()) continue;
        if (errno == EINTR) return Status(Code::kInterrupted, "interrupted while writing " + target_);
        return WriteError(errno, p);
      }
      if (n == 0) return WriteError(ENOSPC, p);
      p.done += static_cast<size_t>(n);
    }
    return Status::Ok();
  }
  Status Finish() override { return Sync(); }
};

class UringWriter : public WriterBase {
 public:
  UringWriter(int fd, std::string target) : WriterBase(fd, std::move(target)) {}
  ~UringWriter() override {
    if (ready_) {
      while (in_flight_ > 0 && Reap(true).ok()) {
      }
      io_uring_queue_exit(&ring_);
    }
  }
  int Init(uint32_t chunk_bytes, unsigned depth) {
    if (!InitBuffers(chunk_bytes, depth).ok()) return -ENOMEM;
    int rc = io_uring_queue_init(depth, &ring_, 0);
    if (rc < 0) return rc;
    ready_ = true;
    return 0;
  }
  const char* name() const override { return "io_uring"; }

  Result<std::span<uint8_t>> Acquire() override {
    for (;;) {
      for (auto& s : slots_) {
        if (!s.busy) return s.data;
      }
      HOTSNAP_RETURN_IF_ERROR(Reap(true));
      if (Interrupted()) return Status(Code::kInterrupted, "interrupted while writing " + target_);
    }
  }

  Status Write(std::span<uint8_t> data, uint64_t offset) override {
    Pending& p = slots_[SlotOf(data)];
    p.data = data;
    p.offset = offset;
    p.done = 0;
    p.busy = true;
    Submit(SlotOf(data));
    return Flush();
  }

  Status Finish() override {
    while (in_flight_ > 0) {
      HOTSNAP_RETURN_IF_ERROR(Reap(true));
      if (Interrupted()) return Status(Code::kInterrupted, "interrupted while writing " + target_);
    }
    return Sync();
  }

 private:
  void Submit(int slot) {
    Pending& p = slots_[slot];
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);  // never null: one SQE per slot at most
    io_uring_prep_write(sqe, fd_, p.data.data() + p.done, static_cast<unsigned>(p.data.size() - p.done),
                        p.offset + p.done);
    io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(slot));
    ++in_flight_;
    ++unsubmitted_;
  }
  Status Flush() {
    while (unsubmitted_ > 0) {
      int rc = io_uring_submit(&ring_);
      if (rc >= 0) {
        unsubmitted_ = 0;
        break;
      }
      if (rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        return Status::FromErrno(Code::kInternal, -rc, "io_uring_submit");
      }
    }
    return Reap(false);
  }
  Status Reap(bool wait) {
    io_uring_cqe* cqe = nullptr;
    if (wait && in_flight_ > 0) {
      int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR) return Status::Ok();
      if (rc < 0) return Status::FromErrno(Code::kInternal, -rc, "io_uring_wait_cqe");
    }
    Status first_error;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
      int slot = static_cast<int>(io_uring_cqe_get_data64(cqe));
      int res = cqe->res;
      io_uring_cqe_seen(&ring_, cqe);
      --in_flight_;
      Pending& p = slots_[slot];
      if (res == -EAGAIN || res == -EINTR) {
        Submit(slot);
      } else if (res < 0) {
        if (first_error.ok()) first_error = WriteError(-res, p);
        p.busy = false;
      } else if (res == 0) {
        if (first_error.ok()) first_error = WriteError(ENOSPC, p);
        p.busy = false;
      } else {
        p.done += static_cast<size_t>(res);
        if (p.done < p.data.size()) Submit(slot);  // short write: continue
        else p.busy = false;
      }
    }
    if (unsubmitted_ > 0 && io_uring_submit(&ring_) >= 0) unsubmitted_ = 0;
    return first_error;
  }

  io_uring ring_{};
  bool ready_ = false;
  unsigned in_flight_ = 0;
  unsigned unsubmitted_ = 0;
};

}  // namespace

Result<std::unique_ptr<BlockWriter>> MakeBlockWriter(int fd, const std::string& target,
                                                     uint32_t chunk_bytes, unsigned queue_depth,
                                                     std::string* fallback_reason) {
  auto uring = std::make_unique<UringWriter>(fd, target);
  int rc = uring->Init(chunk_bytes, queue_depth < 2 ? 2 : queue_depth);
  if (rc == 0) return std::unique_ptr<BlockWriter>(std::move(uring));
  if (fallback_reason != nullptr) {
    *fallback_reason = std::string("io_uring unavailable (") + std::strerror(-rc) + ")";
  }
  auto plain = std::make_unique<PwriteWriter>(fd, target);
  HOTSNAP_RETURN_IF_ERROR(plain->Init(chunk_bytes));
  return std::unique_ptr<BlockWriter>(std::move(plain));
}

}  // namespace hotsnap
