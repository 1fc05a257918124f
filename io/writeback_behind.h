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
// Every byte announced is eventually written back and dropped: the thread starts writeback
// of each new range, waits for and drops the range it started on an earlier turn (which has
// had time to reach the disk), and whenever nothing newer has been announced it waits for and
// drops what it started last, so neither a burst (the writer far ahead of the thread) nor the
// last windows stay dirty in the page cache. Finish() does the same for the tail short of a
// window. Ranges handed to the thread end on a page boundary, so no page straddling two
// windows is skipped by both drops.
//
// Hints only: errors are ignored; the owner's fsync reports real ones. Not thread-safe: the
// constructor, Written, Finish and the destructor are called from the owner's thread; the
// background thread only reads the fd. The owner must Finish() or destroy this before closing
// the file.
#ifndef HOTSNAP_IO_WRITEBACK_BEHIND_H_
#define HOTSNAP_IO_WRITEBACK_BEHIND_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

namespace hotsnap {

class WritebackBehind {
 public:
  // `fd`: the file being written from offset 0, sequentially; not owned. `window_bytes`:
  // how much is written between two announcements to the thread.
  WritebackBehind(int fd, uint64_t window_bytes);
  // Abandons the work not yet started (the file is being discarded, or Finish ran): waits only
  // for the thread's current system call, then joins it.
  ~WritebackBehind();
  WritebackBehind(const WritebackBehind&) = delete;
  WritebackBehind& operator=(const WritebackBehind&) = delete;

  // The file now holds `written_bytes` bytes from offset 0. Cheap, never waits for I/O (a
  // mutex held by the thread only between system calls); starts the thread at the first
  // full window. Ignored after Finish.
  void Written(uint64_t written_bytes);
  // Writes back, waits for and drops from the page cache everything announced by Written,
  // including the tail short of a window, then joins the thread. For the owner's commit: its
  // fsync then has only metadata left. Idempotent.
  void Finish();

 private:
  void Run();

  const int fd_;
  const uint64_t window_bytes_;
  const uint64_t page_bytes_;
  uint64_t written_ = 0;    // bytes announced by Written (owner's side)
  uint64_t announced_ = 0;  // bytes handed to the thread (owner's side)
  bool finished_ = false;   // owner's side
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  uint64_t requested_ = 0;   // guarded by mutex_: bytes whose writeback may start
  bool finishing_ = false;   // guarded by mutex_: drain up to requested_, then return
  bool abandoning_ = false;  // guarded by mutex_: return at the next turn
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_WRITEBACK_BEHIND_H_
