#include "io/writeback_behind.h"

#include <fcntl.h>
#include <unistd.h>

#include "base/interrupt.h"

namespace hotsnap {
namespace {

// Starts writeback of the file's dirty pages in [begin, end) (bytes); does not wait.
void StartWriteback(int fd, uint64_t begin, uint64_t end) {
  ::sync_file_range(fd, static_cast<off64_t>(begin), static_cast<off64_t>(end - begin),
                    SYNC_FILE_RANGE_WRITE);
}

// Writes back [begin, end) (bytes), waits until it is on disk, then drops it from the page
// cache. `begin` is page-aligned; `end` is page-aligned or the end of the file, so that
// POSIX_FADV_DONTNEED, which skips a partial page at either end, drops every page.
void WaitAndDrop(int fd, uint64_t begin, uint64_t end) {
  ::sync_file_range(
      fd, static_cast<off64_t>(begin), static_cast<off64_t>(end - begin),
      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
  ::posix_fadvise(fd, static_cast<off_t>(begin), static_cast<off_t>(end - begin),
                  POSIX_FADV_DONTNEED);
}

}  // namespace

WritebackBehind::WritebackBehind(int fd, uint64_t window_bytes)
    : fd_(fd),
      window_bytes_(window_bytes),
      page_bytes_(static_cast<uint64_t>(::sysconf(_SC_PAGESIZE))) {}

WritebackBehind::~WritebackBehind() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    abandoning_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void WritebackBehind::Written(uint64_t written_bytes) {
  if (finished_) return;
  written_ = written_bytes;
  if (written_bytes - announced_ < window_bytes_) return;
  announced_ = written_bytes;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // The page the writer is filling stays for the next turn (or Finish).
    requested_ = written_bytes / page_bytes_ * page_bytes_;
  }
  if (!thread_.joinable()) {
    thread_ = std::thread([this] { Run(); });
  } else {
    cv_.notify_one();
  }
}

void WritebackBehind::Finish() {
  if (finished_) return;
  finished_ = true;
  if (!thread_.joinable()) {
    // Less than a window was written: the owner's fsync would wait for it anyway.
    if (written_ > 0) WaitAndDrop(fd_, 0, written_);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    requested_ = written_;
    finishing_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void WritebackBehind::Run() {
  // SIGINT/SIGTERM must reach the writer's thread, whose blocking calls they interrupt
  // (base/interrupt.h); delivered here, they would wait for the next chunk to be noticed.
  BlockInterruptSignals();
  uint64_t started = 0;  // [0, started): bytes whose writeback has been started
  uint64_t dropped = 0;  // [0, dropped): bytes written back and dropped from the page cache
  for (;;) {
    uint64_t upto = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (dropped == started) {
        cv_.wait(lock, [&] { return abandoning_ || finishing_ || requested_ > started; });
      }
      if (abandoning_) return;
      if (finishing_ && dropped == started && requested_ == started) return;
      upto = requested_;
    }
    if (upto > started) StartWriteback(fd_, started, upto);
    // The range started on an earlier turn has had a turn's time to reach the disk. When
    // nothing newer was announced (a burst that is over, the last windows), this is the range
    // the thread has just started: it waits for that instead of sleeping with it dirty.
    if (started > dropped) {
      WaitAndDrop(fd_, dropped, started);
      dropped = started;
    }
    started = upto;
  }
}

}  // namespace hotsnap
