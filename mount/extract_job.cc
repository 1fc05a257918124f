#include "mount/extract_job.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

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

// A file output created by us is removed unless the extraction completes.
class OutputFile {
 public:
  ~OutputFile() {
    if (created_ && !done_) ::unlink(path_.c_str());
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
    fd_ = owned_.get();
    created_ = true;
    return Status::Ok();
  }
  int fd() const { return fd_; }
  const std::string& name() const { return path_; }
  Status Finish() {
    if (owned_.valid() && ::fsync(owned_.get()) != 0) return Status::FromErrno(Code::kTarget, errno, "fsync " + path_);
    done_ = true;
    return Status::Ok();
  }

 private:
  std::string path_;
  UniqueFd owned_;
  int fd_ = -1;
  bool created_ = false;
  bool done_ = false;
};

}  // namespace

Result<ExtractReport> ExtractRange(const ExtractOptions& o) {
  auto reader = ImageRandomReader::Open(o.image, RandomReaderOptions{.cache_chunks = 2});
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
  // Whole chunks at a time: each is decoded once and copied out.
  const size_t piece = (*reader)->meta().chunk_bytes;
  std::vector<uint8_t> buf(piece);
  uint64_t pos = o.offset_bytes;
  const uint64_t end = o.offset_bytes + length;
  while (pos < end) {
    if (Interrupted()) return Status(Code::kInterrupted, "interrupted");
    size_t want = static_cast<size_t>(std::min<uint64_t>(end - pos, piece - pos % piece));
    auto n = (*reader)->Read(pos, want, buf.data());
    if (!n.ok()) return n.status();
    HOTSNAP_RETURN_IF_ERROR(WriteAll(out.fd(), out.name(), buf.data(), *n));
    pos += *n;
  }
  HOTSNAP_RETURN_IF_ERROR(out.Finish());
  ExtractReport r;
  r.bytes_written = length;
  r.chunks_decoded = (*reader)->stats().chunks_decoded;
  return r;
}

}  // namespace hotsnap
