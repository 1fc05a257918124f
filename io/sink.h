// Sinks: where image bytes go. A sink knows nothing about zstd or the image format.
//
// Contract: Write() either takes all bytes or returns an error; Commit() makes the output
// durable and visible under its final name; a sink destroyed without a successful Commit()
// removes whatever it wrote (a file sink's temporary file). Not thread-safe.
#ifndef HOTSNAP_IO_SINK_H_
#define HOTSNAP_IO_SINK_H_

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "base/unique_fd.h"

namespace hotsnap {

class Sink {
 public:
  virtual ~Sink() = default;
  virtual Status Write(const void* data, size_t bytes) = 0;
  virtual Status Commit() = 0;
  // Human-readable name for messages ("/backups/a.zst", "stdout").
  virtual std::string Describe() const = 0;
  // A descriptor from which the bytes written so far can be read back with pread (byte 0 is
  // the first byte written), or -1 when the output cannot be read back (a pipe, ssh).
  // Owned by the sink; valid until Commit() or destruction.
  virtual int read_back_fd() const { return -1; }
};

// Writes all of `bytes` to `fd`, looping over short writes and EINTR (unless interrupted
// by SIGINT/SIGTERM, which returns kInterrupted). `what` names the destination in errors.
Status WriteAll(int fd, const void* data, size_t bytes, const std::string& what, Code code);

// A sink to an already-open descriptor (stdout, a pipe). Commit() does nothing more than
// report earlier errors: a pipe has no final name.
std::unique_ptr<Sink> MakeFdSink(int fd, std::string name);

// The directory operations a file sink publishes with: one small seam so that tests can
// wrap the real calls and make them fail the way some filesystems do (renameat2 flags
// refused on NFS, 9p and FUSE; link() refused on some FUSE and CIFS mounts; a directory
// fsync that fails). Each returns 0 or an errno value. Thread-safe (no state).
class PublishOps {
 public:
  virtual ~PublishOps() = default;
  virtual int Rename(const std::string& from, const std::string& to, unsigned flags);  // renameat2
  virtual int Link(const std::string& from, const std::string& to);                    // link
  virtual int Unlink(const std::string& path);                                         // unlink
  // open(O_DIRECTORY) + fsync.
  virtual int SyncDirectory(const std::string& dir);
};

// The real calls; a static object, never destroyed.
PublishOps* RealPublishOps();

struct FileSinkOptions {
  bool overwrite = false;
  // Not owned; must outlive the sink. nullptr: RealPublishOps().
  PublishOps* ops = nullptr;
};

// A sink to a regular file created atomically: the data goes to a temporary file
// ".NAME.hotsnap-PID.tmp" created 0600 with O_EXCL|O_NOFOLLOW in the destination's
// directory. Destroying the sink uncommitted unlinks the temporary file. Refuses up front
// (kTarget) when NAME exists and !overwrite, or when NAME is a directory.
//
// Commit() fsyncs the temporary file and publishes it under NAME:
//   - overwrite: rename(), which replaces NAME atomically;
//   - otherwise renameat2(RENAME_NOREPLACE); where the filesystem refuses the flag (EINVAL,
//     ENOSYS, ENOTSUP/EOPNOTSUPP: NFS, 9p, CIFS, most FUSE) link(temp, NAME) then
//     unlink(temp), which never replaces NAME either (link fails with EEXIST). If the
//     filesystem refuses hard links too (EPERM, ENOTSUP, ...), Commit() fails (kTarget) and
//     publishes nothing rather than fall back to a rename that could replace a file created
//     meanwhile; --overwrite publishes there. A file that appeared at NAME while the backup
//     ran is never replaced (kTarget).
// Once NAME holds the image, Commit() returns Ok: the image is published, and the rule
// "an error means nothing under NAME" holds. What can still fail after that point is only
// reported as a warning on stderr (a notice: "warning: ...", which --quiet hides), and the exit
// status stays 0: the
// directory fsync (the image may then not survive a power loss until the directory is
// synced), and the unlink of the temporary name after link() (a second name of the same
// file, which `hotsnap cleanup` removes once this process has ended).
Result<std::unique_ptr<Sink>> MakeFileSink(const std::string& path, const FileSinkOptions& options);

// The temporary name MakeFileSink uses for `path` in process `pid`.
std::string TemporaryNameFor(const std::string& path, int pid);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_SINK_H_
