// RunMount: the server that serves an image and keeps its filesystem mounted, and the fork
// that puts it in the background.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "base/interrupt.h"
#include "base/log.h"
#include "io/image_random_reader.h"
#include "mount/fs_mount.h"
#include "mount/fuse_server.h"
#include "mount/loop_attachment.h"
#include "mount/mount_job.h"

namespace hotsnap {
namespace {

// The signals that stop a server. SIGUSR1 is the FUSE loop telling us it ended.
sigset_t ServerSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  return set;
}

Result<std::string> CanonicalMountPoint(const std::string& path) {
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) == nullptr) {
    return Status::FromErrno(Code::kTarget, errno, "mount point " + path);
  }
  struct stat st;
  if (::stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status(Code::kTarget, "mount point " + path + " is not a directory");
  }
  if (IsMountPoint(resolved)) {
    return Status(Code::kTarget, "mount point " + path + " already has a filesystem mounted on it");
  }
  return std::string(resolved);
}

// A record for this mount point must not exist: it is live, or leftovers of a crash.
Status CheckNoRecord(const std::string& mount_point) {
  auto existing = ReadMountRecord(MountIdFor(mount_point));
  if (!existing.ok()) return Status::Ok();
  if (ServerAlive(*existing)) {
    return Status(Code::kTarget, mount_point + " is already a hotsnap mount of " + existing->image +
                                     " (server pid " + std::to_string(existing->pid) + ")");
  }
  return Status(Code::kTarget, "a crashed hotsnap mount at " + mount_point +
                                   " left things behind; run 'hotsnap cleanup' first");
}

// Removes the record (and the FUSE directory) when the mount it describes is gone.
class RecordGuard {
 public:
  explicit RecordGuard(const MountRecord* record) : record_(record) {}
  ~RecordGuard() {
    if (!keep_) RemoveMountRecord(*record_);
  }
  RecordGuard(const RecordGuard&) = delete;
  RecordGuard& operator=(const RecordGuard&) = delete;
  // Something could not be undone: leave the record for `hotsnap cleanup`.
  void Keep() { keep_ = true; }

 private:
  const MountRecord* record_;
  bool keep_ = false;
};

// Undoes a mount in reverse order; every step is tried, the first failure is returned.
Status TearDown(FsMount* fs, LoopAttachment* loop, FuseImageServer* server) {
  Status first;
  auto keep = [&first](Status s) {
    if (!s.ok()) {
      Error(s.message());
      if (first.ok()) first = s;
    }
  };
  // After `hotsnap umount` the filesystem is unmounted already. On other stop requests a
  // process may still use it: detach it lazily; it disappears when they let go.
  keep(fs->Unmount(/*lazy=*/true));
  keep(loop->Detach());
  keep(server->Stop(/*force=*/!first.ok()));
  return first;
}

// Waits for a stop request: a signal, or the end of the FUSE session (SIGUSR1).
int WaitForStop() {
  sigset_t signals = ServerSignals();
  int signo = 0;
  while (sigwait(&signals, &signo) != 0) {
  }
  return signo;
}

// The filesystem to mount: the image's own, or with a whole-disk image the partition
// `o.partition`, whose byte range *tuning then limits the loop device to.
Result<std::string> FilesystemToMount(const MountOptions& o, const ImageMetadata& meta,
                                      LoopTuning* tuning) {
  const ImagePartitionTable& table = meta.partition_table;
  if (table.empty()) {
    if (o.partition == 0) return meta.fs_type;
    return Status(Code::kUsage, o.image + " is not the image of a partitioned disk; mount it "
                                          "without --partition");
  }
  std::string mountable;
  for (const ImagePartition& p : table.partitions) {
    if (p.number == o.partition && !p.extended) {
      tuning->offset_bytes = p.start_bytes;
      tuning->size_limit_bytes = p.size_bytes;
      return p.fs_type;
    }
    if (ReadOnlyMountFor(p.fs_type).ok()) {
      mountable += (mountable.empty() ? "" : ", ") + ("p" + std::to_string(p.number)) + " " +
                   p.fs_type;
    }
  }
  std::string what = o.partition == 0 ? " is the image of a whole " + table.type + " disk"
                                      : " has no partition " + std::to_string(o.partition);
  return Status(Code::kUsage, o.image + what + "; mount one partition with --partition N (" +
                                  (mountable.empty() ? "none is mountable" : mountable) + ")");
}

