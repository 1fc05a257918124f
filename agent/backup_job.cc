#include "agent/backup_job.h"

#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <memory>

#include "agent/events.h"
#include "agent/privileges.h"
#include "agent/progress.h"
#include "base/process_identity.h"
#include "io/image_chain.h"
#include "io/image_writer.h"
#include "io/sink.h"
#include "io/source_device.h"
#include "io/ssh_ranged_reader.h"
#include "io/ssh_remote.h"
#include "snapshot/source_lock.h"

namespace hotsnap {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Pass 1: the source, who uses it, and what it holds.
Result<std::unique_ptr<BackupSubject>> Inspect(const BackupOptions& options) {
  EmitPhase("open");
  HOTSNAP_RETURN_IF_ERROR(CheckRootForDevice(options.source, "back up", Code::kSource));
  auto subject = std::make_unique<BackupSubject>();
  subject->path = options.source;
  auto opened = OpenSource(options.source);
  if (!opened.ok()) return opened.status();
  subject->device = std::move(opened.value());
  auto use = InspectDeviceUse(options.source, Code::kSource);
  if (!use.ok()) return use.status();
  subject->use = std::move(use.value());
  // Another hotsnap run on this source: said now, by the dry run as by the run (which takes
  // the lock itself in RunPlan).
  HOTSNAP_RETURN_IF_ERROR(SourceLock::CheckFree(options.source));
  subject->fs = ProbeFilesystem(options.source);
  return subject;
}

// Whether `path` (not yet existing, maybe) lives on the filesystem mounted at `mount_point`.
bool OnFilesystemOf(const std::string& path, const std::string& mount_point) {
  struct stat fs, p;
  if (::stat(mount_point.c_str(), &fs) != 0) return false;
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  return ::stat(dir.c_str(), &p) == 0 && p.st_dev == fs.st_dev;
}

// The destination must not be the source, a terminal, or on a filesystem the mode freezes
// (writing there would block until the thaw), and must not exist without --overwrite.
Status CheckDestination(const BackupOptions& options, const BackupSubject& subject,
                        const CopyMode& mode, DestKind* kind) {
  const std::vector<MountUse> frozen = mode.frozen_mounts();
  if (options.dest == "-") {
    *kind = DestKind::kStdout;
    if (::isatty(STDOUT_FILENO)) {
      return Status(Code::kUsage, "refusing to write an image to a terminal; redirect stdout");
    }
    struct stat fs, out;
    for (const MountUse& m : frozen) {
      if (::stat(m.mount_point.c_str(), &fs) == 0 && ::fstat(STDOUT_FILENO, &out) == 0 &&
          S_ISREG(out.st_mode) && out.st_dev == fs.st_dev) {
        return Status(Code::kUsage, "stdout is a file on a filesystem that would be frozen (" +
                                        m.mount_point +
                                        "); writing to it would block until the thaw");
      }
    }
    return Status::Ok();
  }
  if (IsSshUrl(options.dest)) {
    *kind = DestKind::kSsh;
    auto url = ParseSshUrl(options.dest);
    return url.ok() ? Status::Ok() : url.status();
  }
  *kind = DestKind::kFile;
  struct stat src, dst;
  if (::fstat(subject.device.fd.get(), &src) == 0 && ::stat(options.dest.c_str(), &dst) == 0 &&
      src.st_dev == dst.st_dev && src.st_ino == dst.st_ino) {
    return Status(Code::kUsage, "destination " + options.dest + " is the source itself");
  }
  for (const MountUse& m : frozen) {
    if (OnFilesystemOf(options.dest, m.mount_point)) {
      return Status(Code::kUsage, "destination " + options.dest +
                                      " is on a filesystem that would be frozen (" +
                                      m.mount_point +
                                      "); writing the image there would block until the thaw. "
                                      "Write it to another filesystem");
    }
  }
  if (!options.overwrite && ::lstat(options.dest.c_str(), &dst) == 0) {
    return Status(Code::kTarget,
                  options.dest + " already exists; refusing to replace it (use --overwrite)");
  }
  return Status::Ok();
}

// Pass 3: where the image goes. A temporary file published only on success, stdout, or ssh.
Result<std::unique_ptr<Sink>> OpenSink(const BackupPlan& plan) {
  const BackupOptions& o = plan.options;
  switch (plan.dest_kind) {
    case DestKind::kStdout:
      return MakeFdSink(STDOUT_FILENO, "stdout");
    case DestKind::kSsh: {
      auto url = ParseSshUrl(o.dest);
      if (!url.ok()) return url.status();
      auto remote = MakeSshSink(*url, SshOptions{o.ssh_options}, o.overwrite);
      if (!remote.ok()) return remote.status();
      return std::move(remote.value());
    }
    case DestKind::kFile:
      break;
  }
  auto file = MakeFileSink(o.dest, FileSinkOptions{o.overwrite});
  if (!file.ok()) return file.status();
  return std::move(file.value());
}

// --base PATH: the parent image file, with its own chain of parents found complete.
Result<DeltaBase> LoadLocalBase(const std::string& path) {
  auto chain = ImageChain::Open(path);
  if (!chain.ok()) return chain.status().Wrap("--base " + path);
  const ImageIndex& index = chain->newest();
  DeltaBase base;
  base.path = path;
  base.file_name = BaseNameOf(path);
  base.meta = index.meta;
  base.image_hash = index.trailer.image_hash;
  base.chunk_hashes = index.trailer.chunk_hashes;
  base.image_bytes = index.image_bytes;
  base.chain_links = chain->links().size();
  return base;
}

// --base ssh://...: only the parent's own index, read in ranges over one ssh session (its
// tail and its metadata frame; never its chunks). Its parents, if it is a delta itself, are
// not looked for on the remote host: the delta needs only the parent's chunk hashes, and
// restoring it needs the whole chain beside it, which restore checks link by link.
Result<DeltaBase> LoadRemoteBase(const BackupOptions& options) {
  auto url = ParseSshUrl(options.base);
  if (!url.ok()) return url.status().Wrap("--base");
  auto reader = SshRangedReader::Open(*url, SshOptions{options.ssh_options});
  if (!reader.ok()) return reader.status().Wrap("--base");
  auto index = LoadImageIndex(**reader, url->text);
  if (!index.ok()) return index.status().Wrap("--base");
  DeltaBase base;
  base.path = url->text;
  base.file_name = BaseNameOf(url->path);
  base.meta = index->meta;
  base.image_hash = index->trailer.image_hash;
  base.chunk_hashes = index->trailer.chunk_hashes;
  base.image_bytes = index->image_bytes;
  base.remote = true;
  base.remote_tail_bytes = (*reader)->bytes_received();
  return base;
}

// --base: the parent must be a complete image (a file, its own parents found and matching;
// or an ssh:// image, its own index only) of this very source: same size, same filesystem.
Result<DeltaBase> LoadBase(const BackupOptions& options, const BackupSubject& subject,
                           const CopyMode&) {
  const std::string& path = options.base;
  if (path == "-") {
    return Status(Code::kUnsupported, "--base -: the parent must be an image file or an ssh:// image");
  }
  auto base = IsSshUrl(path) ? LoadRemoteBase(options) : LoadLocalBase(path);
  if (!base.ok()) return base.status();
  const ImageMetadata& m = base->meta;
  if (m.device_bytes != subject.device.size_bytes) {
    return Status(Code::kUsage, "--base " + path + " is an image of a device of " +
                                    std::to_string(m.device_bytes) + " bytes (device_bytes); " +
                                    options.source + " has " + std::to_string(subject.device.size_bytes));
  }
  if (!m.fs_uuid.empty() && !subject.fs.uuid.empty() && m.fs_uuid != subject.fs.uuid) {
    return Status(Code::kUsage, "--base " + path + " is an image of filesystem UUID " + m.fs_uuid + " (fs_uuid); " +
                                    options.source + " holds UUID " + subject.fs.uuid +
                                    ": a delta against another filesystem's image is not a backup of this one");
  }
  return base;
}

ImageMetadata NewMetadata(const BackupPlan& plan) {
  const BackupSubject& s = *plan.subject;
  ImageMetadata meta;
  meta.source_path = plan.options.source;
  meta.device_bytes = s.device.size_bytes;
  meta.logical_sector_bytes = s.device.logical_sector_bytes;
  meta.chunk_bytes = kDefaultChunkBytes;
  meta.fs_type = s.fs.type;
  meta.fs_uuid = s.fs.uuid;
  meta.fs_label = s.fs.label;
  meta.host = HostName();
  meta.created_utc = NowUtc();
  meta.snapshot_mode = SnapshotModeName(plan.mode->mode());
  meta.tool_version = HOTSNAP_VERSION;
  meta.level = plan.options.level;
  meta.run_id = plan.options.run_id;
  if (plan.base) {
    meta.chunk_bytes = plan.base->meta.chunk_bytes;
    meta.layout = Layout::kDelta;
    meta.base = BaseReference{plan.base->file_name, plan.base->image_hash,
                              plan.base->meta.created_utc};
  }
  return meta;
}

// Pass 4: the mode takes its view, copies it through the pipeline, and releases it. Progress
// is attached here, once, for every mode.
Result<CopyResult> Copy(const BackupPlan& plan, ImageMetadata* meta, ImageWriter* writer,
                        int image_fd) {
  const BackupOptions& o = plan.options;
  CopyMode& mode = *plan.mode;
  CopyProgress progress(mode.planned_bytes(), o.progress);
  CopyTarget target;
  target.meta = meta;
  target.writer = writer;
  target.image_fd = image_fd;
  target.pipeline.level = o.level;
  target.pipeline.workers = o.workers;
  target.pipeline.queue_depth = o.queue_depth;
  target.pipeline.allow_io_uring = o.allow_io_uring;
  target.pipeline.rate_limit_bytes_per_s = o.rate_limit_bytes_per_s;
  target.pipeline.progress = &progress;
  target.pipeline.stop = o.stop;
  if (plan.base) {
    target.base_hashes = plan.base->chunk_hashes;
    target.base_path = plan.base->path;
    target.base_image_hash = plan.base->image_hash;
    target.base_meta = &plan.base->meta;
    target.change_log = o.change_log;
  }

  HOTSNAP_RETURN_IF_ERROR(mode.Prepare());
  auto copied = mode.Copy(&target);
  if (!copied.ok()) {
    (void)mode.Release(nullptr);  // the copy's error is the one to report; the view still ends
    return copied.status();
  }
  progress.Done();
  copied->report.crash_consistent = mode.crash_consistent();
  if (plan.base && copied->report.change_source.empty()) {
    // Tracked mode: its own tracker re-reads what is written during the copy; before it,
    // every used block is read and hashed.
    copied->report.change_source = "hash compare";
    copied->report.change_reason = o.change_log
        ? "every used block read and hashed against the parent's chunk hashes (tracked mode does "
          "not take a change log; the freeze, none and LVM modes do)"
        : ChooseChangeSource(nullptr, {}, 0, "").reason;
  }
  // The view's end decides whether the copy counts (a failed thaw, an invalidated snapshot).
  HOTSNAP_RETURN_IF_ERROR(mode.Release(&copied.value()));
  return copied;
}

BackupReport MakeReport(const BackupPlan& plan, const Sink& sink, const ImageMetadata& meta,
                        const ImageWriter& writer, const CopyResult& copied, double seconds) {
  BackupReport r;
  r.source = plan.options.source;
  r.dest = sink.Describe();
  r.reader = copied.reader;
  r.fs_type = meta.fs_type;
  r.snapshot_mode = plan.mode->mode();
  r.device_bytes = meta.device_bytes;
  r.used_bytes = copied.report.used_bytes;
  r.bytes_read = copied.bytes_read;
  r.image_bytes = writer.bytes_written();
  r.chunks = copied.chunks;
  r.zero_chunks = copied.zero_chunks;
  r.image_hash = writer.image_hash();
  r.freeze_ms = copied.report.freeze_ms;
  r.rounds = copied.report.rounds;
  r.recopied_bytes = copied.report.recopied_bytes;
  r.final_capture_bytes = copied.report.final_capture_bytes;
  for (const MountUse& m : plan.mode->frozen_mounts()) r.frozen.push_back(m.mount_point);
  r.crash_consistent = copied.report.crash_consistent;
  r.used_map = copied.used_map;
  r.seconds = seconds;
  if (plan.base) {
    r.base = plan.base->path;
    r.base_image_bytes = plan.base->image_bytes;
    r.base_remote_tail_bytes = plan.base->remote_tail_bytes;
    r.change_source = copied.report.change_source;
    r.change_reason = copied.report.change_reason;
    r.changed_chunks = writer.changed_chunks();
    r.unchanged_chunks = writer.unchanged_chunks();
  }
  return r;
}

}  // namespace

