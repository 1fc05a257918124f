#include "mount/loop_attachment.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>
#include <vector>

#include "base/log.h"

namespace hotsnap {
namespace {

std::string SysfsBackingFile(const std::string& name) {  // name: "loop3"
  std::ifstream in("/sys/block/" + name + "/loop/backing_file");
  std::string line;
  if (!in || !std::getline(in, line)) return "";
  return line;
}

std::string BaseName(const std::string& device) {
  size_t slash = device.rfind('/');
  return slash == std::string::npos ? device : device.substr(slash + 1);
}

// Configures the loop device `loop_fd` onto `file_fd` in one step (LOOP_CONFIGURE).
// EINVAL or ENOTTY: the kernel lacks LOOP_CONFIGURE, or refuses one of `flags`.
int ConfigureAtOnce(int loop_fd, int file_fd, const std::string& file, uint32_t block_bytes,
                    uint32_t flags, const LoopTuning& tuning) {
  struct loop_config config;
  std::memset(&config, 0, sizeof(config));
  config.fd = static_cast<uint32_t>(file_fd);
  config.block_size = block_bytes;
  config.info.lo_flags = flags;
  config.info.lo_offset = tuning.offset_bytes;
  config.info.lo_sizelimit = tuning.size_limit_bytes;
  std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name), file.c_str(), LO_NAME_SIZE - 1);
  return ::ioctl(loop_fd, LOOP_CONFIGURE, &config) == 0 ? 0 : errno;
}

// Configures the loop device `loop_fd` onto `file_fd`, read-only and autoclear, with direct
// I/O if `direct_io` and the kernel can do it on that file (it is an optimisation: without
// it the device still works, through the backing file's page cache).
Status Configure(int loop_fd, int file_fd, const std::string& file, uint32_t block_bytes,
                 const LoopTuning& tuning) {
  const bool direct_io = tuning.direct_io;
  const uint32_t flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
  int err = ConfigureAtOnce(loop_fd, file_fd, file, block_bytes,
                            flags | (direct_io ? LO_FLAGS_DIRECT_IO : 0), tuning);
  // Some kernels refuse direct I/O they cannot do instead of ignoring the flag.
  if (direct_io && (err == EINVAL || err == ENOTTY)) {
    err = ConfigureAtOnce(loop_fd, file_fd, file, block_bytes, flags, tuning);
  }
  if (err == 0) return Status::Ok();
  if (err != EINVAL && err != ENOTTY) return Status::FromErrno(Code::kTarget, err, "LOOP_CONFIGURE");
  // Kernels before 5.8: two steps (the read-only flag comes from the file's open mode).
  if (::ioctl(loop_fd, LOOP_SET_FD, file_fd) != 0) return Status::FromErrno(Code::kTarget, errno, "LOOP_SET_FD");
  struct loop_info64 info;
  std::memset(&info, 0, sizeof(info));
  info.lo_flags = LO_FLAGS_AUTOCLEAR;
  info.lo_offset = tuning.offset_bytes;
  info.lo_sizelimit = tuning.size_limit_bytes;
  std::strncpy(reinterpret_cast<char*>(info.lo_file_name), file.c_str(), LO_NAME_SIZE - 1);
  if (::ioctl(loop_fd, LOOP_SET_STATUS64, &info) != 0) {
    err = errno;
    ::ioctl(loop_fd, LOOP_CLR_FD, 0);
    return Status::FromErrno(Code::kTarget, err, "LOOP_SET_STATUS64");
  }
  if (block_bytes != 0 && block_bytes != 512) ::ioctl(loop_fd, LOOP_SET_BLOCK_SIZE, block_bytes);
  if (direct_io) ::ioctl(loop_fd, LOOP_SET_DIRECT_IO, 1ul);  // best effort, as above
  return Status::Ok();
}

