// RunMount: the server that serves an image and keeps its filesystem mounted, and the fork
// that puts it in the background.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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
#include "mount/mount_job.h"
#include "mount/mount_plan.h"
#include "mount/mounted_filesystem.h"

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
Status TearDown(MountSet* mounts, FuseImageServer* server) {
  // After `hotsnap umount` the filesystems are unmounted already. On other stop requests a
  // process may still use one: it is detached lazily and disappears when they let go.
  Status first = mounts->UndoAll();
  Status fuse = server->Stop(/*force=*/!first.ok());
  if (!fuse.ok()) Error(fuse.message());
  return first.ok() ? fuse : first;
}

// Waits for a stop request: a signal, or the end of the FUSE session (SIGUSR1).
int WaitForStop() {
  sigset_t signals = ServerSignals();
  int signo = 0;
  while (sigwait(&signals, &signo) != 0) {
  }
  return signo;
}

// Mounts every filesystem of `plan`, recording each part before its kernel objects exist.
// A whole-disk mount skips a partition whose filesystem this kernel has no driver for
// (ENODEV: vfat on a kernel built without it); record->skipped gets every skipped partition's
// notice, in table order, and is written before it returns. Any other
// failure undoes every filesystem mounted so far and names the one that failed;
// *leftovers then says whether some of that could not be undone (the record must stay).
Result<MountSet> MountAll(const MountPlan& plan, uint32_t sector_bytes, MountRecord* record,
                          bool* leftovers) {
  MountSet mounts;
  std::vector<SkippedPartition> skipped = plan.skipped;
  for (const PlannedMount& planned : plan.mounts) {
    record->parts.emplace_back();
    auto update = [record](const MountedPart& part) {
      record->parts.back() = part;
      return WriteMountRecord(*record);
    };
    auto m = MountedFilesystem::Mount(planned, record->device_file, sector_bytes, update);
    if (m.ok()) {
      mounts.Add(std::move(m.value()));
      continue;
    }
    record->parts.pop_back();
    if (plan.whole_disk() && m.status().err() == ENODEV) {
      skipped.push_back(
          {planned.partition, planned.Describe() + " is not mounted: this kernel has no " +
                                  planned.how.type + " driver (mount(2): No such device)"});
      continue;
    }
    Status failed = planned.partition == 0 ? m.status() : m.status().Wrap(planned.Describe());
    if (!plan.whole_disk()) return failed;
    Status undone = mounts.UndoAll();
    if (!undone.ok()) {
      *leftovers = true;
      return failed.WithCleanup(undone);
    }
    return Status(failed.code(),
                  failed.message() + "; nothing of the mount is left (the partitions mounted "
                                     "before it were unmounted again)",
                  failed.err());
  }
  // The notices in table order, for the user (the record carries them to the waiting parent).
  std::stable_sort(skipped.begin(), skipped.end(),
                   [](const SkippedPartition& a, const SkippedPartition& b) {
                     return a.partition < b.partition;
                   });
  std::string why;
  for (const SkippedPartition& s : skipped) {
    record->skipped.push_back(s.notice);
    why += "; " + s.notice;
  }
  if (mounts.size() == 0) {
    return Status(Code::kUnsupported, record->image + ": no partition could be mounted" + why);
  }
  HOTSNAP_RETURN_IF_ERROR(WriteMountRecord(*record));
  return mounts;
}

// The server: builds the mount step by step, calls `ready` once the filesystem is
// mounted, serves until told to stop, and undoes everything. On failure everything built
// so far is undone before it returns. Runs in the forked process or, with --foreground,
// in the caller's.
Status ServeUntilStopped(const MountOptions& o, MountRecord* record, const std::function<void()>& ready) {
  // 1. The mount point: a directory, not already ours (MountDirectory checks that nothing
  //    is mounted on it, or on DIR/pN).
  auto mount_point = CanonicalMountPoint(o.mount_point);
  if (!mount_point.ok()) return mount_point.status();
  *record = NewMountRecord(o.image, *mount_point);
  HOTSNAP_RETURN_IF_ERROR(CheckNoRecord(*mount_point));

  // 2. The image: its index, and which filesystems to mount where, without writing.
  RandomReaderOptions reader_options;
  reader_options.cache_chunks = o.cache_chunks;
  reader_options.chain = o.chain;
  // No read-ahead in the reader: the loop device's readahead (LoopTuning) already asks for
  // the next chunks, in parallel FUSE reads that decode them on several threads. A second
  // read-ahead here measured slower on a busy machine: it also decodes the chunks past the
  // end of every file read, which nobody asked for.
  reader_options.readahead_chunks = 0;
  auto reader = ImageRandomReader::Open(o.image, reader_options);
  if (!reader.ok()) return reader.status();
  const ImageMetadata meta = (*reader)->meta();
  auto plan = PlanMounts(meta, o.image, o.partition, *mount_point);
  if (!plan.ok()) return plan.status();
  char image_path[PATH_MAX];
  if (::realpath(o.image.c_str(), image_path) != nullptr) record->image = image_path;
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

  // 4. Each filesystem: its directory, a read-only loop device over its byte range of that
  //    file, and the read-only mount without journal or log recovery.
  bool leftovers = false;
  auto mounts = MountAll(*plan, meta.logical_sector_bytes, record, &leftovers);
  if (!mounts.ok()) {
    if (leftovers) record_guard.Keep();
    return mounts.status();
  }

  // 5. Ready: the caller may return to the user.
  ready();

  // 6. Serve until a stop request, then undo 4 → 3.
  int signo = WaitForStop();
  if (signo == SIGUSR1) Notice("the FUSE filesystem at " + record->fuse_dir + " went away; unmounting");
  Status s = TearDown(&mounts.value(), server->get());
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