// The server: builds the mount step by step, calls `ready` once the filesystem is
// mounted, serves until told to stop, and undoes everything. On failure everything built
// so far is undone before it returns. Runs in the forked process or, with --foreground,
// in the caller's.
Status ServeUntilStopped(const MountOptions& o, MountRecord* record, const std::function<void()>& ready) {
  // 1. The mount point: a directory, not mounted on, not already ours.
  auto mount_point = CanonicalMountPoint(o.mount_point);
  if (!mount_point.ok()) return mount_point.status();
  *record = NewMountRecord(o.image, *mount_point);
  HOTSNAP_RETURN_IF_ERROR(CheckNoRecord(*mount_point));

  // 2. The image: its index, and how to mount its filesystem without writing.
  RandomReaderOptions reader_options;
  reader_options.cache_chunks = o.cache_chunks;
  // No read-ahead in the reader: the loop device's readahead (LoopTuning) already asks for
  // the next chunks, in parallel FUSE reads that decode them on several threads. A second
  // read-ahead here measured slower on a busy machine: it also decodes the chunks past the
  // end of every file read, which nobody asked for.
  reader_options.readahead_chunks = 0;
  auto reader = ImageRandomReader::Open(o.image, reader_options);
  if (!reader.ok()) return reader.status();
  const ImageMetadata meta = (*reader)->meta();
  LoopTuning tuning;
  auto fs_type = FilesystemToMount(o, meta, &tuning);
  if (!fs_type.ok()) return fs_type.status();
  auto how = ReadOnlyMountFor(*fs_type);
  if (!how.ok()) return how.status();
  char image_path[PATH_MAX];
  if (::realpath(o.image.c_str(), image_path) != nullptr) record->image = image_path;
  record->fs_type = *fs_type;
  record->pid = ::getpid();
  record->pid_start_ticks = ProcessStartTicks(record->pid);

  // 3. Record first, so that a crash from here on leaves something `hotsnap cleanup`
  //    finds; then the device bytes as a file, through FUSE.
  HOTSNAP_RETURN_IF_ERROR(WriteMountRecord(*record));
  RecordGuard record_guard(record);
  if (::mkdir(record->fuse_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno(Code::kTarget, errno, "creating " + record->fuse_dir);
  }
  const pid_t self = record->pid;
  auto server = FuseImageServer::Start(std::shared_ptr<ImageRandomReader>(std::move(reader.value())),
                                       record->fuse_dir, [self] { ::kill(self, SIGUSR1); });
  if (!server.ok()) return server.status();

  // 4. A read-only loop device over that file.
  auto loop = LoopAttachment::Attach(record->device_file, meta.logical_sector_bytes, tuning);
  if (!loop.ok()) return loop.status();
  if (!loop->direct_io()) {
    Notice(loop->device() + " reads through the page cache (this kernel cannot do direct I/O on a FUSE "
           "file): reads through the mount work, more slowly");
  }
  record->loop_device = loop->device();
  HOTSNAP_RETURN_IF_ERROR(WriteMountRecord(*record));

  // 5. The filesystem, read-only, without journal or log recovery.
  auto fs = FsMount::Mount(loop->device(), *mount_point, *how);
  if (!fs.ok()) return fs.status();

  // 6. Ready: the caller may return to the user.
  ready();

  // 7. Serve until a stop request, then undo 5 → 3.
  int signo = WaitForStop();
  if (signo == SIGUSR1) Notice("the FUSE filesystem at " + record->fuse_dir + " went away; unmounting");
  Status s = TearDown(&fs.value(), &loop.value(), server->get());
  if (!s.ok()) record_guard.Keep();
  return s;
}

// Runs the server and reports readiness (or the failure) through `ready` exactly once.
Status Serve(const MountOptions& o, const std::function<void(const Status&, const MountRecord&)>& ready) {
  // Stop signals are taken by sigwait; every thread started from here on inherits this.
  sigset_t signals = ServerSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  MountRecord record;
  bool reported = false;
  Status s = ServeUntilStopped(o, &record, [&] {
    reported = true;
    ready(Status::Ok(), record);
  });
  if (!reported) ready(s.ok() ? Status(Code::kInternal, "server stopped before it was ready") : s, record);
  return s;
}

// The report from the forked server to the waiting parent, over a pipe:
// "<code> <errno>\n<message>". Code 0 means mounted.
void SendReport(int fd, const Status& s) {
  std::string text = std::to_string(static_cast<int>(s.code())) + " " + std::to_string(s.err()) + "\n" +
                     s.message();
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

// Reads the server's report; EOF without one means it died. Returns kInterrupted if a
// signal arrived while waiting.
Status ReceiveReport(int fd) {
  std::string text;
  char buf[512];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      if (Interrupted()) return Status(Code::kInterrupted, "interrupted while the mount was being set up");
      continue;
    }
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  size_t newline = text.find('\n');
  if (newline == std::string::npos) {
    return Status(Code::kInternal, "the mount server exited before reporting (its log is in " + MountsDir() + ")");
  }
  int code = 0, err = 0;
  if (std::sscanf(text.c_str(), "%d %d", &code, &err) != 2) return Status(Code::kInternal, "garbled server report");
  if (code == 0) return Status::Ok();
  return Status(static_cast<Code>(code), text.substr(newline + 1), err);
}

// In the forked server: its own session (no terminal signals), stdin from /dev/null,
// stdout and stderr to the log file.
void Detach(const std::string& log_file) {
  ::setsid();
  int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
  int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  int out = log_fd >= 0 ? log_fd : null_fd;
  if (out >= 0) {
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
  }
  if (log_fd >= 0) ::close(log_fd);
  if (null_fd >= 0) ::close(null_fd);
}

}  // namespace

