// UringQueue: the io_uring ring shared by the block reader and the restore writer. Requests
// wait in a queue until Reap() submits as many as the ring holds (the rest go at the next
// Reap), then hands back completions as {tag, res} pairs.
//
// The destructor waits for every submitted request before the ring goes away, so the
// kernel is done with the callers' buffers before they are freed. One thread only.
#ifndef HOTSNAP_IO_URING_QUEUE_H_
#define HOTSNAP_IO_URING_QUEUE_H_

#include <liburing.h>

#include <cerrno>
#include <deque>
#include <vector>

#include "base/status.h"

namespace hotsnap {

template <typename Request, typename Completion>
class UringQueue {
 public:
  UringQueue() = default;
  ~UringQueue() {
    if (!ready_) return;
    while (in_flight_ > 0) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe(&ring_, &cqe) != 0) break;
      io_uring_cqe_seen(&ring_, cqe);
      --in_flight_;
    }
    io_uring_queue_exit(&ring_);
  }
  UringQueue(const UringQueue&) = delete;
  UringQueue& operator=(const UringQueue&) = delete;

  // Returns 0 or -errno from the ring's setup.
  int Init(unsigned entries) {
    int rc = io_uring_queue_init(entries, &ring_, 0);
    if (rc == 0) ready_ = true;
    return rc;
  }
  io_uring* ring() { return &ring_; }
  // Submitted and not yet reaped, plus queued.
  unsigned in_flight() const { return in_flight_ + static_cast<unsigned>(queued_.size()); }
  void Push(const Request& request) { queued_.push_back(request); }

  // Submits what is queued, `prep(sqe, request)` filling each entry (its user data is set
  // here to request.tag); with `wait`, waits for one completion if any is in flight; then
  // appends every completion there is to *out.
  template <typename Prep>
  Status Reap(std::vector<Completion>* out, bool wait, Prep prep) {
    HOTSNAP_RETURN_IF_ERROR(SubmitQueued(prep));
    io_uring_cqe* cqe = nullptr;
    if (wait && in_flight_ > 0) {
      int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR) return Status::Ok();
      if (rc < 0) return Status::FromErrno(Code::kInternal, -rc, "io_uring_wait_cqe");
    }
    while (io_uring_peek_cqe(&ring_, &cqe) == 0) {
      out->push_back(Completion{io_uring_cqe_get_data64(cqe), cqe->res});
      io_uring_cqe_seen(&ring_, cqe);
      --in_flight_;
    }
    return Status::Ok();
  }

 private:
  template <typename Prep>
  Status SubmitQueued(Prep& prep) {
    bool added = false;
    while (!queued_.empty()) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
      if (sqe == nullptr) break;  // ring full: the rest go at the next Reap
      prep(sqe, queued_.front());
      io_uring_sqe_set_data64(sqe, queued_.front().tag);
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

  io_uring ring_{};
  bool ready_ = false;
  unsigned in_flight_ = 0;  // submitted, not yet reaped
  std::deque<Request> queued_;
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_URING_QUEUE_H_
