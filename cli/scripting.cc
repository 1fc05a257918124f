#include "cli/scripting.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

#include "agent/events.h"
#include "agent/progress.h"
#include "agent/throttle.h"
#include "base/log.h"
#include "io/ssh_remote.h"

namespace po = boost::program_options;

namespace hotsnap {

void AddEventOptions(po::options_description* d) {
  d->add_options()
      ("json", "write line-delimited JSON events (phases, progress, result, errors) to stderr "
       "(which then carries nothing else) or to --events-fd; schema: docs/events.schema.json")
      ("events-fd", po::value<int>(), "write the JSON events to this open file descriptor "
       "(implies --json)");
}

Status SetUpEvents(const po::variables_map& vm, const std::string& command, bool* events_on_stderr) {
  *events_on_stderr = false;
  if (!vm.count("json") && !vm.count("events-fd")) return Status::Ok();
  int fd = STDERR_FILENO;
  if (vm.count("events-fd")) {
    fd = vm["events-fd"].as<int>();
    if (fd < 0 || ::fcntl(fd, F_GETFD) < 0) {
      return Status(Code::kUsage, "--events-fd " + std::to_string(fd) + " is not an open file descriptor");
    }
    if (fd <= STDOUT_FILENO) {
      return Status(Code::kUsage, "--events-fd must not be stdin or stdout");
    }
    // Keep it from leaking into ssh and hook processes.
    ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  if (fd == STDERR_FILENO) {
    *events_on_stderr = true;
    SetQuiet(true);
  }
  EnableEvents(fd, command);
  return Status::Ok();
}

void AddSshOptions(po::options_description* d, std::vector<std::string>* out) {
  d->add_options()
      ("ssh-option", po::value<std::vector<std::string>>(out)->composing(),
       "for ssh:// URLs: pass -o OPTION to ssh (repeatable), e.g. IdentityFile=/root/.ssh/backup "
       "or UserKnownHostsFile=/etc/hotsnap/known_hosts. ssh always runs with BatchMode=yes");
}

Status CheckSshArguments(const std::vector<std::string>& ssh_options, const std::string& location) {
  for (const std::string& o : ssh_options) {
    if (o.empty() || o.find_first_of("\r\n", 0) != std::string::npos) {
      return Status(Code::kUsage, "--ssh-option must be one non-empty line: KEY=VALUE");
    }
  }
  if (IsSshUrl(location)) {
    auto url = ParseSshUrl(location);
    if (!url.ok()) return url.status();
  }
  return Status::Ok();
}

void AddPriorityOptions(po::options_description* d) {
  d->add_options()
      ("io-priority", po::value<std::string>(),
       "I/O scheduling class: idle (disk time nobody else wants) or best-effort (lowest level); "
       "honoured by the bfq and cfq schedulers")
      ("nice", po::value<int>(), "CPU nice value for hotsnap and its threads (-20..19)");
}

Status ApplyPriorityOptions(const po::variables_map& vm) {
  IoPriority io = IoPriority::kUnchanged;
  if (vm.count("io-priority")) {
    auto parsed = ParseIoPriority(vm["io-priority"].as<std::string>());
    if (!parsed.ok()) return parsed.status();
    io = *parsed;
  }
  std::optional<int> nice;
  if (vm.count("nice")) nice = vm["nice"].as<int>();
  return SetProcessPriority(io, nice);
}

void AddRateLimitOption(po::options_description* d) {
  d->add_options()
      ("rate-limit", po::value<double>(), "read at most this many MB/s (MB = 1,000,000 bytes) "
       "from the source");
}

Result<uint64_t> RateLimitBytesPerSecond(const po::variables_map& vm) {
  if (!vm.count("rate-limit")) return uint64_t{0};
  double mb = vm["rate-limit"].as<double>();
  if (!(mb >= 0.1 && mb <= 1e6)) return Status(Code::kUsage, "--rate-limit must be between 0.1 and 1000000 MB/s");
  return static_cast<uint64_t>(mb * 1e6);
}

void EmitBackupResult(const BackupReport& r) {
  if (!EventsEnabled()) return;
  nlohmann::ordered_json j;
  j["source"] = r.source;
  j["dest"] = r.dest;
  j["snapshot_mode"] = SnapshotModeName(r.snapshot_mode);
  j["fs_type"] = r.fs_type;
  j["reader"] = r.reader;
  j["device_bytes"] = r.device_bytes;
  j["used_bytes"] = r.used_bytes;
  j["bytes_read"] = r.bytes_read;
  j["image_bytes"] = r.image_bytes;
  j["chunks"] = r.chunks;
  j["zero_chunks"] = r.zero_chunks;
  j["ratio"] = r.image_bytes ? static_cast<double>(r.device_bytes) / r.image_bytes : 0.0;
  j["image_hash"] = "xxh3-128:" + r.image_hash.Hex();
  j["seconds"] = r.seconds;
  j["read_rate_bytes_per_s"] = r.seconds > 0 ? r.bytes_read / r.seconds : 0.0;
  j["freeze_ms"] = r.freeze_ms;
  j["frozen"] = r.frozen;
  j["crash_consistent"] = r.crash_consistent;
  if (!r.base.empty()) {
    j["base"] = r.base;
    j["change_source"] = r.change_source;
    j["change_reason"] = r.change_reason;
    j["changed_chunks"] = r.changed_chunks;
    j["unchanged_chunks"] = r.unchanged_chunks;
    j["base_image_bytes"] = r.base_image_bytes;
    if (r.base_remote_tail_bytes != 0) j["base_ssh_bytes_read"] = r.base_remote_tail_bytes;
  }
  if (r.snapshot_mode == SnapshotMode::kTracked) {
    j["rounds"] = r.rounds;
    j["recopied_bytes"] = r.recopied_bytes;
    j["final_capture_bytes"] = r.final_capture_bytes;
  }
  EmitResult(std::move(j));
}

void EmitRestoreResult(const RestoreOptions& o, const RestoreReport& r) {
  if (!EventsEnabled()) return;
  nlohmann::ordered_json j;
  j["image"] = o.image;
  j["target"] = o.target;
  j["writer"] = r.writer;
  j["device_bytes"] = r.meta.device_bytes;
  j["bytes_written"] = r.bytes_written;
  j["zero_chunks_skipped"] = r.zero_chunks_skipped;
  if (r.changed_only) {
    j["changed_only"] = true;
    j["chunks_compared"] = r.chunks_compared;
    j["chunks_written"] = r.chunks_written;
    j["target_bytes_read"] = r.target_bytes_read;
  }
  j["seconds"] = r.seconds;
  EmitResult(std::move(j));
}

void EmitVerifyResult(const std::string& image, const VerifyReport& r) {
  if (!EventsEnabled()) return;
  nlohmann::ordered_json j;
  j["image"] = image;
  j["device_bytes"] = r.meta.device_bytes;
  j["image_bytes"] = r.image_bytes;
  j["chunks"] = r.chunks;
  j["zero_chunks"] = r.zero_chunks;
  j["image_hash"] = "xxh3-128:" + r.image_hash.Hex();
  j["seconds"] = r.seconds;
  EmitResult(std::move(j));
}

void PrintPlan(const BackupPlan& plan) {
  const BackupSubject& s = *plan.subject;
  const CopyMode& mode = *plan.mode;
  const BackupOptions& o = plan.options;
  std::string fs = s.fs.type.empty() ? std::string("none found") : s.fs.type;
  if (!s.fs.label.empty()) fs += " label '" + s.fs.label + "'";
  if (!s.fs.uuid.empty()) fs += " UUID " + s.fs.uuid;
  const uint64_t device_bytes = s.device.size_bytes;
  const uint64_t planned = mode.planned_bytes();
  char used[400];
  std::snprintf(used, sizeof(used), "%s (%llu bytes, %.1f%% of the device, from %s)",
                HumanBytes(planned).c_str(), static_cast<unsigned long long>(planned),
                device_bytes ? 100.0 * planned / device_bytes : 0.0, mode.planned_map().c_str());
  std::string rate = o.rate_limit_bytes_per_s
                         ? std::to_string(o.rate_limit_bytes_per_s / 1e6).substr(0, 6) + " MB/s"
                         : std::string("none");
  std::string snapshot = SnapshotModeName(mode.mode());
  if (o.snapshot != mode.mode()) snapshot = SnapshotModeName(o.snapshot) + (" -> " + snapshot);
  std::printf("dry run: nothing was written\n");
  std::printf("  source:      %s (%s, %llu bytes, %u-byte sectors)\n", o.source.c_str(),
              HumanBytes(device_bytes).c_str(), static_cast<unsigned long long>(device_bytes),
              s.device.logical_sector_bytes);
  std::printf("  filesystem:  %s\n", fs.c_str());
  std::printf("  to read:     %s\n", used);
  std::printf("  snapshot:    %s: %s\n", snapshot.c_str(), mode.Describe().c_str());
  std::printf("  target:      %s (%s)\n", o.dest.c_str(), DestKindName(plan.dest_kind));
  if (plan.base && plan.base->remote) {
    std::printf("  delta of:    %s (image hash xxh3-128:%s; its index read over ssh, %llu bytes; "
                "its own parents not looked for); changes by hash compare\n",
                plan.base->path.c_str(), plan.base->image_hash.Hex().c_str(),
                static_cast<unsigned long long>(plan.base->remote_tail_bytes));
  } else if (plan.base) {
    std::printf("  delta of:    %s (image hash xxh3-128:%s, %zu image%s in its chain); changes by "
                "hash compare\n",
                plan.base->path.c_str(), plan.base->image_hash.Hex().c_str(), plan.base->chain_links,
                plan.base->chain_links == 1 ? "" : "s");
  }
  std::printf("  zstd level:  %d\n", o.level);
  std::printf("  rate limit:  %s\n", rate.c_str());
  std::fflush(stdout);
  if (!EventsEnabled()) return;
  nlohmann::ordered_json j;
  j["source"] = o.source;
  j["device_bytes"] = device_bytes;
  j["logical_sector_bytes"] = s.device.logical_sector_bytes;
  j["fs_type"] = s.fs.type;
  j["fs_uuid"] = s.fs.uuid;
  j["fs_label"] = s.fs.label;
  j["used_bytes"] = planned;
  j["used_map"] = mode.planned_map();
  j["snapshot_mode"] = snapshot;
  j["snapshot_detail"] = mode.Describe();
  j["dest"] = o.dest;
  j["dest_kind"] = DestKindName(plan.dest_kind);
  j["level"] = o.level;
  j["rate_limit_bytes_per_s"] = o.rate_limit_bytes_per_s;
  EmitPlan(j);
  nlohmann::ordered_json result;
  result["dry_run"] = true;
  EmitResult(std::move(result));
}

}  // namespace hotsnap
