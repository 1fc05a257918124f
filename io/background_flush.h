// BackgroundFlusher: flushes a restore target on a thread of its own while writes go on.
//
// A restore's writes land in a volatile cache (a disk's write cache; for a loop device, the
// page cache of its backing file), and a single fsync at the end pays for all of them after
// the last chunk is decoded: decoding and writeback do not overlap. Flushing whenever the
// previous flush has finished and enough new bytes have been written keeps the device writing
// back while the next chunks are decoded, so the final fsync has only the tail left.
//
// Request() never blocks and is refused (returns false) while a flush runs. The flush
// function is a seam (tests wrap the real fdatasync to fail it); it returns 0 or an errno
// value. Request/Stop/flushes from one thread.
#ifndef HOTSNAP_IO_BACKGROUND_FLUSH_H_
#define HOTSNAP_IO_BACKGROUND_FLUSH_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "base/status.h"

namespace hotsnap {

// Makes everything written to `fd` so far durable: 0, or an errno value.
using TargetFlush = std::function<int(int fd)>;
// The real one: fdatasync(2), retried on EINTR.
int FlushTarget(int fd);

class BackgroundFlusher {
 public:
  // `fd` stays the caller's and must outlive the flusher; `target` names it in messages.
  BackgroundFlusher(int fd, std::string target, TargetFlush flush);
  ~BackgroundFlusher();  // waits for a flush in progress
  BackgroundFlusher(const BackgroundFlusher&) = delete;
  BackgroundFlusher& operator=(const BackgroundFlusher&) = delete;

  // `written_bytes` of writes have completed in all: starts a flush of them and returns true,
  // or returns false if a flush is still running (or one failed). The thread starts at the
  // first request.
  bool Request(uint64_t written_bytes);
  // The first failed flush (kTarget, naming the target and how many bytes it covered), or OK.
  Status error() const;
  // Waits for a flush in progress and stops the thread; returns error().
  Status Stop();
  // Flushes that finished, successful or not.
  unsigned flushes() const;

 private:
  void Run();

  int fd_;
  std::string target_;
  TargetFlush flush_;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool requested_ = false;
  bool running_ = false;
  bool stopping_ = false;
  uint64_t request_bytes_ = 0;
  unsigned flushes_ = 0;
  Status error_;
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_BACKGROUND_FLUSH_H_
