// WritebackBehind: writes a growing file's pages back to disk behind the writer, on its
// own thread, and drops them from the page cache once they are on disk.
//
// A backup writes gigabytes sequentially. Left alone, the kernel keeps them dirty until
// the final fsync, which then writes them all at once (long, with idle CPUs) after they
// have evicted the server's working set from the page cache. Starting writeback every
// window, and waiting for it, keeps both small; doing it here rather than on the writer's
// thread keeps the waits (long when other processes fsync the same filesystem: every
// journal commit is shared) off the backup's critical path.
//
// Hints only: errors are ignored; the owner's fsync reports real ones. The owner must
// Stop() (or destroy) this before closing the file.
#ifndef HOTSNAP_IO_WRITEBACK_BEHIND_H_
#define HOTSNAP_IO_WRITEBACK_BEHIND_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace hotsnap {

class WritebackBehind {
 public:
  // `window_bytes`: how much is written between two writeback starts.
  WritebackBehind(int fd, uint64_t window_bytes) : fd_(fd), window_bytes_(window_bytes) {}
  ~WritebackBehind() { Stop(); }
  WritebackBehind(const WritebackBehind&) = delete;
  WritebackBehind& operator=(const WritebackBehind&) = delete;

  // The file now holds `written_bytes` bytes from offset 0. Cheap; starts the thread at the
  // first full window.
  void Written(uint64_t written_bytes);
  // Finishes the pending window, then joins the thread. Idempotent.
  void Stop();

 private:
  void Run();

  const int fd_;
  const uint64_t window_bytes_;
  uint64_t announced_ = 0;  // bytes announced to the thread (writer's side)
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  uint64_t requested_ = 0;  // guarded by mutex_: bytes whose writeback may start
  bool stopping_ = false;   // guarded by mutex_
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_WRITEBACK_BEHIND_H_
