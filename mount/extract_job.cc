#include "mount/extract_job.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/interrupt.h"
#include "base/unique_fd.h"
#include "io/image_random_reader.h"

namespace hotsnap {
namespace {

Status WriteAll(int fd, const std::string& name, const uint8_t* p, size_t bytes) {
  while (bytes > 0) {
    ssize_t n = ::write(fd, p, bytes);
    if (n < 0) {
      if (errno == EINTR && !Interrupted()) continue;
      if (errno == EINTR) return Status(Code::kInterrupted, "interrupted writing " + name);
      return Status::FromErrno(Code::kTarget, errno, "writing " + name);
    }
    p += n;
    bytes -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

// A regular file output is removed unless the extraction completes. Anything else the
// output names — a device such as /dev/null, a FIFO — is written to and never removed,
// nor fsynced (they have nothing to sync).
class OutputFile {
 public:
  ~OutputFile() {
    if (regular_ && !done_) ::unlink(path_.c_str());
  }
  Status Open(const std::string& path, bool overwrite) {
    path_ = path;
    if (path == "-") {
      if (::isatty(STDOUT_FILENO)) {
        return Status(Code::kUsage, "stdout is a terminal; give -o FILE or pipe the output");
      }
      fd_ = STDOUT_FILENO;
      return Status::Ok();
    }
    int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (overwrite ? O_TRUNC : O_EXCL);
    owned_.Reset(::open(path.c_str(), flags, 0644));
    if (!owned_.valid()) {
      if (errno == EEXIST) return Status(Code::kTarget, path + " already exists (use --overwrite)");
      return Status::FromErrno(Code::kTarget, errno, "creating " + path);
    }
    struct stat st;
    if (::fstat(owned_.get(), &st) != 0) return Status::FromErrno(Code::kTarget, errno, "stat " + path);
    fd_ = owned_.get();
    regular_ = S_ISREG(st.st_mode);
    return Status::Ok();
  }
  int fd() const { return fd_; }
  const std::string& name() const { return path_; }
  Status Finish() {
    if (regular_ && ::fsync(owned_.get()) != 0) {
      return Status::FromErrno(Code::kTarget, errno, "fsync " + path_);
    }
    done_ = true;
    return Status::Ok();
  }

 private:
  std::string path_;
  UniqueFd owned_;
  int fd_ = -1;
  bool regular_ = false;  // a regular file we opened: removed if unfinished
  bool done_ = false;
};

}  // namespace

Result<ExtractReport> ExtractRange(const ExtractOptions& o) {
  // One thread writes what it reads: the next chunks are decoded meanwhile, on two threads.
  auto reader =
      ImageRandomReader::Open(o.image, RandomReaderOptions{.cache_chunks = 8, .readahead_chunks = 4, .chain = o.chain});
  if (!reader.ok()) return reader.status();
  const uint64_t device = (*reader)->device_bytes();
  if (o.offset_bytes > device) {
    return Status(Code::kUsage, "--offset " + std::to_string(o.offset_bytes) + " is past the end of the device (" +
                                    std::to_string(device) + " bytes)");
  }
  uint64_t length = o.length_bytes.value_or(device - o.offset_bytes);
  if (length > device - o.offset_bytes) {
    return Status(Code::kUsage, "range " + std::to_string(o.offset_bytes) + "+" + std::to_string(length) +
                                    " ends past the end of the device (" + std::to_string(device) + " bytes)");
  }
  OutputFile out;
  HOTSNAP_RETURN_IF_ERROR(out.Open(o.output, o.overwrite));
  // Whole chunks at a time, written straight from the decoded chunk: each is decoded once
  // (the reader decodes the next ones meanwhile) and never copied in between.
  const size_t piece = (*reader)->meta().chunk_bytes;
  uint64_t pos = o.offset_bytes;
  const uint64_t end = o.offset_bytes + length;
  while (pos < end) {
    if (Interrupted()) return Status(Code::kInterrupted, "interrupted");
    size_t want = static_cast<size_t>(std::min<uint64_t>(end - pos, piece - pos % piece));
    PinnedBytes bytes;
    HOTSNAP_RETURN_IF_ERROR((*reader)->Pin(pos, want, &bytes));
    for (const iovec& v : bytes.pieces) {
      const auto* p = static_cast<const uint8_t*>(v.iov_base);
      HOTSNAP_RETURN_IF_ERROR(WriteAll(out.fd(), out.name(), p, v.iov_len));
    }
    pos += bytes.bytes;
  }
  HOTSNAP_RETURN_IF_ERROR(out.Finish());
  ExtractReport r;
  r.bytes_written = length;
  r.chunks_decoded = (*reader)->stats().chunks_decoded;
  return r;
}

}  // namespace hotsnap
