#include "agent/backup_job.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <cstdlib>
#include <memory>

#include "agent/backup_pipeline.h"
#include "agent/events.h"
#include "agent/privileges.h"
#include "agent/progress.h"
#include "agent/tracked_copy.h"
#include "agent/used_map.h"
#include "base/log.h"
#include "fsmap/used_block_map.h"
#include "io/image_writer.h"
#include "io/sink.h"
#include "io/source_device.h"
#include "io/ssh_remote.h"
#include "snapshot/device_use.h"
#include "snapshot/freeze_view.h"
#include "snapshot/lvm_view.h"
#include "snapshot/source_lock.h"
#include "snapshot/view.h"

namespace hotsnap {
namespace {

std::string NowUtc() {
  char buf[32];
  time_t now = ::time(nullptr);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "";
  return buf;
}

// --snapshot none reads the device as it is, so the device must not be changing.
Status CheckPlainReadIsConsistent(const std::string& path, const DeviceUse& use) {
  if (use.mounted_read_write()) {
    return Status(Code::kSource,
                  path + " is " + use.Describe() +
                      ". With --snapshot none hotsnap reads the device as it is; a filesystem "
                      "that is written during the read gives an image mixing old and new "
                      "blocks, which may not mount. Use --snapshot freeze (small volumes), "
                      "unmount it, or remount it read-only (mount -o remount,ro).");
  }
  return Status::Ok();
}

// The view of a source nobody writes to: the source itself.
class PlainView : public ConsistentView {
 public:
  explicit PlainView(std::string path) : path_(std::move(path)) {}
  const std::string& device_path() const override { return path_; }
  std::string mode() const override { return "none"; }
  Status Release() override { return Status::Ok(); }

