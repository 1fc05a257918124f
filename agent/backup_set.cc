#include "agent/backup_set.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "agent/consistency_group.h"
#include "agent/events.h"
#include "base/process_identity.h"
#include "io/sink.h"
#include "io/ssh_remote.h"
#include "snapshot/freeze.h"

namespace hotsnap {
namespace {

// The sysfs directory of a block device ("/sys/devices/.../loop0", a partition's lies
// inside its disk's), or "" for anything else.
std::string SysfsDirOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) return "";
  std::string link = "/sys/dev/block/" + std::to_string(major(st.st_rdev)) + ":" +
                     std::to_string(minor(st.st_rdev));
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(link.c_str(), nullptr), &std::free);
  return real ? std::string(real.get()) : "";
}

std::string FileNameOf(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Distinct sources, none inside another (a disk and its partition would be frozen twice and
// stored twice).
Status CheckSources(const std::vector<std::string>& sources) {
  if (sources.size() < 2) return Status(Code::kInternal, "a backup set needs two sources");
  std::vector<std::string> dirs;
  std::set<std::string> names;
  for (const std::string& s : sources) {
    std::string name = FileNameOf(s);
    if (name.empty() || !names.insert(name).second) {
      return Status(Code::kUsage, "two sources are named '" + name +
                                      "': each image is stored as DIR/NAME.zst, so the "
                                      "sources' file names must differ");
    }
    dirs.push_back(SysfsDirOf(s));
  }
  for (size_t i = 0; i < sources.size(); ++i) {
    for (size_t j = 0; j < sources.size(); ++j) {
      if (i == j || dirs[i].empty() || dirs[j].empty()) continue;
      if (dirs[i] == dirs[j] || dirs[j].rfind(dirs[i] + "/", 0) == 0) {
        return Status(Code::kUsage,
                      sources[j] + (dirs[i] == dirs[j] ? " is the same device as "
                                                       : " is a partition of ") +
                          sources[i] + ": give the disk, or its partitions, not both");
      }
    }
  }
  return Status::Ok();
}

Status CheckDirectory(const BackupSetOptions& o, const std::string& manifest) {
  if (o.dir == "-" || IsSshUrl(o.dir)) {
    return Status(Code::kUsage, "a backup of several sources writes one image per source: -o "
                                "must be a local directory, not " + o.dir);
  }
  struct stat st;
  if (::stat(o.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status(Code::kUsage, "-o " + o.dir + ": with several sources, -o is an existing "
                                "directory (each image is written there as NAME.zst)");
  }
  if (!o.common.overwrite && ::lstat(manifest.c_str(), &st) == 0) {
    return Status(Code::kTarget,
                  manifest + " already exists; refusing to replace it (use --overwrite)");
  }
  return Status::Ok();
}

// Every party reports whether its copy succeeded; each one learns whether all did.
class AllOrNothing {
 public:
  explicit AllOrNothing(size_t parties) : parties_(parties) {}
  Status Arrive(const Status& mine) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!mine.ok() && first_failure_.ok()) first_failure_ = mine;
    if (++arrived_ == parties_) {
      done_.notify_all();
    } else {
      done_.wait(lock, [this] { return arrived_ == parties_; });
    }
    if (first_failure_.ok()) return Status::Ok();
    return Status(first_failure_.code(),
                  "not published: another source of this backup failed: " +
                      first_failure_.message());
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  size_t parties_;
  size_t arrived_ = 0;
  Status first_failure_;
};

// The first copy of a set to fail: the cause of the run's failure. The others stop early
// (Echo(), polled by each copy) rather than finish work that cannot be published.
class FirstFailure {
 public:
  void Record(const Status& s) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (first_.ok()) first_ = s;
    failed_.store(true, std::memory_order_release);
  }
  Status Get() {
    std::lock_guard<std::mutex> lock(mutex_);
    return first_;
  }
  // Polled by every copy's pipeline loop: no lock until a failure was recorded.
  Status Echo() {
    if (!failed_.load(std::memory_order_acquire)) return Status::Ok();
    std::lock_guard<std::mutex> lock(mutex_);
    if (first_.ok()) return Status::Ok();
    return Status(first_.code(), "another source of this backup failed: " + first_.message());
  }

 private:
  std::mutex mutex_;
  Status first_;
  std::atomic<bool> failed_{false};
};

// The manifest, written as an image is: under a temporary name, published when complete.
Status WriteManifest(const BackupSetPlan& plan, const std::vector<BackupReport>& reports) {
  nlohmann::ordered_json j;
  j["format"] = "hotsnap-set";
  j["format_version"] = 1;
  j["run_id"] = plan.run_id;
  j["host"] = HostName();
  j["created_utc"] = NowUtc();
  j["tool_version"] = HOTSNAP_VERSION;
  j["frozen"] = plan.frozen;
  j["crash_consistent"] = plan.crash_consistent;
  nlohmann::ordered_json images = nlohmann::ordered_json::array();
  for (size_t i = 0; i < reports.size(); ++i) {
    const BackupReport& r = reports[i];
    nlohmann::ordered_json e;
    e["source"] = r.source;
    e["image"] = FileNameOf(r.source) + ".zst";
    e["snapshot_mode"] = SnapshotModeName(r.snapshot_mode);
    e["device_bytes"] = r.device_bytes;
    e["image_bytes"] = r.image_bytes;
    e["image_hash"] = "xxh3-128:" + r.image_hash.Hex();
    images.push_back(std::move(e));
  }
  j["images"] = std::move(images);
  std::string text = j.dump(2) + "\n";
  auto sink = MakeFileSink(plan.manifest_path, FileSinkOptions{plan.options.common.overwrite});
  if (!sink.ok()) return sink.status();
  HOTSNAP_RETURN_IF_ERROR((*sink)->Write(text.data(), text.size()));
  return (*sink)->Commit();
}

}  // namespace

