// The io_uring implementation of BlockReader: READ_FIXED into registered buffers.
#include <liburing.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <deque>

#include "io/block_reader.h"

namespace hotsnap {
namespace {

class UringReader : public BlockReader {
 public:
  UringReader(int fd, const ReaderOptions& options) : fd_(fd), options_(options) {}
  ~UringReader() override {
    if (ring_ready_) {
      // Completions must not land in buffers after their owner frees them: drain first.
      while (in_flight_ > 0) {
        io_uring_cqe* cqe = nullptr;
        if (io_uring_wait_cqe(&ring_, &cqe) != 0) break;
        io_uring_cqe_seen(&ring_, cqe);
        --in_flight_;
      }
      io_uring_queue_exit(&ring_);
    }
  }

  // Returns 0 or -errno from ring setup and buffer registration.
  int Init() {
    unsigned entries = options_.queue_depth < 2 ? 2 : options_.queue_depth;
    int rc = io_uring_queue_init(entries, &ring_, 0);
    if (rc < 0) return rc;
    ring_ready_ = true;
    std::vector<iovec> iovs;
    for (auto& b : options_.buffers) iovs.push_back(iovec{b.data(), b.size()});
    rc = io_uring_register_buffers(&ring_, iovs.data(), static_cast<unsigned>(iovs.size()));
    if (rc < 0) return rc;
    // Registering the file saves a fget/fput per read.
    if (io_uring_register_files(&ring_, &fd_, 1) == 0) fixed_file_ = true;
    return 0;
  }

  const char* name() const override { return "io_uring"; }
  unsigned in_flight() const override { return in_flight_ + static_cast<unsigned>(queued_.size()); }

  Status SetWakeFd(int eventfd) override {
    int rc = io_uring_register_eventfd(&ring_, eventfd);
    if (rc < 0) return Status::FromErrno(Code::kInternal, -rc, "io_uring_register_eventfd");
    return Status::Ok();
  }

  Status Queue(const ReadRequest& request) override {
    queued_.push_back(request);
    return Status::Ok();
  }

  Status Reap(std::vector<ReadCompletion>* out, bool wait) override {
    HOTSNAP_RETURN_IF_ERROR(SubmitQueued());
    io_uring_cqe* cqe = nullptr;
    if (wait && in_flight_ > 0) {
      int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR) return Status::Ok();
      if (rc < 0) return Status::FromErrno(Code::kInternal, -rc, "io_uring_wait_cqe");
    }
    while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
      out->push_back(ReadCompletion{io_uring_cqe_get_data64(cqe), cqe->res});
      io_uring_cqe_seen(&ring_, cqe);
      --in_flight_;
    }
    return Status::Ok();
  }

 private:
  Status SubmitQueued() {
    bool added = false;
    while (!queued_.empty()) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) break;  // ring full: the rest go at the next Reap
      const ReadRequest& r = queued_.front();
      uint8_t* dst = options_.buffers[r.buffer_index].data() + r.buffer_offset;
      io_uring_prep_read_fixed(sqe, fixed_file_ ? 0 : fd_, dst, r.length_bytes, r.offset_bytes,
                               r.buffer_index);
      if (fixed_file_) sqe->flags |= IOSQE_FIXED_FILE;
      io_uring_sqe_set_data64(sqe, r.tag);
      queued_.pop_front();
      ++in_flight_;
      added = true;
    }
    if (!added) return Status::Ok();
    for (;;) {
      int rc = io_uring_submit(&ring_);
      if (rc >= 0) return Status::Ok();
      if (rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) continue;
      return Status::FromErrno(Code::kInternal, -rc, "io_uring_submit");
    }
  }

  int fd_;
  ReaderOptions options_;
  io_uring ring_{};
  bool ring_ready_ = false;
  bool fixed_file_ = false;
  unsigned in_flight_ = 0;
  std::deque<ReadRequest> queued_;
};

}  // namespace

Result<std::unique_ptr<BlockReader>> MakeBlockReader(int fd, const ReaderOptions& options,
                                                     std::string* fallback_reason) {
  if (options.allow_io_uring) {
    auto reader = std::make_unique<UringReader>(fd, options);
    int rc = reader->Init();
    if (rc == 0) return std::unique_ptr<BlockReader>(std::move(reader));
    if (fallback_reason != nullptr) {
      *fallback_reason = std::string("io_uring unavailable (") + std::strerror(-rc) +
                         (rc == -EPERM ? ", kernel.io_uring_disabled?" : "") + ")";
    }
  } else if (fallback_reason != nullptr) {
    *fallback_reason = "io_uring disabled by option";
  }
  return MakePreadReader(fd, options);
}

}  // namespace hotsnap
