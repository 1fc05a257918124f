#define FUSE_USE_VERSION 312
#include "mount/fuse_server.h"

#include <fcntl.h>
#include <fuse3/fuse.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"

namespace hotsnap {
namespace {

constexpr long kFuseCtlSuperMagic = 0x65735543;  // FUSE_CTL_SUPER_MAGIC

FuseImageServer* Self() { return static_cast<FuseImageServer*>(fuse_get_context()->private_data); }

bool IsDevicePath(const char* path) {
  return path[0] == '/' && std::strcmp(path + 1, kFuseDeviceFileName) == 0;
}

void* OnInit(struct fuse_conn_info* conn, struct fuse_config* cfg) {
  // The image never changes while it is served: let the kernel keep what it has read, and
  // never re-ask for attributes or names.
  cfg->kernel_cache = 1;
  cfg->entry_timeout = 86400;
  cfg->attr_timeout = 86400;
  cfg->negative_timeout = 86400;
  // Sequential reads of the loop device become large FUSE reads, which map onto few chunks.
  conn->max_readahead = 1u << 20;
  return fuse_get_context()->private_data;
}

int OnGetattr(const char* path, struct stat* st, struct fuse_file_info*) {
  std::memset(st, 0, sizeof(*st));
  if (std::strcmp(path, "/") == 0) {
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    return 0;
  }
  if (!IsDevicePath(path)) return -ENOENT;
  st->st_mode = S_IFREG | 0444;
  st->st_nlink = 1;
  st->st_size = static_cast<off_t>(Self()->reader().device_bytes());
  st->st_blksize = 4096;
  return 0;
}

int OnReaddir(const char* path, void* buf, fuse_fill_dir_t filler, off_t, struct fuse_file_info*,
              enum fuse_readdir_flags) {
  if (std::strcmp(path, "/") != 0) return -ENOENT;
  filler(buf, ".", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  filler(buf, "..", nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  filler(buf, kFuseDeviceFileName, nullptr, 0, static_cast<fuse_fill_dir_flags>(0));
  return 0;
}

int OnOpen(const char* path, struct fuse_file_info* fi) {
  if (!IsDevicePath(path)) return -ENOENT;
  if ((fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
  fi->keep_cache = 1;
  return 0;
}

int OnRead(const char* path, char* buf, size_t size, off_t offset, struct fuse_file_info*) {
  if (offset < 0) return -EINVAL;
  FuseImageServer* self = Self();
  Result<size_t> n = self->reader().Read(static_cast<uint64_t>(offset), size, buf);
  if (!n.ok()) {
    // The filesystem above turns this into EIO for the file (or metadata) it was reading.
    Error("read of " + std::to_string(size) + " bytes at device offset " + std::to_string(offset) +
          " failed: " + n.status().message());
    return -EIO;
  }
  return static_cast<int>(*n);
}

const struct fuse_operations kOperations = [] {
  struct fuse_operations ops;
  std::memset(&ops, 0, sizeof(ops));
  ops.init = OnInit;
  ops.getattr = OnGetattr;
  ops.readdir = OnReaddir;
  ops.open = OnOpen;
  ops.read = OnRead;
  return ops;
}();

// Mount option values are comma-separated; keep the image name readable without commas.
std::string FsName(const std::string& image) {
  std::string name = "hotsnap:" + image;
  for (char& c : name) {
    if (c == ',' || c == '\\' || c == ' ') c = '_';
  }
  return name;
}

}  // namespace

Result<std::unique_ptr<FuseImageServer>> FuseImageServer::Start(std::shared_ptr<ImageRandomReader> reader,
                                                                 const std::string& dir,
                                                                 std::function<void()> on_exit) {
  std::unique_ptr<FuseImageServer> server(new FuseImageServer(std::move(reader), dir));
  server->on_exit_ = std::move(on_exit);
  std::string options = "ro,fsname=" + FsName(server->reader_->name()) + ",subtype=" + kFuseSubtype;
  std::vector<std::string> argv_text = {"hotsnap", "-o", options};
  std::vector<char*> argv;
  for (std::string& a : argv_text) argv.push_back(a.data());
  struct fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  server->fuse_ = fuse_new(&args, &kOperations, sizeof(kOperations), server.get());
  if (server->fuse_ == nullptr) {
    return Status(Code::kInternal, "fuse_new failed for " + dir + " (is libfuse3 usable?)");
  }
  if (fuse_mount(server->fuse_, dir.c_str()) != 0) {
    return Status(Code::kUnsupported, "mounting FUSE at " + dir +
                                          " failed (needs /dev/fuse and root; see the messages above)");
  }
  server->mounted_ = true;
  FuseImageServer* raw = server.get();
  server->loop_ = std::thread([raw] {
    struct fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(config, 8);
    fuse_loop_cfg_set_idle_threads(config, 4);
    fuse_loop_mt(raw->fuse_, config);
    fuse_loop_cfg_destroy(config);
    if (raw->on_exit_) raw->on_exit_();
  });
  return server;
}

Status FuseImageServer::Stop(bool force) {
  if (!mounted_) return Status::Ok();
  struct stat st;
  bool have_dev = ::stat(dir_.c_str(), &st) == 0;
  // Unmounting the FUSE filesystem ends the connection, which ends the serving loop.
  // The served file may be released a moment after a loop device lets go of it.
  int err = 0;
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (::umount2(dir_.c_str(), UMOUNT_NOFOLLOW) == 0 || errno == EINVAL) {
      err = 0;
      break;
    }
    err = errno;
    if (err != EBUSY) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (err != 0) {
    if (!force) return Status::FromErrno(Code::kTarget, err, "unmounting FUSE at " + dir_);
    // Someone still holds the file open: cut them off so the serving threads can end.
    if (have_dev) (void)AbortFuseConnection(minor(st.st_dev));
    (void)::umount2(dir_.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
  }
  fuse_exit(fuse_);
  if (loop_.joinable()) loop_.join();
  mounted_ = false;
  fuse_unmount(fuse_);  // only closes the session's fd: the kernel mount is gone already
  return Status::Ok();
}

FuseImageServer::~FuseImageServer() {
  if (mounted_) {
    Status s = Stop(/*force=*/true);
    if (!s.ok()) Error(s.message());
  }
  if (loop_.joinable()) loop_.join();
  if (fuse_ != nullptr) fuse_destroy(fuse_);
}

Status AbortFuseConnection(unsigned connection) {
  const char* kControlDir = "/sys/fs/fuse/connections";
  std::string path = std::string(kControlDir) + "/" + std::to_string(connection) + "/abort";
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid() && errno == ENOENT) {
    // systemd mounts the FUSE control filesystem at boot; minimal systems may not have.
    struct statfs fs;
    if (::statfs(kControlDir, &fs) == 0 && fs.f_type != kFuseCtlSuperMagic &&
        ::mount("fusectl", kControlDir, "fusectl", 0, nullptr) != 0 && errno != EBUSY) {
      return Status::FromErrno(Code::kInternal, errno, std::string("mounting fusectl at ") + kControlDir);
    }
    fd.Reset(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  }
  if (!fd.valid()) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno(Code::kInternal, errno, "opening " + path);
  }
  if (::write(fd.get(), "1", 1) != 1) return Status::FromErrno(Code::kInternal, errno, "writing " + path);
  return Status::Ok();
}

}  // namespace hotsnap