 private:
  std::string path_;
};

// The read-write mount of the source's filesystem, if any.
const MountUse* ReadWriteMount(const DeviceUse& use) {
  for (const MountUse& m : use.mounts) {
    if (m.read_write) return &m;
  }
  return nullptr;
}

// Whether `path` lives on the filesystem mounted at `mount_point`.
bool OnFilesystemOf(const std::string& path, const std::string& mount_point) {
  struct stat fs, p;
  if (::stat(mount_point.c_str(), &fs) != 0) return false;
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  return ::stat(dir.c_str(), &p) == 0 && p.st_dev == fs.st_dev;
}

// While the filesystem is frozen we must write nothing to it: not the image, not its
// temporary file, not stdout redirected into it.
Status CheckOutputNotOnFrozenFs(const BackupOptions& options, const std::string& mount_point) {
  struct stat fs, out;
  if (::stat(mount_point.c_str(), &fs) != 0) return Status::Ok();
  if (options.dest == "-") {
    if (::fstat(STDOUT_FILENO, &out) == 0 && S_ISREG(out.st_mode) && out.st_dev == fs.st_dev) {
      return Status(Code::kUsage, "stdout is a file on the filesystem that would be frozen (" +
                                      mount_point + "); writing to it would block until the thaw");
    }
    return Status::Ok();
  }
  if (OnFilesystemOf(options.dest, mount_point)) {
    return Status(Code::kUsage, "destination " + options.dest + " is on the filesystem that would "
                                "be frozen (" + mount_point + "); writing the image there would "
                                "block until the thaw. Write it to another filesystem");
  }
  return Status::Ok();
}

// Whether --snapshot auto should take an LVM snapshot of `path`.
bool IsLogicalVolume(const std::string& path) {
  if (!LvmAvailable()) return false;
  auto lv = FindLogicalVolume(RealLvmControl(), path);
  return lv.ok() && lv->has_value();
}

// Opens the consistent view the chosen mode gives.
Result<std::unique_ptr<ConsistentView>> OpenView(const BackupOptions& options, const DeviceUse& use) {
  if (options.snapshot == "none") {
    HOTSNAP_RETURN_IF_ERROR(CheckPlainReadIsConsistent(options.source, use));
    return std::unique_ptr<ConsistentView>(new PlainView(options.source));
  }
  if (options.snapshot == "freeze") {
    const MountUse* mount = ReadWriteMount(use);
    if (mount == nullptr) {
      Notice(options.source + " is not mounted read-write; nothing to freeze, reading it as it is");
      return std::unique_ptr<ConsistentView>(new PlainView(options.source));
    }
    FreezeViewOptions f;
    f.source = options.source;
    f.mount_point = mount->mount_point;
    f.max_freeze = options.max_freeze;
    f.hooks = options.hooks;
    auto view = FreezeView::Open(f);
    if (!view.ok()) return view.status();
    return std::unique_ptr<ConsistentView>(std::move(view.value()));
  }
  if (options.snapshot == "lvm" || options.snapshot == "lvm-thin" || options.snapshot == "auto") {
    // auto: an LVM snapshot for a logical volume; anything else is read as with none.
    if (options.snapshot == "auto" && !IsLogicalVolume(options.source)) {
      HOTSNAP_RETURN_IF_ERROR(CheckPlainReadIsConsistent(options.source, use));
      return std::unique_ptr<ConsistentView>(new PlainView(options.source));
    }
    LvmViewOptions l;
    l.source = options.source;
    l.mode = options.snapshot;
    l.cow_bytes = options.cow_bytes;
    const MountUse* mount = ReadWriteMount(use);
    l.mount_point = mount ? mount->mount_point : "";
    l.hooks = options.hooks;
    auto view = LvmSnapshotView::Open(l);
    if (!view.ok()) return view.status();
    return std::unique_ptr<ConsistentView>(std::move(view.value()));
  }
  return Status(Code::kUnsupported, "--snapshot " + options.snapshot +
                                        " is not available in this build (modes: none, freeze, lvm, "
                                        "lvm-thin, auto)");
}

// The destination must not be the source, nor a file being backed up into itself.
Status CheckDestination(const BackupOptions& options, const SourceDevice& source) {
  if (options.dest == "-") {
    if (::isatty(STDOUT_FILENO)) {
      return Status(Code::kUsage, "refusing to write an image to a terminal; redirect stdout");
    }
    return Status::Ok();
  }
  struct stat src, dst;
  if (::fstat(source.fd.get(), &src) == 0 && ::stat(options.dest.c_str(), &dst) == 0 &&
      src.st_dev == dst.st_dev && src.st_ino == dst.st_ino) {
    return Status(Code::kUsage, "destination " + options.dest + " is the source itself");
  }
  return Status::Ok();
}


ImageMetadata NewMetadata(const BackupOptions& options, const SourceDevice& source,
                          const FilesystemProbe& fs, const std::string& mode) {
  ImageMetadata meta;
  meta.source_path = options.source;
  meta.device_bytes = source.size_bytes;
  meta.logical_sector_bytes = source.logical_sector_bytes;
  meta.chunk_bytes = kDefaultChunkBytes;
  meta.fs_type = fs.type;
  meta.fs_uuid = fs.uuid;
  meta.fs_label = fs.label;
  meta.host = HostName();
  meta.created_utc = NowUtc();
  meta.snapshot_mode = mode;
  meta.tool_version = HOTSNAP_VERSION;
  meta.level = options.level;
  return meta;
}

// --snapshot tracked: the whole copy runs in TrackedCopy; this wraps it like the other modes.
Result<BackupReport> RunTrackedBackup(const BackupOptions& options, const MountUse& mount,
                                      Sink* sink, std::chrono::steady_clock::time_point started) {
  auto opened = OpenSource(options.source);
  if (!opened.ok()) return opened.status();
  SourceDevice source = std::move(opened.value());
  FilesystemProbe fs = ProbeFilesystem(options.source);
  ImageMetadata meta = NewMetadata(options, source, fs, "tracked");
  TrackedOptions t;
  t.mount_point = mount.mount_point;
  t.max_freeze = options.max_freeze;
  t.hooks = options.hooks;
  t.all_blocks = options.all_blocks;
  t.pipeline.level = options.level;
  t.pipeline.workers = options.workers;
  t.pipeline.queue_depth = options.queue_depth;
  t.pipeline.allow_io_uring = options.allow_io_uring;
  t.pipeline.rate_limit_bytes_per_s = options.rate_limit_bytes_per_s;
  // Test seam, like HOTSNAP_CRASH_AT: the tests' small filesystems rarely have enough writes
  // ahead of the pre-copy for a freeze between its parts; this lowers the bar.
  if (const char* env = std::getenv("HOTSNAP_TEST_MID_FREEZE_CHUNKS")) {
    t.mid_freeze_chunks = std::strtoull(env, nullptr, 10);
  }
  ImageWriter writer(sink);
  EmitPhase("read");
  auto copied = RunTrackedCopy(t, source, &meta, &writer, sink->read_back_fd());
  if (!copied.ok()) return copied.status();
  EmitPhase("publish");
  copied->report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  HOTSNAP_RETURN_IF_ERROR(writer.Finish(copied->report));
  HOTSNAP_RETURN_IF_ERROR(sink->Commit());
  BackupReport report;
  report.source = options.source;
  report.dest = sink->Describe();
  report.reader = copied->reader;
  report.fs_type = fs.type;
  report.snapshot_mode = "tracked";
  report.device_bytes = meta.device_bytes;
  report.bytes_read = copied->bytes_read;
  report.used_bytes = copied->report.used_bytes;
  report.image_bytes = writer.bytes_written();
  report.chunks = meta.chunk_count();
  report.zero_chunks = copied->zero_chunks;
  report.image_hash = writer.image_hash();
  report.freeze_ms = copied->report.freeze_ms;
  report.rounds = copied->report.rounds;
  report.recopied_bytes = copied->report.recopied_bytes;
  report.final_capture_bytes = copied->report.final_capture_bytes;
  report.seconds = copied->report.seconds;
  return report;
}

}  // namespace

// --snapshot auto: an LVM snapshot for a logical volume, write tracking for a filesystem
// mounted read-write on a plain device, and a plain read for anything idle.
std::string ResolveMode(const BackupOptions& options, const DeviceUse& use) {
  if (options.snapshot != "auto") return options.snapshot;
  if (IsLogicalVolume(options.source)) return "auto";  // OpenView picks lvm or lvm-thin
  return ReadWriteMount(use) != nullptr ? "tracked" : "none";
}

Result<BackupReport> RunBackup(const BackupOptions& requested) {
  auto started = std::chrono::steady_clock::now();
  BackupOptions options = requested;

  // 1. Look at the source: what it is, and who uses it.
  EmitPhase("open");
  HOTSNAP_RETURN_IF_ERROR(CheckRootForDevice(options.source, "back up", Code::kSource));
  auto opened = OpenSource(options.source);
  if (!opened.ok()) return opened.status();
  auto use = InspectDeviceUse(options.source, Code::kSource);
  if (!use.ok()) return use.status();
  // One run per source: a second one fails here (kBusy) and leaves the first alone. Held
  // until this function returns.
  auto lock = SourceLock::Acquire(options.source, "backup");
  if (!lock.ok()) return lock.status();
  options.snapshot = ResolveMode(requested, *use);
  HOTSNAP_RETURN_IF_ERROR(CheckDestination(options, opened.value()));
  if (options.snapshot == "freeze" || options.snapshot == "tracked") {
    if (const MountUse* mount = ReadWriteMount(*use)) {
      HOTSNAP_RETURN_IF_ERROR(CheckOutputNotOnFrozenFs(options, mount->mount_point));
    }
  }

  // 2. Open the sink before any freeze: a temporary file published only on success, or stdout.
  std::unique_ptr<Sink> sink;
  if (options.dest == "-") {
    sink = MakeFdSink(STDOUT_FILENO, "stdout");
  } else if (IsSshUrl(options.dest)) {
    auto url = ParseSshUrl(options.dest);
    if (!url.ok()) return url.status();
    auto remote = MakeSshSink(*url, SshOptions{options.ssh_options}, options.overwrite);
    if (!remote.ok()) return remote.status();
    sink = std::move(remote.value());
  } else {
    auto file = MakeFileSink(options.dest, FileSinkOptions{options.overwrite});
    if (!file.ok()) return file.status();
    sink = std::move(file.value());
  }

  // A mounted filesystem on a plain device is copied live with write tracking.
  if (options.snapshot == "tracked") {
    const MountUse* mount = ReadWriteMount(*use);
    if (mount == nullptr) {
      return Status(Code::kUsage, options.source + " is not mounted read-write: nothing is "
                                  "writing to it, so --snapshot none gives a consistent image");
    }
    if (!opened->is_block_device) {
      return Status(Code::kUsage, "--snapshot tracked needs a block device; " + options.source +
                                      " is a regular file");
    }
    return RunTrackedBackup(options, *mount, sink.get(), started);
  }

  // 3. Get the consistent view (a freeze, a snapshot, or the idle device itself).
  EmitPhase("snapshot");
  auto opened_view = OpenView(options, *use);
  if (!opened_view.ok()) return opened_view.status();
  std::unique_ptr<ConsistentView> view = std::move(opened_view.value());
  auto reopened = OpenSource(view->device_path());
  if (!reopened.ok()) return reopened.status();
  SourceDevice source = std::move(reopened.value());

  // 4. Describe the source in the metadata frame, and find the blocks its filesystem uses;
  //    the rest are stored as zeros, never read. Both come from the view.
  FilesystemProbe fs = ProbeFilesystem(view->device_path());
  ImageMetadata meta = NewMetadata(options, source, fs, view->mode());
  EmitPhase("map");
  auto used = MapUsedBlocks(source, options.all_blocks, true);
  if (!used.ok()) return used.status();
  const UsedBlockMap& map = used.value();
  meta.used_bytes = map.used_bytes();
  meta.used_map = DescribeMap(map);

  // 5. Read, compress and write every chunk.
  EmitPhase("read");
  ImageWriter writer(sink.get());
  HOTSNAP_RETURN_IF_ERROR(writer.Begin(meta));
  PipelineOptions popts;
  popts.level = options.level;
  popts.workers = options.workers;
  popts.queue_depth = options.queue_depth;
  popts.allow_io_uring = options.allow_io_uring;
  popts.check = [&view] { return view->Check(); };
  popts.rate_limit_bytes_per_s = options.rate_limit_bytes_per_s;
  if (!map.all_blocks()) {
    popts.planner = [&map](uint64_t, uint64_t offset, uint32_t length, std::vector<ByteExtent>* out) {
      map.UsedIn(offset, length, out);
    };
  }
  // Progress counts the used bytes read: those are what the read phase's time goes into.
  ProgressLine progress("backup", meta.used_bytes, options.progress);
  popts.progress = [&](uint64_t, uint64_t bytes_read, uint64_t image_bytes) {
    progress.Update(std::min<uint64_t>(bytes_read, meta.used_bytes), image_bytes);
  };
  auto stats = RunBackupPipeline(source, meta, popts, &writer);
  if (!stats.ok()) {
    // A read error from an invalidated LVM snapshot: say why it failed, not just "EIO".
    if (auto* lvm = dynamic_cast<LvmSnapshotView*>(view.get())) {
      HOTSNAP_RETURN_IF_ERROR(lvm->CheckNow());
    }
    return stats.status();
  }
  progress.Update(meta.used_bytes, writer.bytes_written());
  progress.Done();

  // 6. End the view (thaw, remove the snapshot): its status decides whether the copy counts.
  EmitPhase("release");
  BackupReport report;
  if (auto* frozen = dynamic_cast<FreezeView*>(view.get())) {
    HOTSNAP_RETURN_IF_ERROR(view->Release());
    report.freeze_ms.push_back(frozen->frozen_for().count());
    EmitFreezeWindow(ReadWriteMount(*use) ? ReadWriteMount(*use)->mount_point : options.source,
                     frozen->frozen_for().count() / 1000.0);
  } else {
    if (auto* lvm = dynamic_cast<LvmSnapshotView*>(view.get())) {
      HOTSNAP_RETURN_IF_ERROR(lvm->CheckNow());  // still valid after the last chunk?
      source.fd.Reset();  // LVM cannot remove a snapshot we still hold open
    }
    HOTSNAP_RETURN_IF_ERROR(view->Release());
  }

  // 7. Trailer and seek table, then publish.
  EmitPhase("publish");
  RunReport run;
  run.freeze_ms = report.freeze_ms;
  run.used_bytes = map.used_bytes();
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  HOTSNAP_RETURN_IF_ERROR(writer.Finish(run));
  HOTSNAP_RETURN_IF_ERROR(sink->Commit());

  report.source = options.source;
  report.dest = sink->Describe();
  report.reader = stats->reader;
  report.fs_type = fs.type;
  report.snapshot_mode = view->mode();
  report.device_bytes = meta.device_bytes;
  report.bytes_read = stats->bytes_read;
  report.used_bytes = map.used_bytes();
  report.image_bytes = writer.bytes_written();
  report.chunks = stats->chunks;
  report.zero_chunks = stats->zero_chunks;
  report.image_hash = writer.image_hash();
  report.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return report;
}

Result<BackupPlan> PlanBackup(const BackupOptions& options) {
  auto opened = OpenSource(options.source);
  if (!opened.ok()) return opened.status();
  auto use = InspectDeviceUse(options.source, Code::kSource);
  if (!use.ok()) return use.status();
  HOTSNAP_RETURN_IF_ERROR(SourceLock::CheckFree(options.source));  // reported, never taken
  HOTSNAP_RETURN_IF_ERROR(CheckDestination(options, opened.value()));
  BackupPlan plan;
  const std::string mode = ResolveMode(options, *use);
  plan.snapshot_mode = options.snapshot == mode ? mode : options.snapshot + " -> " + mode;
  const MountUse* mount = ReadWriteMount(*use);
  if (mode == "none") {
    HOTSNAP_RETURN_IF_ERROR(CheckPlainReadIsConsistent(options.source, *use));
    plan.snapshot_detail = "read the device as it is (not mounted read-write)";
  } else if (mode == "freeze") {
    if (mount != nullptr) {
      HOTSNAP_RETURN_IF_ERROR(CheckOutputNotOnFrozenFs(options, mount->mount_point));
      plan.snapshot_detail = "freeze " + mount->mount_point + " for at most " +
                             std::to_string(options.max_freeze.count()) + " ms";
    } else {
      plan.snapshot_detail = "nothing to freeze (not mounted read-write); read it as it is";
    }
  } else if (mode == "tracked") {
    plan.snapshot_detail = mount != nullptr
        ? "copy while tracking writes to " + mount->mount_point +
              ", then re-copy what changed with brief freezes (at most " +
              std::to_string(options.max_freeze.count()) + " ms each)"
        : "nothing mounted read-write; read it as it is";
  } else if (mode == "lvm" || mode == "lvm-thin" || mode == "auto") {
    plan.snapshot_detail = "take an LVM " + std::string(mode == "lvm-thin" ? "thin " : "") +
                           "snapshot of " + options.source + " and read the snapshot";
  } else {
    return Status(Code::kUnsupported, "--snapshot " + options.snapshot + " is not available in this build");
  }
  if (options.dest == "-") {
    plan.dest_kind = "stdout";
  } else if (IsSshUrl(options.dest)) {
    auto url = ParseSshUrl(options.dest);
    if (!url.ok()) return url.status();
    plan.dest_kind = "ssh";
  } else {
    plan.dest_kind = "file";
    struct stat st;
    if (!options.overwrite && ::lstat(options.dest.c_str(), &st) == 0) {
      return Status(Code::kTarget, options.dest + " already exists; refusing to replace it (use --overwrite)");
    }
  }
  const SourceDevice& source = opened.value();
  FilesystemProbe fs = ProbeFilesystem(options.source);
  auto used = MapUsedBlocks(source, options.all_blocks, true);
  if (!used.ok()) return used.status();
  plan.source = options.source;
  plan.device_bytes = source.size_bytes;
  plan.logical_sector_bytes = source.logical_sector_bytes;
  plan.fs_type = fs.type;
  plan.fs_uuid = fs.uuid;
  plan.fs_label = fs.label;
  plan.used_bytes = used->used_bytes();
  plan.used_map = DescribeMap(used.value());
  plan.dest = options.dest;
  plan.level = options.level;
  plan.rate_limit_bytes_per_s = options.rate_limit_bytes_per_s;
  return plan;
}

}  // namespace hotsnap
