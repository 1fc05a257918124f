#include "io/writeback_behind.h"

#include <fcntl.h>

namespace hotsnap {

void WritebackBehind::Written(uint64_t written_bytes) {
  if (written_bytes - announced_ < window_bytes_) return;
  announced_ = written_bytes;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    requested_ = written_bytes;
  }
  if (!thread_.joinable()) {
    thread_ = std::thread([this] { Run(); });
  } else {
    cv_.notify_one();
  }
}

void WritebackBehind::Stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void WritebackBehind::Run() {
  uint64_t flushed = 0;  // bytes whose writeback has been started
  uint64_t dropped = 0;  // bytes written back and dropped from the page cache
  for (;;) {
    uint64_t upto = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stopping_ || requested_ > flushed; });
      if (stopping_) return;  // what is left is the owner's fsync's to write
      upto = requested_;
    }
    ::sync_file_range(fd_, static_cast<off64_t>(flushed), static_cast<off64_t>(upto - flushed),
                      SYNC_FILE_RANGE_WRITE);
    // The window before the one just started: wait for it, then drop it.
    if (flushed > dropped) {
      ::sync_file_range(
          fd_, static_cast<off64_t>(dropped), static_cast<off64_t>(flushed - dropped),
          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      ::posix_fadvise(fd_, static_cast<off_t>(dropped), static_cast<off_t>(flushed - dropped),
                      POSIX_FADV_DONTNEED);
      dropped = flushed;
    }
    flushed = upto;
  }
}

}  // namespace hotsnap