const char* DestKindName(DestKind kind) {
  switch (kind) {
    case DestKind::kFile: return "file";
    case DestKind::kStdout: return "stdout";
    case DestKind::kSsh: return "ssh";
  }
  return "?";
}

Result<BackupPlan> PlanBackup(const BackupOptions& options) {
  BackupPlan plan;
  plan.options = options;
  // 1. Inspect: the source, its users, its filesystem.
  auto subject = Inspect(options);
  if (!subject.ok()) return subject.status();
  plan.subject = std::move(subject.value());
  // 2. Plan: the mode, its checks, what it will read; then the destination.
  ModeOptions m;
  m.max_freeze = options.max_freeze;
  m.hooks = options.hooks;
  m.cow_bytes = options.cow_bytes;
  m.all_blocks = options.all_blocks;
  m.allow_crash_consistent = options.allow_crash_consistent;
  m.rendezvous = options.rendezvous;
  m.keep_snapshot = options.keep_snapshot;
  auto mode = ChooseCopyMode(options.snapshot, m, *plan.subject);
  if (!mode.ok()) return mode.status();
  plan.mode = std::move(mode.value());
  HOTSNAP_RETURN_IF_ERROR(CheckDestination(options, *plan.subject, *plan.mode, &plan.dest_kind));
  if (!options.base.empty()) {
    auto base = LoadBase(options, *plan.subject, *plan.mode);
    if (!base.ok()) return base.status();
    plan.base = std::move(base.value());
  }
  return plan;
}