Result<MountOutcome> RunMount(const MountOptions& o) {
  if (o.foreground) {
    Status ready_status;
    Status s = Serve(o, [&](const Status& status, const MountRecord& record) {
      ready_status = status;
      if (status.ok() && o.on_ready) o.on_ready(record);
    });
    if (!ready_status.ok()) return ready_status;
    if (!s.ok()) return s;
    return MountOutcome{};
  }

  // The log file's name depends on the mount point only; its directory must exist before
  // the fork, as the server writes there at once.
  char resolved[PATH_MAX];
  std::string log_file = "/dev/null";
  if (::realpath(o.mount_point.c_str(), resolved) != nullptr) {
    MountRecord planned = NewMountRecord(o.image, resolved);
    if (::mkdir(RunDir().c_str(), 0700) == 0 || errno == EEXIST) {
      if (::mkdir(MountsDir().c_str(), 0700) == 0 || errno == EEXIST) log_file = planned.log_file;
    }
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno(Code::kInternal, errno, "pipe");
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    return Status::FromErrno(Code::kInternal, err, "fork");
  }
  if (pid == 0) {
    // The server process. It returns through main like any command, after teardown.
    ::close(fds[0]);
    Detach(log_file);
    Status s = Serve(o, [&](const Status& status, const MountRecord&) {
      SendReport(fds[1], status);
      ::close(fds[1]);
    });
    if (!s.ok()) return s;
    return MountOutcome{/*was_server=*/true};
  }
  ::close(fds[1]);
  Status report = ReceiveReport(fds[0]);
  ::close(fds[0]);
  if (report.code() == Code::kInterrupted) {
    // The server finishes setting up, sees the signal and undoes it all; wait for that.
    ::kill(pid, SIGTERM);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return report;
  }
  if (!report.ok()) {
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return report;
  }
  auto record = ReadMountRecord(MountIdFor(resolved));
  if (!record.ok()) return record.status();
  if (o.on_ready) o.on_ready(*record);
  return MountOutcome{};
}

}  // namespace hotsnap
