#include "agent/backup_job.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>

#include <chrono>
#include <memory>

#include "agent/backup_pipeline.h"
#include "agent/progress.h"
#include "base/log.h"
#include "fsmap/used_block_map.h"
#include "io/image_writer.h"
#include "io/sink.h"
#include "io/source_device.h"
#include "snapshot/device_use.h"
#include "snapshot/freeze_view.h"
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
  return Status(Code::kUnsupported, "--snapshot " + options.snapshot +
                                        " is not available in this build (modes: none, freeze)");
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

// Which blocks to read: the filesystem's used-block map, computed from the very device the
// data is read from, or every block.
Result<UsedBlockMap> MapUsedBlocks(const BackupOptions& options, const SourceDevice& source) {
  if (options.all_blocks) return UsedBlockMap::AllBlocks(source.size_bytes);
  // A buffered descriptor: the map's small metadata reads need no O_DIRECT alignment.
  UniqueFd fd(::open(source.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(Code::kSource, errno, "opening " + source.path);
  // Drop cached pages of the device: a filesystem that keeps metadata in its own cache (xfs)
  // wrote it at the freeze, and stale pages from an earlier read must not hide that.
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  std::string notice;
  auto map = ComputeUsedBlockMap(fd.get(), source.path, source.size_bytes, &notice);
  if (!map.ok()) {
    return map.status().Wrap("reading the filesystem's free-space records (use --all-blocks to "
                             "read every block instead)");
  }
  if (!notice.empty()) Notice(notice);
  return map;
}

std::string DescribeMap(const UsedBlockMap& map) {
  if (map.all_blocks()) return "all blocks";
  if (map.fs_type() == "xfs") return "xfs bnobt";
  return map.fs_type() + " bitmap";
}

}  // namespace

Result<BackupReport> RunBackup(const BackupOptions& options) {
  auto started = std::chrono::steady_clock::now();

  // 1. Look at the source: what it is, and who uses it.
  auto opened = OpenSource(options.source);
  if (!opened.ok()) return opened.status();
  auto use = InspectDeviceUse(options.source, Code::kSource);
  if (!use.ok()) return use.status();
  HOTSNAP_RETURN_IF_ERROR(CheckDestination(options, opened.value()));
  if (options.snapshot == "freeze") {
    if (const MountUse* mount = ReadWriteMount(*use)) {
      HOTSNAP_RETURN_IF_ERROR(CheckOutputNotOnFrozenFs(options, mount->mount_point));
    }
  }

  // 2. Open the sink before any freeze: a temporary file published only on success, or stdout.
  std::unique_ptr<Sink> sink;
  if (options.dest == "-") {
    sink = MakeFdSink(STDOUT_FILENO, "stdout");
  } else {
    auto file = MakeFileSink(options.dest, FileSinkOptions{options.overwrite});
    if (!file.ok()) return file.status();
    sink = std::move(file.value());
  }

  // 3. Get the consistent view (a freeze, a snapshot, or the idle device itself).
  auto opened_view = OpenView(options, *use);
  if (!opened_view.ok()) return opened_view.status();
  std::unique_ptr<ConsistentView> view = std::move(opened_view.value());
  auto reopened = OpenSource(view->device_path());
  if (!reopened.ok()) return reopened.status();
  SourceDevice source = std::move(reopened.value());

  // 4. Describe the source in the metadata frame, and find the blocks its filesystem uses;
  //    the rest are stored as zeros, never read. Both come from the view.
  FilesystemProbe fs = ProbeFilesystem(view->device_path());
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
  meta.snapshot_mode = view->mode();
  meta.tool_version = HOTSNAP_VERSION;
  meta.level = options.level;
  auto used = MapUsedBlocks(options, source);
  if (!used.ok()) return used.status();
  const UsedBlockMap& map = used.value();
  meta.used_bytes = map.used_bytes();
  meta.used_map = DescribeMap(map);

  // 5. Read, compress and write every chunk.
  ImageWriter writer(sink.get());
  HOTSNAP_RETURN_IF_ERROR(writer.Begin(meta));
  PipelineOptions popts;
  popts.level = options.level;
  popts.workers = options.workers;
  popts.queue_depth = options.queue_depth;
  popts.allow_io_uring = options.allow_io_uring;
  popts.check = [&view] { return view->Check(); };
  if (!map.all_blocks()) {
    popts.planner = [&map](uint64_t, uint64_t offset, uint32_t length, std::vector<ByteExtent>* out) {
      map.UsedIn(offset, length, out);
    };
  }
  ProgressLine progress("backup", meta.device_bytes, options.progress);
  popts.progress = [&](uint64_t chunks, uint64_t bytes_read, uint64_t image_bytes) {
    uint64_t done = std::min<uint64_t>(chunks * meta.chunk_bytes, meta.device_bytes);
    progress.Update(done, image_bytes);
  };
  auto stats = RunBackupPipeline(source, meta, popts, &writer);
  if (!stats.ok()) return stats.status();
  progress.Done();

  // 6. End the view (thaw, remove the snapshot): its status decides whether the copy counts.
  BackupReport report;
  if (auto* frozen = dynamic_cast<FreezeView*>(view.get())) {
    HOTSNAP_RETURN_IF_ERROR(view->Release());
    report.freeze_ms.push_back(frozen->frozen_for().count());
  } else {
    HOTSNAP_RETURN_IF_ERROR(view->Release());
  }

  // 7. Trailer and seek table, then publish.
  HOTSNAP_RETURN_IF_ERROR(writer.Finish());
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

}  // namespace hotsnap
