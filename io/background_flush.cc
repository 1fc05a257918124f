#include "io/background_flush.h"

#include <unistd.h>

#include <cerrno>
#include <utility>

#include "base/interrupt.h"

namespace hotsnap {

int FlushTarget(int fd) {
  for (;;) {
    if (::fdatasync(fd) == 0) return 0;
    if (errno != EINTR) return errno;
  }
}

BackgroundFlusher::BackgroundFlusher(int fd, std::string target, TargetFlush flush)
    : fd_(fd), target_(std::move(target)), flush_(flush ? std::move(flush) : FlushTarget) {}

BackgroundFlusher::~BackgroundFlusher() { (void)Stop(); }

bool BackgroundFlusher::Request(uint64_t written_bytes) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ || requested_ || running_ || !error_.ok()) return false;
    requested_ = true;
    request_bytes_ = written_bytes;
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
  cv_.notify_one();
  return true;
}

Status BackgroundFlusher::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

Status BackgroundFlusher::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  return error();
}

unsigned BackgroundFlusher::flushes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return flushes_;
}

void BackgroundFlusher::Run() {
  BlockInterruptSignals();  // signals go to the restore's thread (base/interrupt.h)
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || requested_; });
    if (stopping_) return;  // the final fsync covers whatever was asked for
    requested_ = false;
    running_ = true;
    uint64_t covered = request_bytes_;
    lock.unlock();
    int err = flush_(fd_);
    lock.lock();
    running_ = false;
    ++flushes_;
    if (err != 0 && error_.ok()) {
      error_ = Status::FromErrno(Code::kTarget, err,
                                 "flushing " + target_ + " after the first " +
                                     std::to_string(covered) + " bytes were written");
    }
  }
}

}  // namespace hotsnap
