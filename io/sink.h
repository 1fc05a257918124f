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

struct FileSinkOptions {
  bool overwrite = false;
};

// A sink to a regular file created atomically: the data goes to a temporary file
// ".NAME.hotsnap-PID.tmp" created 0600 with O_EXCL|O_NOFOLLOW in the destination's
// directory; Commit() fsyncs it, renames it to NAME (with RENAME_NOREPLACE unless
// overwrite) and fsyncs the directory. Destroying the sink uncommitted unlinks the
// temporary file. Refuses up front (kTarget) when NAME exists and !overwrite, or when NAME
// is a directory.
Result<std::unique_ptr<Sink>> MakeFileSink(const std::string& path, const FileSinkOptions& options);

// The temporary name MakeFileSink uses for `path` in process `pid`.
std::string TemporaryNameFor(const std::string& path, int pid);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_SINK_H_
