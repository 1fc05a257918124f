#include "cli/commands.h"

#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "agent/backup_job.h"
#include "agent/backup_set.h"
#include "agent/compact_job.h"
#include "agent/image_jobs.h"
#include "agent/merge_job.h"
#include "agent/progress.h"
#include "base/log.h"
#include "repo/repository.h"
#include "cli/agent_commands.h"
#include "cli/parse.h"
#include "cli/mount_commands.h"
#include "cli/repo_commands.h"
#include "cli/scripting.h"

namespace po = boost::program_options;

namespace hotsnap {
namespace {

bool ShowProgress(const po::variables_map& vm) {
  if (vm.count("no-progress")) return false;
  return vm.count("progress") > 0 || ::isatty(STDERR_FILENO);
}

void AddCommonOptions(po::options_description* d) {
  d->add_options()
      ("progress", "show a progress line on stderr even when it is not a terminal")
      ("no-progress", "never show a progress line")
      ("quiet,q", "print only errors");
}

// "512M", "2G", "4096K", "1T" (binary units, an optional "iB"/"B"); a bare number is MiB,
// as with lvcreate -L.
Result<uint64_t> ParseCowSize(const std::string& text) {
  char* end = nullptr;
  double value = std::strtod(text.c_str(), &end);
  std::string unit = end ? std::string(end) : "";
  for (const char* tail : {"iB", "ib", "B", "b"}) {
    if (unit.size() > 1 && unit.size() >= std::strlen(tail) &&
        unit.compare(unit.size() - std::strlen(tail), std::string::npos, tail) == 0) {
      unit.resize(unit.size() - std::strlen(tail));
      break;
    }
  }
  double scale = 0;
  if (unit.empty() || unit == "M" || unit == "m") scale = 1 << 20;
  else if (unit == "K" || unit == "k") scale = 1 << 10;
  else if (unit == "G" || unit == "g") scale = double(1 << 30);
  else if (unit == "T" || unit == "t") scale = double(1 << 30) * 1024;
  if (end == text.c_str() || scale == 0 || !(value > 0)) {
    return Status(Code::kUsage, "--cow-size " + text + ": expected a size such as 512M or 2G");
  }
  double bytes = value * scale;
  if (bytes < 1 << 20 || bytes > 1e18) {
    return Status(Code::kUsage, "--cow-size " + text + ": must be at least 1M");
  }
  return static_cast<uint64_t>(bytes);
}

// The lines a finished backup prints, and its result event.
void ReportBackup(const BackupReport& r) {
  EmitBackupResult(r);
  char line[512];
  std::snprintf(line, sizeof(line),
                "backed up %s (%s%s, %s used) to %s: %s read, image %s (ratio %.2f), %llu of %llu chunks "
                "zero, %.1f s, reader %s",
                r.source.c_str(), HumanBytes(r.device_bytes).c_str(),
                r.fs_type.empty() ? "" : (", " + r.fs_type).c_str(),
                HumanBytes(r.used_bytes).c_str(), r.dest.c_str(),
                HumanBytes(r.bytes_read).c_str(), HumanBytes(r.image_bytes).c_str(),
                r.image_bytes ? double(r.device_bytes) / r.image_bytes : 0.0,
                static_cast<unsigned long long>(r.zero_chunks),
                static_cast<unsigned long long>(r.chunks), r.seconds, r.reader.c_str());
  Notice(line);
  if (!r.freeze_ms.empty()) {
    std::string freezes;
    for (int64_t ms : r.freeze_ms) freezes += (freezes.empty() ? "" : ", ") + std::to_string(ms);
    std::string detail = "freezes (ms): " + freezes;
    if (r.snapshot_mode == SnapshotMode::kTracked) {
      detail += "; " + std::to_string(r.rounds) + " rounds re-copied " + HumanBytes(r.recopied_bytes) +
                ", " + HumanBytes(r.final_capture_bytes) + " read under the final freeze";
    }
    Notice(detail);
  }
  for (const std::string& c : r.crash_consistent) {
    Notice("not frozen (--allow-crash-consistent): " + c + "; its copy is crash-consistent");
  }
  if (!r.base.empty()) {
    Notice("delta of " + r.base + ": " + std::to_string(r.changed_chunks) + " of " +
           std::to_string(r.changed_chunks + r.unchanged_chunks) +
           " chunks changed and stored, the rest are the parent's (changes found by " +
           r.change_source + ": " + r.change_reason + ")");
    if (r.base_remote_tail_bytes != 0) {
      const uint64_t read = r.base_remote_tail_bytes;
      char share[64];
      std::snprintf(share, sizeof(share), "%.3f%%",
                    r.base_image_bytes ? 100.0 * read / r.base_image_bytes : 0.0);
      Notice("read " + std::to_string(read) + " bytes of the parent's tail over ssh (" + share +
             " of its " + std::to_string(r.base_image_bytes) + " bytes)");
    }
  }
}

// Several sources at one moment (agent/backup_set.h).
Status RunBackupSetCommand(const BackupOptions& o, const std::vector<std::string>& sources,
                           bool dry_run) {
  BackupSetOptions set;
  set.sources = sources;
  set.dir = o.dest;
  set.common = o;
  set.common.progress = false;  // one line per copy would interleave on stderr
  auto plan = PlanBackupSet(set);
  if (!plan.ok()) return plan.status();
  if (dry_run) {
    for (const BackupPlan& p : plan->plans) PrintPlan(p);
    std::printf("one moment for all %zu sources: run id %s, manifest %s\n", sources.size(),
                plan->run_id.c_str(), plan->manifest_path.c_str());
    std::printf("  frozen together: %s\n",
                plan->frozen.empty() ? "nothing (no source is mounted read-write)"
                                     : JoinMountPoints(plan->frozen).c_str());
    std::fflush(stdout);
    return Status::Ok();
  }
  auto r = RunBackupSet(std::move(plan).value());
  if (!r.ok()) return r.status();
  for (const BackupReport& image : r->images) ReportBackup(image);
  Notice("one moment for all " + std::to_string(r->images.size()) + " sources (run id " +
         r->run_id + "): the set is listed in " + r->manifest_path);
  return Status::Ok();
}

Status RunBackupCommand(const std::vector<std::string>& args) {
  po::options_description d("backup options");
  BackupOptions o;
  std::string snapshot;
  RepoBackupRequest repo;
  d.add_options()
      ("output,o", po::value<std::string>(&o.dest), "image path, or - for stdout (required unless --repo); with "
       "several sources, an existing directory: one image per source, DIR/NAME.zst, and "
       "DIR/manifest.json")
      ("repo", po::value<std::string>(&repo.repo), "REPO: back up into a repository (docs/repository.md), "
       "created if missing: a full image, or a delta on the source's newest image, named by UTC time "
       "under REPO/SOURCE/ and recorded in REPO/catalog.json (instead of -o and --base)")
      ("full-every", po::value<unsigned>(&repo.full_every)->default_value(7), "--repo: a full image once "
       "the newest chain holds N deltas (0: every backup full)")
      ("source-name", po::value<std::string>(&repo.source_name), "--repo: the source's name in the "
       "repository (default: from its path, /dev/vg0/data -> vg0-data)")
      ("snapshot", po::value<std::string>(&snapshot)->default_value("auto"),
       "how to get a consistent view of every filesystem mounted read-write from SOURCE or its "
       "partitions (one consistency group, frozen together): auto (lvm or lvm-thin for a logical "
       "volume, tracked for a source with a filesystem mounted read-write, else none), none (read the device as it is; refused if "
       "mounted read-write), tracked (copy the mounted filesystem while it runs, tracking "
       "writes, then copy the last written blocks under a freeze of milliseconds), freeze "
       "(freeze the mounted filesystem for the whole copy; small volumes), lvm (read a classic "
       "LVM snapshot of the logical volume), lvm-thin (a thin snapshot of a thin LV)")
      ("cow-size", po::value<std::string>(), "--snapshot lvm: size of the snapshot's copy-on-write "
       "area, e.g. 512M or 2G (default: 10 % of the volume, at least 64M); it must hold every "
       "block written to the volume during the backup")
      ("max-freeze", po::value<double>()->default_value(10),
       "seconds a freeze may last; past it the copy aborts and a watchdog process thaws the "
       "filesystem, even if hotsnap was killed")
      ("pre-freeze", po::value<std::string>(&o.hooks.pre_freeze), "shell command run before the freeze "
       "(e.g. flush a database); if it fails the backup aborts")
      ("while-frozen", po::value<std::string>(&o.hooks.while_frozen),
       "shell command run while the filesystem is frozen, before the copy (it must not write to "
       "the frozen filesystem)")
      ("post-thaw", po::value<std::string>(&o.hooks.post_thaw),
       "shell command run after the thaw; always runs when --pre-freeze ran")
      ("hook-timeout", po::value<double>()->default_value(30), "seconds each hook may run")
      ("crash-consistent", "go on when --pre-freeze fails (the image is then only crash-consistent)")
      ("allow-crash-consistent", po::value<std::vector<std::string>>(&o.allow_crash_consistent),
       "PART (a device or mount point; repeatable): copy this read-write mounted filesystem of "
       "the source without freezing it, as it is at that moment (crash-consistent; recorded in "
       "the image's report). Needed for a member of the source's consistency group that cannot "
       "be frozen (vfat, exfat, ...) or a device stacked on it (an LV of a PV on the disk)")
      ("level,l", po::value<int>(&o.level)->default_value(3), "zstd level (1-19; negative: fast)")
      ("workers", po::value<unsigned>(&o.workers)->default_value(0),
       "compression threads (0: one per core)")
      ("queue-depth", po::value<unsigned>(&o.queue_depth)->default_value(4),
       "reads in flight (1-64); each holds one 4 MiB chunk")
      ("overwrite", "replace DEST if it exists")
      ("keep-snapshot", "--snapshot lvm-thin: keep the thin snapshot (as VG/hotsnap-keep-ORIGIN, "
       "inactive, one per origin, replacing the previous one) once the image is published, so that "
       "the next backup with --base this image asks the pool's metadata (thin_delta) what changed "
       "instead of reading every used block. It holds pool space as the origin changes")
      ("base", po::value<std::string>(&o.base), "PARENT: write a delta image holding only the chunks "
       "that differ from PARENT (an earlier image of this source, full or delta; a file or "
       "ssh://[user@]host[:port]/path, of which only the index at its end is read); restore, "
       "verify, mount and cat find PARENT beside the delta (or in --chain DIR). Every used block "
       "is read and hashed; only changed chunks are compressed and written")
      ("all-blocks", "read every block, also those the filesystem marks free (default: only "
       "used blocks of ext2/3/4 and xfs; free blocks are stored as zeros)")
      ("no-io-uring", "read with pread instead of io_uring")
      ("dry-run", "print the plan (source, filesystem, bytes to read, snapshot method, target; with --repo also full or delta and why) "
       "and exit without writing anything");
  AddCommonOptions(&d);
  AddEventOptions(&d);
  AddSshOptions(&d, &o.ssh_options);
  AddRateLimitOption(&d);
  AddPriorityOptions(&d);
  auto p = Parse(args, "hotsnap backup SOURCE... -o DEST [options]  |  hotsnap backup SOURCE --repo REPO [options]",
                 "Back up SOURCE (a block device or a regular file) into a zstd image at DEST.\n"
                 "The image is written under a temporary name and renamed when complete.\n"
                 "DEST may be - (stdout) or ssh://[user@]host[:port]/path (the system ssh client;\n"
                 "published on the remote host only after the whole image arrived).\n"
                 "Several sources (a database on one disk, its log on another) are backed up at\n"
                 "one moment into the directory DEST: every filesystem of every source is in one\n"
                 "consistency group, frozen together; each image records the run id, and\n"
                 "DEST/manifest.json, written last, lists the set. Nothing is published unless\n"
                 "every source's copy succeeded.",
                 d, {"SOURCE..."});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  if (o.dest.empty() && repo.repo.empty()) {
    return Status(Code::kUsage, "missing -o DEST\nusage: hotsnap backup SOURCE... -o DEST [options]");
  }
  if (!repo.repo.empty() && (!o.dest.empty() || !o.base.empty())) {
    return Status(Code::kUsage, "--repo chooses the image's name and parent itself: -o and --base do not apply");
  }
  const auto sources = p->vm["SOURCE..."].as<std::vector<std::string>>();
  o.source = sources.front();
  auto mode = ParseSnapshotMode(snapshot);
  if (!mode.ok()) return mode.status();
  o.snapshot = *mode;
  o.overwrite = p->vm.count("overwrite") > 0;
  o.allow_io_uring = p->vm.count("no-io-uring") == 0;
  o.all_blocks = p->vm.count("all-blocks") > 0;
  o.keep_snapshot = p->vm.count("keep-snapshot") > 0;
  if (o.keep_snapshot && o.snapshot != SnapshotMode::kLvmThin && o.snapshot != SnapshotMode::kAuto) {
    return Status(Code::kUsage, "--keep-snapshot applies only to --snapshot lvm-thin (or auto on a thin LV)");
  }
  if (p->vm.count("cow-size")) {
    auto cow = ParseCowSize(p->vm["cow-size"].as<std::string>());
    if (!cow.ok()) return cow.status();
    o.cow_bytes = *cow;
    if (o.snapshot != SnapshotMode::kLvm && o.snapshot != SnapshotMode::kAuto) {
      return Status(Code::kUsage, "--cow-size applies only to --snapshot lvm (or auto)");
    }
  }
  double max_freeze = p->vm["max-freeze"].as<double>();
  double hook_timeout = p->vm["hook-timeout"].as<double>();
  if (max_freeze <= 0 || max_freeze > 3600) {
    return Status(Code::kUsage, "--max-freeze must be between 0 and 3600 seconds");
  }
  if (hook_timeout <= 0 || hook_timeout > 86400) {
    return Status(Code::kUsage, "--hook-timeout must be between 0 and 86400 seconds");
  }
  o.max_freeze = std::chrono::milliseconds(static_cast<int64_t>(max_freeze * 1000));
  o.hooks.timeout = std::chrono::milliseconds(static_cast<int64_t>(hook_timeout * 1000));
  o.hooks.crash_consistent_ok = p->vm.count("crash-consistent") > 0;
  o.progress = ShowProgress(p->vm);
  if (p->vm.count("quiet")) SetQuiet(true);
  if (o.queue_depth < 1 || o.queue_depth > 64) {
    return Status(Code::kUsage, "--queue-depth must be between 1 and 64");
  }
  if (o.workers > 256) return Status(Code::kUsage, "--workers must be at most 256");
  HOTSNAP_RETURN_IF_ERROR(CheckSshArguments(o.ssh_options, o.dest));
  auto rate = RateLimitBytesPerSecond(p->vm);
  if (!rate.ok()) return rate.status();
  o.rate_limit_bytes_per_s = *rate;
  bool events_on_stderr = false;
  HOTSNAP_RETURN_IF_ERROR(SetUpEvents(p->vm, "backup", &events_on_stderr));
  if (events_on_stderr) o.progress = false;
  HOTSNAP_RETURN_IF_ERROR(ApplyPriorityOptions(p->vm));
  if (sources.size() > 1 && !o.base.empty()) {
    return Status(Code::kUsage, "--base applies to a backup of one source");
  }
  if (!repo.repo.empty()) {
    if (sources.size() > 1) return Status(Code::kUsage, "--repo takes one source per backup");
    repo.options = o;
    if (p->vm.count("dry-run")) {
      auto plan = PlanIntoRepository(repo);
      if (!plan.ok()) return plan.status();
      PrintPlan(plan->backup);
      std::printf("repository %s: would write %s, %s (%s), and record it in the catalog\n", repo.repo.c_str(),
                  plan->file.c_str(), plan->parent_file.empty() ? "a full image" : ("a delta on " + plan->parent_file).c_str(),
                  plan->why.c_str());
      std::fflush(stdout);
      return Status::Ok();
    }
    auto r = BackupIntoRepository(repo);
    if (!r.ok()) return r.status();
    ReportBackup(r->report);
    Notice("recorded " + r->image.file + " (" + (r->image.parent_file.empty() ? "full" : "delta") +
           ": " + r->why + ") in the catalog of " + repo.repo);
    return Status::Ok();
  }
  if (sources.size() > 1) return RunBackupSetCommand(o, sources, p->vm.count("dry-run") > 0);
  // The dry run and the run share the plan: a dry run prints it instead of running it.
  auto plan = PlanBackup(o);
  if (!plan.ok()) return plan.status();
  if (p->vm.count("dry-run")) {
    PrintPlan(*plan);
    return Status::Ok();
  }
  auto r = RunPlan(std::move(plan).value());
  if (!r.ok()) return r.status();
  ReportBackup(*r);
  return Status::Ok();
}

Status RunRestoreCommand(const std::vector<std::string>& args) {
  po::options_description d("restore options");
  RestoreOptions o;
  d.add_options()
      ("overwrite", "replace TARGET if it is an existing regular file")
      ("force", "restore onto a device that holds another filesystem or signature (swap, RAID, LVM) "
       "than the one the image was taken from; without it such a target is refused")
      ("changed-only", "roll TARGET (an existing device or file holding the image's own filesystem, "
       "or for a whole-disk image its own partition table) back to IMAGE (a file), reading every chunk "
       "of TARGET and writing only those that differ from the image")
      ("queue-depth", po::value<unsigned>(&o.queue_depth)->default_value(4), "writes in flight (1-64)");
  std::string chain_dir;
  AddChainOption(&d, &chain_dir);
  AddCommonOptions(&d);
  AddEventOptions(&d);
  AddSshOptions(&d, &o.ssh_options);
  AddPriorityOptions(&d);
  auto p = Parse(args, "hotsnap restore IMAGE TARGET [options]",
                 "Restore IMAGE (a path, - for stdin, or ssh://[user@]host[:port]/path) onto TARGET: a block device that is not\n"
                 "mounted or in use and at least as large as the image's source, or a regular file\n"
                 "(created sparse). Every chunk is checked before it is written. A delta image\n"
                 "(backup --base) is restored from its file with its parents (beside it, or --chain).\n"
                 "With --changed-only, TARGET is rolled back in place: only the chunks whose bytes differ\n"
                 "from the image's (by their XXH3-128) are written.",
                 d, {"IMAGE", "TARGET"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  o.image = p->vm["IMAGE"].as<std::string>();
  o.target = p->vm["TARGET"].as<std::string>();
  o.overwrite = p->vm.count("overwrite") > 0;
  o.force = p->vm.count("force") > 0;
  o.changed_only = p->vm.count("changed-only") > 0;
  auto chain = ChainOptionsFor(chain_dir);
  if (!chain.ok()) return chain.status();
  o.chain = *chain;
  o.progress = ShowProgress(p->vm);
  if (p->vm.count("quiet")) SetQuiet(true);
  if (o.queue_depth < 1 || o.queue_depth > 64) {
    return Status(Code::kUsage, "--queue-depth must be between 1 and 64");
  }
  HOTSNAP_RETURN_IF_ERROR(CheckSshArguments(o.ssh_options, o.image));
  bool events_on_stderr = false;
  HOTSNAP_RETURN_IF_ERROR(SetUpEvents(p->vm, "restore", &events_on_stderr));
  if (events_on_stderr) o.progress = false;
  HOTSNAP_RETURN_IF_ERROR(ApplyPriorityOptions(p->vm));
  auto r = RunRestore(o);
  if (!r.ok()) return r.status();
  EmitRestoreResult(o, *r);
  char line[512];
  if (r->changed_only) {
    std::snprintf(line, sizeof(line),
                  "rolled %s back to %s: %llu of %llu chunks differed, %s written, %s read from the target, %.1f s",
                  o.target.c_str(), o.image.c_str(), static_cast<unsigned long long>(r->chunks_written),
                  static_cast<unsigned long long>(r->chunks_compared), HumanBytes(r->bytes_written).c_str(),
                  HumanBytes(r->target_bytes_read).c_str(), r->seconds);
  } else {
    std::snprintf(line, sizeof(line), "restored %s to %s: %s written, %llu zero chunks left as holes, %.1f s",
                  o.image.c_str(), o.target.c_str(), HumanBytes(r->bytes_written).c_str(),
                  static_cast<unsigned long long>(r->zero_chunks_skipped), r->seconds);
  }
  Notice(line);
  return Status::Ok();
}

Status RunVerifyCommand(const std::vector<std::string>& args) {
  po::options_description d("verify options");
  std::vector<std::string> ssh_options;
  std::string chain_dir;
  AddChainOption(&d, &chain_dir);
  AddCommonOptions(&d);
  AddEventOptions(&d);
  AddSshOptions(&d, &ssh_options);
  AddPriorityOptions(&d);
  auto p = Parse(args, "hotsnap verify IMAGE",
                 "Read IMAGE (a path, - for stdin, or ssh://[user@]host[:port]/path) in full and check every frame, chunk hash,\n"
                 "the image hash and the seek table. Exit 0 only if everything matches. A delta image\n"
                 "is verified with every parent it needs (beside it, or --chain DIR).",
                 d, {"IMAGE"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  if (p->vm.count("quiet")) SetQuiet(true);
  const std::string image = p->vm["IMAGE"].as<std::string>();
  HOTSNAP_RETURN_IF_ERROR(CheckSshArguments(ssh_options, image));
  bool events_on_stderr = false;
  HOTSNAP_RETURN_IF_ERROR(SetUpEvents(p->vm, "verify", &events_on_stderr));
  HOTSNAP_RETURN_IF_ERROR(ApplyPriorityOptions(p->vm));
  auto chain = ChainOptionsFor(chain_dir);
  if (!chain.ok()) return chain.status();
  auto r = RunVerify(image, ShowProgress(p->vm) && !events_on_stderr, ssh_options, *chain);
  if (!r.ok()) return r.status();
  EmitVerifyResult(image, *r);
  if (r->chain.size() > 1) {
    std::string links;
    for (const std::string& l : r->chain) links += (links.empty() ? "" : " <- ") + l;
    std::printf("chain of %zu images, each read in full and checked: %s\n", r->chain.size(), links.c_str());
  }
  std::printf("OK: %s — %llu chunks (%llu zero), %s of device data in %s, image hash xxh3-128:%s\n",
              p->vm["IMAGE"].as<std::string>().c_str(), static_cast<unsigned long long>(r->chunks),
              static_cast<unsigned long long>(r->zero_chunks), HumanBytes(r->meta.device_bytes).c_str(),
              HumanBytes(r->image_bytes).c_str(), r->image_hash.Hex().c_str());
  return Status::Ok();
}

Status RunInfoCommand(const std::vector<std::string>& args) {
  po::options_description d("info options");
  std::vector<std::string> ssh_options;
  d.add_options()("json", "print JSON");
  std::string chain_dir;
  AddChainOption(&d, &chain_dir);
  AddSshOptions(&d, &ssh_options);
  auto p = Parse(args, "hotsnap info IMAGE [--json]",
                 "Describe IMAGE: its source, sizes and hashes. For a file only the metadata,\n"
                 "trailer and seek table are read; a stream (- or ssh://...) is read in full.",
                 d, {"IMAGE"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  HOTSNAP_RETURN_IF_ERROR(CheckSshArguments(ssh_options, p->vm["IMAGE"].as<std::string>()));
  auto chain = ChainOptionsFor(chain_dir);
  if (!chain.ok()) return chain.status();
  auto text = DescribeImage(p->vm["IMAGE"].as<std::string>(), p->vm.count("json") > 0, ssh_options, *chain);
  if (!text.ok()) return text.status();
  std::fputs(text->c_str(), stdout);
  return Status::Ok();
}

}  // namespace

Status RunCompactCommand(const std::vector<std::string>& args) {
  po::options_description d("compact options");
  CompactOptions o;
  d.add_options()
      ("output,o", po::value<std::string>(&o.dest), "the plain image to write, or - for stdout (required)")
      ("overwrite", "replace DEST if it exists");
  std::string chain_dir;
  AddChainOption(&d, &chain_dir);
  auto p = Parse(args, "hotsnap compact IMAGE -o DEST",
                 "Write a plain copy of IMAGE (a file): every chunk's final version once, in order,\n"
                 "so that stock 'zstd -dc DEST' restores the device. Needed for tracked images\n"
                 "(--snapshot tracked) and delta images (backup --base), which stock zstd refuses;\n"
                 "a delta's unchanged chunks are copied from its parents (beside it, or --chain DIR).\n"
                 "Nothing is recompressed.",
                 d, {"IMAGE"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  if (o.dest.empty()) return Status(Code::kUsage, "missing -o DEST\nusage: hotsnap compact IMAGE -o DEST");
  o.image = p->vm["IMAGE"].as<std::string>();
  o.overwrite = p->vm.count("overwrite") > 0;
  auto chain = ChainOptionsFor(chain_dir);
  if (!chain.ok()) return chain.status();
  o.chain = *chain;
  auto r = RunCompact(o);
  if (!r.ok()) return r.status();
  std::string from = r->chain_links > 1 ? ", " + std::to_string(r->parent_chunks) + " chunks copied from " +
                                              std::to_string(r->chain_links - 1) + " parent image(s)"
                                        : "";
  Notice("wrote plain image " + o.dest + " (" + HumanBytes(r->image_bytes) + "), dropping " +
         std::to_string(r->dropped_frames) + " superseded chunk frames" + from);
  return Status::Ok();
}

namespace {

// What `merge --dry-run` prints: the plan the checks built.
std::string DescribeMergePlan(const MergePlan& plan) {
  std::string text = "would write plain image " + plan.delta + " (as " + plan.temporary +
                     ", fsynced, then renamed over " + plan.delta + "): " + std::to_string(plan.delta_chunks) +
                     " chunk frames copied from " + plan.delta + " and " + std::to_string(plan.parent_chunks) +
                     " from its parent " + plan.parent + ", each checked, nothing recompressed; it stands for " +
                     plan.delta + " (image hash xxh3-128:" + plan.delta_hash.Hex() + "), so its children keep "
                     "their parent\n";
  if (plan.remove_parent) return text + "would remove " + plan.parent + "\n";
  return text + "would keep " + plan.parent + ": " + plan.keep_reason + "\n";
}

}  // namespace

Status RunMergeCommand(const std::vector<std::string>& args) {
  po::options_description d("merge options");
  MergeOptions o;
  d.add_options()
      ("keep-parent", "keep the parent image file after merging")
      ("dry-run", "check everything and print what would be written and removed; change nothing")
      ("quiet,q", "print only errors");
  std::string chain_dir;
  AddChainOption(&d, &chain_dir);
  auto p = Parse(args, "hotsnap merge DELTA [--keep-parent] [--dry-run] [--chain DIR]",
                 "Fold DELTA, a delta image (backup --base) whose parent is a full image, into that\n"
                 "parent (forever-forward retention): a plain image of DELTA's content replaces DELTA\n"
                 "under its own name, each chunk's frame copied from DELTA or the parent after checking\n"
                 "its hash (nothing is recompressed), and then the parent file is removed. DELTA's\n"
                 "children keep working: the merged image stands for DELTA. Merge the oldest delta\n"
                 "first: a DELTA whose parent is itself a delta is refused. The parent is kept when\n"
                 "another image beside it (or beside DELTA) still names it as its base. The new image\n"
                 "is written beside DELTA under a temporary name, fsynced and renamed over DELTA; a\n"
                 "crash at any point leaves a chain that restores. The parent is found beside DELTA,\n"
                 "or in --chain DIR.",
                 d, {"DELTA"});
  if (!p.ok()) return p.status();
  if (p->help) return Status::Ok();
  if (p->vm.count("quiet")) SetQuiet(true);
  o.delta = p->vm["DELTA"].as<std::string>();
  o.keep_parent = p->vm.count("keep-parent") > 0;
  o.dry_run = p->vm.count("dry-run") > 0;
  auto chain = ChainOptionsFor(chain_dir);
  if (!chain.ok()) return chain.status();
  o.chain = *chain;
  auto r = RunMerge(o);
  if (!r.ok()) return r.status();
  if (o.dry_run) {
    std::fputs(DescribeMergePlan(r->plan).c_str(), stdout);
    return Status::Ok();
  }
  Notice("merged " + r->plan.delta + " into its parent " + r->plan.parent + ": " + o.delta +
         " is now a plain image (" + HumanBytes(r->image_bytes) + ", image hash xxh3-128:" +
         r->image_hash.Hex() + ", standing for xxh3-128:" + r->plan.delta_hash.Hex() + "); " +
         std::to_string(r->plan.delta_chunks) + " chunks from the delta, " +
         std::to_string(r->plan.parent_chunks) + " from the parent");
  if (r->parent_removed) {
    Notice("removed the old parent " + r->plan.parent);
  } else if (!r->plan.remove_parent) {
    Notice("kept the old parent " + r->plan.parent + ": " + r->plan.keep_reason);
  }
  if (!r->warning.empty()) Notice("warning: " + r->warning);
  return Status::Ok();
}

const std::vector<Command>& Commands() {
  static const std::vector<Command> commands = {
      {"backup", "back up a block device or disk image file into a zstd image", RunBackupCommand},
      {"restore", "write an image back onto a block device or into a file", RunRestoreCommand},
      {"verify", "check every hash in an image", RunVerifyCommand},
      {"info", "describe an image", RunInfoCommand},
      {"compact", "turn a tracked or delta image into a plain one that stock zstd restores", RunCompactCommand},
      {"merge", "fold the oldest delta image into its full parent (forever-forward)", RunMergeCommand},
      {"cat", "extract a byte range of the device stored in an image", RunCatCommand},
      {"mount", "mount the filesystem in an image read-only, without restoring it", RunMountCommand},
      {"umount", "undo hotsnap mount", RunUmountCommand},
      {"cleanup", "remove what crashed hotsnap processes left behind", RunCleanupCommand},
      {"list", "list the images in a repository", RunListCommand},
      {"check", "check a repository's catalog, files and chains (--read-data: every byte)", RunCheckCommand},
      {"prune", "remove images from a repository by a retention policy, chain-aware", RunPruneCommand},
      {"agent", "the backup agent: run (the daemon), status, check-config", RunAgentCommand},
      {"job", "the running agent's jobs: list, run NAME", RunJobCommand},
  };
  return commands;
}

}  // namespace hotsnap
