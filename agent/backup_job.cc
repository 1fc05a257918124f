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
Status CheckPlainReadIsConsistent(const std::string& path) {
  auto use = InspectDeviceUse(path, Code::kSource);
  if (!use.ok()) return use.status();
  if (use->mounted_read_write()) {
    return Status(Code::kSource,
                  path + " is " + use->Describe() +
                      ". With --snapshot none hotsnap reads the device as it is; a filesystem "
                      "that is written during the read gives an image mixing old and new "
                      "blocks, which may not mount. Unmount it or remount it read-only "
                      "(mount -o remount,ro), or take the backup from a snapshot of it. "
                      "(Live modes --snapshot freeze, tracked, lvm and lvm-thin are not in this "
                      "build yet.)");
  }
  return Status::Ok();
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
  UniqueFd fd(::open(options.source.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(Code::kSource, errno, "opening " + options.source);
  std::string notice;
  auto map = ComputeUsedBlockMap(fd.get(), options.source, source.size_bytes, &notice);
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
  if (options.snapshot != "none") {
    return Status(Code::kUnsupported, "--snapshot " + options.snapshot +
                                          " is not available in this build; only --snapshot none is");
  }

  // 1. Open the source and make sure a plain read gives a consistent image.
  auto opened = OpenSource(options.source);
  if (!opened.ok()) return opened.status();
  SourceDevice source = std::move(opened.value());
  HOTSNAP_RETURN_IF_ERROR(CheckPlainReadIsConsistent(options.source));
  HOTSNAP_RETURN_IF_ERROR(CheckDestination(options, source));

  // 2. Describe the source in the metadata frame.
  FilesystemProbe fs = ProbeFilesystem(options.source);
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
  meta.snapshot_mode = options.snapshot;
  meta.tool_version = HOTSNAP_VERSION;
  meta.level = options.level;

  // 3. Find the blocks the filesystem uses; the rest are stored as zeros, never read.
  auto used = MapUsedBlocks(options, source);
  if (!used.ok()) return used.status();
  const UsedBlockMap& map = used.value();
  meta.used_bytes = map.used_bytes();
  meta.used_map = DescribeMap(map);

  // 4. Open the sink: a temporary file published only on success, or stdout.
  std::unique_ptr<Sink> sink;
  if (options.dest == "-") {
    sink = MakeFdSink(STDOUT_FILENO, "stdout");
  } else {
    auto file = MakeFileSink(options.dest, FileSinkOptions{options.overwrite});
    if (!file.ok()) return file.status();
    sink = std::move(file.value());
  }

  // 5. Read, compress and write every chunk.
  ImageWriter writer(sink.get());
  HOTSNAP_RETURN_IF_ERROR(writer.Begin(meta));
  PipelineOptions popts;
  popts.level = options.level;
  popts.workers = options.workers;
  popts.queue_depth = options.queue_depth;
  popts.allow_io_uring = options.allow_io_uring;
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

  // 6. Trailer and seek table, then publish.
  HOTSNAP_RETURN_IF_ERROR(writer.Finish());
  HOTSNAP_RETURN_IF_ERROR(sink->Commit());

  BackupReport report;
  report.source = options.source;
  report.dest = sink->Describe();
  report.reader = stats->reader;
  report.fs_type = fs.type;
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