Result<BackupReport> RunPlan(BackupPlan plan) {
  const Clock::time_point started = Clock::now();
  // One run per source: a second one fails here (kBusy) and leaves the first alone. Held
  // until the image is published or the run failed.
  auto lock = SourceLock::Acquire(plan.options.source, "backup");
  if (!lock.ok()) return lock.status();
  // 3. Open the sink before any freeze or snapshot.
  auto sink = OpenSink(plan);
  if (!sink.ok()) return sink.status();
  ImageMetadata meta = NewMetadata(plan);
  ImageWriter writer(sink->get());
  // 4. Copy: prepare the view, copy it, release it.
  auto copied = Copy(plan, &meta, &writer, (*sink)->read_back_fd());
  if (!copied.ok()) return copied.status();
  // 5. Finish: the run's report, trailer and seek table.
  EmitPhase("publish");
  copied->report.seconds = SecondsSince(started);
  HOTSNAP_RETURN_IF_ERROR(writer.Finish(copied->report));
  // 6. Publish (a source of a set: once every source's copy is complete).
  if (plan.options.before_publish) HOTSNAP_RETURN_IF_ERROR(plan.options.before_publish());
  HOTSNAP_RETURN_IF_ERROR((*sink)->Commit());
  plan.mode->AfterPublish();
  return MakeReport(plan, **sink, meta, writer, *copied, SecondsSince(started));
}

Result<BackupReport> RunBackup(const BackupOptions& options) {
  auto plan = PlanBackup(options);
  if (!plan.ok()) return plan.status();
  return RunPlan(std::move(plan.value()));
}

}  // namespace hotsnap
