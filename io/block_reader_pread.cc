// The pread fallback of BlockReader: each read happens synchronously in Queue().
#include <unistd.h>

#include <cerrno>

#include "io/block_reader.h"

namespace hotsnap {
namespace {

class PreadReader : public BlockReader {
 public:
  PreadReader(int fd, const ReaderOptions& options) : fd_(fd), options_(options) {}
  const char* name() const override { return "pread"; }
  unsigned in_flight() const override { return static_cast<unsigned>(done_.size()); }
  Status SetWakeFd(int) override { return Status::Ok(); }

  Status Queue(const ReadRequest& r) override {
    uint8_t* dst = options_.buffers[r.buffer_index].data() + r.buffer_offset;
    ssize_t n;
    do {
      n = ::pread(fd_, dst, r.length_bytes, static_cast<off_t>(r.offset_bytes));
    } while (n < 0 && errno == EINTR);
    done_.push_back(ReadCompletion{r.tag, n < 0 ? -errno : static_cast<int32_t>(n)});
    return Status::Ok();
  }

  Status Reap(std::vector<ReadCompletion>* out, bool) override {
    out->insert(out->end(), done_.begin(), done_.end());
    done_.clear();
    return Status::Ok();
  }

 private:
  int fd_;
  ReaderOptions options_;
  std::vector<ReadCompletion> done_;
};

}  // namespace

std::unique_ptr<BlockReader> MakePreadReader(int fd, const ReaderOptions& options) {
  return std::make_unique<PreadReader>(fd, options);
}

}  // namespace hotsnap