// Waits until `device` no longer has `backing_file` (it was detached, or reused).
bool WaitReleased(const std::string& device, const std::string& backing_file, int wait_seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait_seconds);
  while (true) {
    if (LoopBackingFile(device) != backing_file) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

std::string LoopBackingFile(const std::string& device) { return SysfsBackingFile(BaseName(device)); }

bool LoopAttachment::direct_io() const {
  std::ifstream in("/sys/block/" + BaseName(device_) + "/loop/dio");
  std::string line;
  return in && std::getline(in, line) && line == "1";
}

Result<LoopAttachment> LoopAttachment::Attach(const std::string& file, uint32_t block_bytes,
                                              const LoopTuning& tuning) {
  UniqueFd file_fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file_fd.valid()) return Status::FromErrno(Code::kSource, errno, "opening " + file);
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control.valid()) return Status::FromErrno(Code::kUnsupported, errno, "opening /dev/loop-control");
  // Another process may take the free device between GET_FREE and CONFIGURE: retry.
  for (int attempt = 0; attempt < 20; ++attempt) {
    int n = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (n < 0) return Status::FromErrno(Code::kTarget, errno, "finding a free loop device");
    std::string device = "/dev/loop" + std::to_string(n);
    UniqueFd loop_fd(::open(device.c_str(), O_RDWR | O_CLOEXEC));
    if (!loop_fd.valid()) return Status::FromErrno(Code::kTarget, errno, "opening " + device);
    Status s = Configure(loop_fd.get(), file_fd.get(), file, block_bytes, tuning);
    if (!s.ok()) {
      if (s.err() == EBUSY) continue;
      return s.Wrap("attaching " + file + " to " + device);
    }
    // Readahead of the filesystem on top is the device's: 128 KiB by default, which would
    // turn a sequential file read into many small FUSE round trips.
    if (tuning.readahead_bytes != 0) {
      ::ioctl(loop_fd.get(), BLKRASET, static_cast<unsigned long>(tuning.readahead_bytes / 512));
    }
    LoopAttachment a;
    a.device_ = device;
    a.backing_file_ = LoopBackingFile(device);
    a.fd_ = std::move(loop_fd);
    return a;
  }
  return Status(Code::kTarget, "attaching " + file + ": every free loop device was taken by others; retry");
}

LoopAttachment::LoopAttachment(LoopAttachment&& other) noexcept
    : device_(std::move(other.device_)), backing_file_(std::move(other.backing_file_)), fd_(std::move(other.fd_)) {}

LoopAttachment& LoopAttachment::operator=(LoopAttachment&& other) noexcept {
  if (this != &other) {
    if (attached()) (void)Detach(0);
    device_ = std::move(other.device_);
    backing_file_ = std::move(other.backing_file_);
    fd_ = std::move(other.fd_);
  }
  return *this;
}

LoopAttachment::~LoopAttachment() {
  if (attached()) {
    Status s = Detach();
    if (!s.ok()) Error(s.message());
  }
}

Status LoopAttachment::Detach(int wait_seconds) {
  if (!attached()) return Status::Ok();
  // With autoclear set, LOOP_CLR_FD while a filesystem still holds the device only marks
  // it; the kernel detaches when the last user closes. ENXIO: already detached.
  if (::ioctl(fd_.get(), LOOP_CLR_FD, 0) != 0 && errno != ENXIO && errno != EBUSY) {
    return Status::FromErrno(Code::kTarget, errno, "detaching " + device_);
  }
  fd_.Reset();
  if (!WaitReleased(device_, backing_file_, wait_seconds)) {
    return Status(Code::kTarget, device_ + " is still attached to " + backing_file_ + " after " +
                                     std::to_string(wait_seconds) + " s (something still uses it; it "
                                     "detaches itself when released)");
  }
  return Status::Ok();
}

Status DetachLoopIfBackedBy(const std::string& device, const std::string& expected_backing_file,
                            int wait_seconds) {
  std::string backing = LoopBackingFile(device);
  if (backing.empty() || backing != expected_backing_file) return Status::Ok();
  UniqueFd fd(::open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT || errno == ENXIO) return Status::Ok();
    return Status::FromErrno(Code::kTarget, errno, "opening " + device);
  }
  if (::ioctl(fd.get(), LOOP_CLR_FD, 0) != 0 && errno != ENXIO) {
    return Status::FromErrno(Code::kTarget, errno, "detaching " + device);
  }
  fd.Reset();
  if (!WaitReleased(device, backing, wait_seconds)) {
    return Status(Code::kTarget, device + " is still attached to " + backing +
                                     " (in use; it detaches itself when released)");
  }
  return Status::Ok();
}

std::vector<std::string> LoopDevicesBackedUnder(const std::string& prefix) {
  std::vector<std::string> found;
  DIR* dir = ::opendir("/sys/block");
  if (dir == nullptr) return found;
  while (struct dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name.rfind("loop", 0) != 0) continue;
    std::string backing = SysfsBackingFile(name);
    if (!backing.empty() && backing.rfind(prefix, 0) == 0) found.push_back("/dev/" + name);
  }
  ::closedir(dir);
  return found;
}

}  // namespace hotsnap
