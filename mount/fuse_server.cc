#define FUSE_USE_VERSION 312
#include "mount/fuse_server.h"

#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
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

// Inode numbers of the two objects the filesystem holds.
constexpr fuse_ino_t kRootIno = FUSE_ROOT_ID;
constexpr fuse_ino_t kDeviceIno = 2;
// The image never changes while it is served: the kernel may keep names and attributes.
constexpr double kForever = 86400;

FuseImageServer* Self(fuse_req_t req) { return static_cast<FuseImageServer*>(fuse_req_userdata(req)); }

bool Attributes(FuseImageServer* self, fuse_ino_t ino, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = ino;
  if (ino == kRootIno) {
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
    return true;
  }
  if (ino != kDeviceIno) return false;
  st->st_mode = S_IFREG | 0444;
  st->st_nlink = 1;
  st->st_size = static_cast<off_t>(self->reader().device_bytes());
  st->st_blksize = 4096;
  return true;
}

void OnInit(void*, struct fuse_conn_info* conn) {
  // Reads come from a loop device doing direct I/O: each of its requests becomes FUSE
  // reads of up to 1 MiB (the most libfuse's buffers take), sent together as background
  // requests. 16 of them cover the loop device's 16 MiB readahead window, so a whole
  // window is in flight at once and the chunks in it are decoded in parallel.
  conn->max_background = 16;
  conn->congestion_threshold = 12;
}

void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != kRootIno || std::strcmp(name, kFuseDeviceFileName) != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.ino = kDeviceIno;
  e.attr_timeout = kForever;
  e.entry_timeout = kForever;
  Attributes(Self(req), kDeviceIno, &e.attr);
  fuse_reply_entry(req, &e);
}

void OnGetattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info*) {
  struct stat st;
  if (!Attributes(Self(req), ino, &st)) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_reply_attr(req, &st, kForever);
}

void OnOpen(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  if (ino != kDeviceIno) {
    fuse_reply_err(req, ino == kRootIno ? EISDIR : ENOENT);
    return;
  }
  if ((fi->flags & O_ACCMODE) != O_RDONLY) {
    fuse_reply_err(req, EROFS);
    return;
  }
  fi->keep_cache = 1;  // cached pages stay valid across opens: the bytes never change
  fuse_reply_open(req, fi);
}

// Replies straight from the decoded chunks: the kernel's copy into the pages the loop
// device reads into is the only one. The chunks stay pinned until the reply is written.
void OnRead(fuse_req_t req, fuse_ino_t, size_t size, off_t offset, struct fuse_file_info*) {
  if (offset < 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  PinnedBytes bytes;
  Status s = Self(req)->reader().Pin(static_cast<uint64_t>(offset), size, &bytes);
  if (!s.ok()) {
    // The filesystem above turns this into EIO for the file (or metadata) it was reading.
    Error("read of " + std::to_string(size) + " bytes at device offset " + std::to_string(offset) +
          " failed: " + s.message());
    fuse_reply_err(req, EIO);
    return;
  }
  fuse_reply_iov(req, bytes.pieces.data(), static_cast<int>(bytes.pieces.size()));
}

void OnReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info*) {
  if (ino != kRootIno) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  struct Entry {
    const char* name;
    fuse_ino_t ino;
    mode_t mode;
  };
  const Entry entries[] = {
      {".", kRootIno, S_IFDIR}, {"..", kRootIno, S_IFDIR}, {kFuseDeviceFileName, kDeviceIno, S_IFREG}};
  std::vector<char> buf(size);
  size_t used = 0;
  for (off_t i = offset; i >= 0 && i < static_cast<off_t>(std::size(entries)); ++i) {
    struct stat st;
    std::memset(&st, 0, sizeof(st));
    st.st_ino = entries[i].ino;
    st.st_mode = entries[i].mode;
    size_t need = fuse_add_direntry(req, buf.data() + used, size - used, entries[i].name, &st, i + 1);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

const struct fuse_lowlevel_ops kOperations = [] {
  struct fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof(ops));
  ops.init = OnInit;
  ops.lookup = OnLookup;
  ops.getattr = OnGetattr;
  ops.open = OnOpen;
  ops.read = OnRead;
  ops.readdir = OnReaddir;
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
  server->session_ = fuse_session_new(&args, &kOperations, sizeof(kOperations), server.get());
  if (server->session_ == nullptr) {
    return Status(Code::kInternal, "fuse_session_new failed for " + dir + " (is libfuse3 usable?)");
  }
  if (fuse_session_mount(server->session_, dir.c_str()) != 0) {
    return Status(Code::kUnsupported, "mounting FUSE at " + dir +
                                          " failed (needs /dev/fuse and root; see the messages above)");
  }
  server->mounted_ = true;
  FuseImageServer* raw = server.get();
  server->loop_ = std::thread([raw] {
    // Enough threads for every background request the kernel sends at once (OnInit), all
    // kept: a thread started and ended per burst of reads costs more than it saves.
    struct fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(config, 16);
    fuse_loop_cfg_set_idle_threads(config, 16);
    fuse_session_loop_mt(raw->session_, config);
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
  fuse_session_exit(session_);
  if (loop_.joinable()) loop_.join();
  mounted_ = false;
  fuse_session_unmount(session_);  // only closes the session's fd: the kernel mount is gone already
  return Status::Ok();
}

FuseImageServer::~FuseImageServer() {
  if (mounted_) {
    Status s = Stop(/*force=*/true);
    if (!s.ok()) Error(s.message());
  }
  if (loop_.joinable()) loop_.join();
  if (session_ != nullptr) fuse_session_destroy(session_);
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
