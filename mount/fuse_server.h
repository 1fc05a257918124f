// FuseImageServer: serves the device bytes of an image as one read-only file through FUSE.
//
// The FUSE filesystem mounted at `dir` holds a single regular file, `dir/device`, of exactly
// the image's device size (mode 0444). Reads of it go to an ImageRandomReader, so only the
// chunks read are decoded; a read touching a chunk that fails its hash gets EIO, never
// wrong data. Replies are written straight from the decoded chunks (libfuse's low-level
// API; the kernel's copy into the reader's pages is the only one). The filesystem type is
// "fuse.hotsnap", which is how `hotsnap cleanup` recognises leftovers of a crashed server.
//
// Ownership: the server owns the FUSE session and its serving threads. Stop() (or the
// destructor) unmounts the FUSE filesystem and joins the threads. Move-free: held by
// unique_ptr. Start() must be called with SIGINT/SIGTERM blocked if the caller wants to
// receive them in one thread only (the serving threads inherit the signal mask).
#ifndef HOTSNAP_MOUNT_FUSE_SERVER_H_
#define HOTSNAP_MOUNT_FUSE_SERVER_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "base/status.h"
#include "io/image_random_reader.h"

struct fuse_session;

namespace hotsnap {

constexpr const char* kFuseDeviceFileName = "device";
constexpr const char* kFuseSubtype = "hotsnap";  // mounts show up as type "fuse.hotsnap"

class FuseImageServer {
 public:
  // Mounts the FUSE filesystem at `dir` (an existing empty directory) and starts serving.
  // `on_exit` runs (on a serving thread) when the FUSE session ends for any reason,
  // including an unmount from outside; it must be async-safe enough to call from there.
  static Result<std::unique_ptr<FuseImageServer>> Start(std::shared_ptr<ImageRandomReader> reader,
                                                         const std::string& dir,
                                                         std::function<void()> on_exit);
  ~FuseImageServer();
  FuseImageServer(const FuseImageServer&) = delete;
  FuseImageServer& operator=(const FuseImageServer&) = delete;

  // The served file: dir + "/device".
  std::string device_path() const { return dir_ + "/" + kFuseDeviceFileName; }
  const std::string& dir() const { return dir_; }
  ImageRandomReader& reader() { return *reader_; }

  // Unmounts the FUSE filesystem and waits for the serving threads. Fails with kTarget
  // (EBUSY) while the served file is still open, e.g. by a loop device, unless `force`:
  // then the connection is aborted (readers get ENOTCONN) and the mount detached lazily.
  Status Stop(bool force);

 private:
  FuseImageServer(std::shared_ptr<ImageRandomReader> reader, std::string dir)
      : reader_(std::move(reader)), dir_(std::move(dir)) {}

  std::shared_ptr<ImageRandomReader> reader_;
  std::string dir_;
  struct fuse_session* session_ = nullptr;
  std::thread loop_;
  std::function<void()> on_exit_;
  bool mounted_ = false;
};

// Aborts FUSE connection `connection` (the minor number of the mount's st_dev, as in
// /proc/self/mountinfo) through /sys/fs/fuse/connections: pending and future requests
// fail and the server's /dev/fuse reads end. Used on a mount whose server is dead or will
// not stop. OK if the connection is already gone.
Status AbortFuseConnection(unsigned connection);

}  // namespace hotsnap

#endif  // HOTSNAP_MOUNT_FUSE_SERVER_H_
