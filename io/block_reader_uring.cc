// The io_uring implementation of BlockReader: READ_FIXED into registered buffers.
#include <liburing.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "io/block_reader.h"
#include "io/uring_queue.h"

namespace hotsnap {
namespace {

class UringReader : public BlockReader {
 public:
  UringReader(int fd, const ReaderOptions& options) : fd_(fd), options_(options) {}
  // A registered file stays referenced by the ring until the ring's teardown, which the kernel
  // finishes asynchronously after close: a device opened with O_EXCL (a changed-only restore's
  // target) would stay claimed for a moment after hotsnap exited, and the next run would get
  // EBUSY. Unregistering waits for the reads using it and drops the reference now.
  ~UringReader() override {
    if (fixed_file_) io_uring_unregister_files(queue_.ring());
  }

  // Returns 0 or -errno from ring setup and buffer registration.
  int Init() {
    int rc = queue_.Init(options_.queue_depth < 2 ? 2 : options_.queue_depth);
    if (rc < 0) return rc;
    std::vector<iovec> iovs;
    for (auto& b : options_.buffers) iovs.push_back(iovec{b.data(), b.size()});
    rc = io_uring_register_buffers(queue_.ring(), iovs.data(), static_cast<unsigned>(iovs.size()));
    if (rc < 0) return rc;
    // Registering the file saves a fget/fput per read.
    if (io_uring_register_files(queue_.ring(), &fd_, 1) == 0) fixed_file_ = true;
    return 0;
  }

  const char* name() const override { return "io_uring"; }
  unsigned in_flight() const override { return queue_.in_flight(); }

  Status SetWakeFd(int eventfd) override {
    int rc = io_uring_register_eventfd(queue_.ring(), eventfd);
    if (rc < 0) return Status::FromErrno(Code::kInternal, -rc, "io_uring_register_eventfd");
    return Status::Ok();
  }

  Status Queue(const ReadRequest& request) override {
    queue_.Push(request);
    return Status::Ok();
  }

  Status Reap(std::vector<ReadCompletion>* out, bool wait) override {
    return queue_.Reap(out, wait, [this](io_uring_sqe* sqe, const ReadRequest& r) {
      uint8_t* dst = options_.buffers[r.buffer_index].data() + r.buffer_offset;
      io_uring_prep_read_fixed(sqe, fixed_file_ ? 0 : fd_, dst, r.length_bytes, r.offset_bytes,
                               r.buffer_index);
      if (fixed_file_) sqe->flags |= IOSQE_FIXED_FILE;
    });
  }

 private:
  int fd_;
  ReaderOptions options_;
  bool fixed_file_ = false;
  // Last member, destroyed first: completions must not land in buffers after their owner
  // frees them, so it waits for in-flight reads.
  UringQueue<ReadRequest, ReadCompletion> queue_;
};

}  // namespace

Result<std::unique_ptr<BlockReader>> MakeBlockReader(int fd, const ReaderOptions& options,
                                                     std::string* fallback_reason) {
  if (options.allow_io_uring) {
    auto reader = std::make_unique<UringReader>(fd, options);
    int rc = reader->Init();
    if (rc == 0) return std::unique_ptr<BlockReader>(std::move(reader));
    if (fallback_reason != nullptr) {
      *fallback_reason = std::string("io_uring unavailable (") + std::strerror(-rc) +
                         (rc == -EPERM ? ", kernel.io_uring_disabled?" : "") + ")";
    }
  } else if (fallback_reason != nullptr) {
    *fallback_reason = "io_uring disabled by option";
  }
  return MakePreadReader(fd, options);
}

}  // namespace hotsnap