Result<BackupSetPlan> PlanBackupSet(const BackupSetOptions& options) {
  BackupSetPlan set;
  set.options = options;
  set.run_id = NewRunId();
  set.manifest_path = options.dir + "/manifest.json";
  HOTSNAP_RETURN_IF_ERROR(CheckSources(options.sources));
  HOTSNAP_RETURN_IF_ERROR(CheckDirectory(options, set.manifest_path));
  set.rendezvous = std::make_unique<FreezeRendezvous>();
  // Each --allow-crash-consistent PART goes to the source it names; one that names nothing in
  // any source is the same usage error as for one source.
  const std::vector<std::string>& parts = options.common.allow_crash_consistent;
  std::vector<std::vector<std::string>> allowed(options.sources.size());
  std::vector<bool> named(parts.size(), false);
  for (size_t s = 0; s < options.sources.size(); ++s) {
    auto use = InspectDeviceUse(options.sources[s], Code::kSource);
    if (!use.ok()) return use.status();
    for (size_t i = 0; i < parts.size(); ++i) {
      if (PartNamesMemberOf(parts[i], *use)) {
        named[i] = true;
        allowed[s].push_back(parts[i]);
      }
    }
  }
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!named[i]) {
      return Status(Code::kUsage, "--allow-crash-consistent " + parts[i] +
                                      ": no read-write mounted filesystem or stacked device of "
                                      "any source is that");
    }
  }
  for (size_t s = 0; s < options.sources.size(); ++s) {
    const std::string& source = options.sources[s];
    BackupOptions o = options.common;
    o.source = source;
    o.dest = options.dir + "/" + FileNameOf(source) + ".zst";
    o.run_id = set.run_id;
    o.rendezvous = set.rendezvous.get();
    o.hooks = HookSet{};  // the hooks run once, around the group's freeze
    o.hooks.timeout = options.common.hooks.timeout;
    o.allow_crash_consistent = allowed[s];
    auto plan = PlanBackup(o);
    if (!plan.ok()) return plan.status();
    SnapshotMode m = plan->mode->mode();
    if (m == SnapshotMode::kLvm || m == SnapshotMode::kLvmThin) {
      return Status(Code::kUsage,
                    source + ": --snapshot " + SnapshotModeName(m) +
                        " cannot join a backup of several sources (each LVM snapshot is a "
                        "moment of its own); back up the logical volume alone, or its disk "
                        "with --snapshot tracked or freeze");
    }
    set.plans.push_back(std::move(plan.value()));
  }
  // The union group: every source's members, deeper mount points first.
  std::vector<MountUse> members;
  size_t parties = 0;
  for (const BackupPlan& p : set.plans) {
    std::vector<MountUse> frozen = p.mode->frozen_mounts();
    if (!frozen.empty()) ++parties;
    members.insert(members.end(), frozen.begin(), frozen.end());
    for (const std::string& c : p.mode->crash_consistent()) set.crash_consistent.push_back(c);
  }
  std::stable_sort(members.begin(), members.end(), [](const MountUse& a, const MountUse& b) {
    return MountPointDepth(a.mount_point) > MountPointDepth(b.mount_point);
  });
  struct stat dir;
  ::stat(options.dir.c_str(), &dir);
  FreezeViewOptions f;
  for (const MountUse& m : members) {
    struct stat mp;
    if (::stat(m.mount_point.c_str(), &mp) == 0 && mp.st_dev == dir.st_dev) {
      return Status(Code::kUsage, "-o " + options.dir + " is on a filesystem that would be "
                                  "frozen (" + m.mount_point + "); writing the images there "
                                  "would block until the thaw. Write them to another "
                                  "filesystem");
    }
    set.frozen.push_back(m.mount_point);
    f.source += (f.source.empty() ? "" : " ") + m.device;
  }
  f.mount_points = set.frozen;
  f.max_freeze = options.common.max_freeze;
  f.hooks = options.common.hooks;
  set.rendezvous->Configure(parties, std::move(f));
  return set;
}

Result<BackupSetReport> RunBackupSet(BackupSetPlan set) {
  const size_t n = set.plans.size();
  AllOrNothing gate(n);
  FirstFailure first;
  std::vector<char> arrived(n, 0);  // each written by its own thread only
  std::vector<Result<BackupReport>> results(n, Status(Code::kInternal, "not run"));
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i) {
    set.plans[i].options.before_publish = [&gate, &arrived, i] {
      arrived[i] = 1;
      return gate.Arrive(Status::Ok());
    };
    set.plans[i].options.stop = [&first] { return first.Echo(); };
  }
  for (size_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      results[i] = RunPlan(std::move(set.plans[i]));
      if (!results[i].ok()) {
        first.Record(results[i].status());
        // The others must not wait for this copy at the freeze, nor publish without it.
        set.rendezvous->Withdraw(results[i].status());
        if (!arrived[i]) (void)gate.Arrive(results[i].status());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  // The root cause: the first failure; the others followed from it.
  Status failure = first.Get();
  if (!failure.ok()) return failure;
  BackupSetReport report;
  report.run_id = set.run_id;
  report.manifest_path = set.manifest_path;
  for (auto& r : results) report.images.push_back(std::move(r.value()));
  HOTSNAP_RETURN_IF_ERROR(WriteManifest(set, report.images));
  return report;
}

}  // namespace hotsnap
