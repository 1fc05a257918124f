#include "snapshot/lvm_lease.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/unique_fd.h"
#include "snapshot/lvm_kept.h"
#include "snapshot/thin_device.h"

namespace hotsnap {
namespace {

using json = nlohmann::json;

std::string LeasePath(const std::string& dir, const std::string& run_id) {
  return dir + "/" + run_id + ".json";
}

Status MakeDirs(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos == dir.size() || dir[pos] == '/') {
      std::string part = dir.substr(0, pos);
      if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
        return Status::FromErrno(Code::kInternal, errno, "creating " + part);
      }
    }
  }
  return Status::Ok();
}

// Ids of the lease files in `dir`.
std::vector<std::string> LeaseIds(const std::string& dir) {
  std::vector<std::string> ids;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return ids;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    const std::string suffix = ".json";
    if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      ids.push_back(name.substr(0, name.size() - suffix.size()));
    }
  }
  ::closedir(d);
  return ids;
}

std::string DescribeDeadRun(const std::string& run_id, const Result<Lease>& lease) {
  if (!lease.ok()) return "run " + run_id + ": no lease file (crashed before a reboot?)";
  return "run " + run_id + ": pid " + std::to_string(lease->holder.pid) + " is gone";
}

}  // namespace

Lease LeaseForThisProcess(const std::string& run_id) {
  Lease lease;
  lease.run_id = run_id;
  lease.holder = ProcessIdentity::Current();
  return lease;
}

Status WriteLease(const std::string& dir, const Lease& lease) {
  HOTSNAP_RETURN_IF_ERROR(MakeDirs(dir));
  json doc = {{"run_id", lease.run_id},       {"vg", lease.vg_name},
              {"snapshot_lv", lease.snapshot_lv}, {"origin_lv", lease.origin_lv},
              {"mode", lease.mode}};
  AddIdentityTo(lease.holder, &doc);
  std::string text = doc.dump(2) + "\n";
  std::string path = LeasePath(dir, lease.run_id);
  std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::FromErrno(Code::kInternal, errno, "creating lease file " + tmp);
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fsync(fd.get()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno(Code::kInternal, err, "writing lease file " + tmp);
  }
  fd.Reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Status::FromErrno(Code::kInternal, err, "renaming lease file to " + path);
  }
  return Status::Ok();
}

Status RemoveLease(const std::string& dir, const std::string& run_id) {
  std::string path = LeasePath(dir, run_id);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno(Code::kInternal, errno, "removing lease file " + path);
  }
  return Status::Ok();
}

Result<Lease> ReadLease(const std::string& dir, const std::string& run_id) {
  std::string path = LeasePath(dir, run_id);
  std::ifstream in(path);
  if (!in) return Status::FromErrno(Code::kSource, errno, "opening lease file " + path);
  json doc = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Status(Code::kSource, "lease file " + path + " is not valid JSON");
  }
  Lease lease;
  lease.run_id = doc.value("run_id", run_id);
  lease.holder = IdentityFrom(doc);
  lease.vg_name = doc.value("vg", "");
  lease.snapshot_lv = doc.value("snapshot_lv", "");
  lease.origin_lv = doc.value("origin_lv", "");
  lease.mode = doc.value("mode", "");
  return lease;
}

bool LeaseHolderAlive(const Lease& lease) { return lease.holder.Alive(); }

std::string OwnedRunId(const LvRecord& lv) {
  if (lv.lv_name.rfind("hotsnap-", 0) != 0 || !lv.has_tag(kSnapshotTag)) return "";
  // A kept snapshot (lvm_kept.h) outlives its run on purpose.
  if (IsKeptSnapshotLv(lv.lv_name, lv.tags)) return "";
  const std::string prefix = kRunTagPrefix;
  for (const std::string& tag : lv.tags) {
    if (tag.size() > prefix.size() && tag.compare(0, prefix.size(), prefix) == 0) {
      std::string id = tag.substr(prefix.size());
      // The name must end in the same run id: both marks must agree.
      if (lv.lv_name.size() > id.size() &&
          lv.lv_name.compare(lv.lv_name.size() - id.size() - 1, std::string::npos, "-" + id) == 0) {
        return id;
      }
    }
  }
  return "";
}

Status CleanupLvmLeftovers(LvmControl* lvm, const std::string& lease_dir, LvmCleanupReport* report,
                           const std::vector<LvRecord>* listed) {
  Status first_error;
  auto note_error = [&first_error](const Status& s) {
    if (!s.ok() && first_error.ok()) first_error = s;
  };
  std::map<std::string, bool> run_has_lv;  // run id -> an LV of it still exists
  if (LvmAvailable()) {
    Result<std::vector<LvRecord>> lvs = listed != nullptr ? Result<std::vector<LvRecord>>(*listed) : ListLvs(lvm);
    if (!lvs.ok()) return lvs.status().Wrap("looking for leftover hotsnap snapshots");
    std::map<std::pair<std::string, std::string>, bool> kept_origins;  // (VG, origin LV)
    for (const LvRecord& lv : *lvs) {
      if (IsKeptSnapshotLv(lv.lv_name, lv.tags)) {
        // Never removed here; a crash while one was being replaced is put right below.
        std::string origin = KeptSnapshotOrigin(lv.lv_name);
        if (!origin.empty() && lv.has_tag(kSnapshotTag)) kept_origins[{lv.vg_name, origin}] = true;
        continue;
      }
      std::string run_id = OwnedRunId(lv);
      if (run_id.empty()) continue;  // not ours: never touched
      Result<Lease> lease = ReadLease(lease_dir, run_id);
      if (lease.ok() && LeaseHolderAlive(*lease)) {
        report->kept.push_back(lv.full_name() + " (run " + run_id + ", pid " +
                               std::to_string(lease->holder.pid) + " is running)");
        run_has_lv[run_id] = true;
        continue;
      }
      Status removed = RemoveLv(lvm, lv.full_name());
      if (removed.ok()) {
        report->removed.push_back("LVM snapshot " + lv.full_name() + " (" + DescribeDeadRun(run_id, lease) + ")");
      } else {
        run_has_lv[run_id] = true;  // keep the lease: the LV is still there
        note_error(removed);
      }
    }
    for (const auto& [key, unused] : kept_origins) {
      const LvRecord* kept_row = FindLvRow(*lvs, key.first, KeptSnapshotName(key.second));
      const LvRecord* retired_row = FindLvRow(*lvs, key.first, RetiredSnapshotName(key.second));
      std::string kept_name;
      if (KeptSnapshotsNeedRepair(kept_row ? &kept_row->tags : nullptr,
                                  retired_row ? &retired_row->tags : nullptr)) {
        std::vector<std::string> done;
        note_error(RepairKeptSnapshots(lvm, lease_dir, key.first, key.second, "", &done));
        for (const std::string& line : done) report->removed.push_back(line);
        auto kept = FindKeptSnapshot(key.first, key.second, lvm, lease_dir);
        if (kept.ok() && kept->has_value()) kept_name = (*kept)->full_name();
      } else if (kept_row != nullptr && kept_row->has_tag(kKeepTag)) {
        kept_name = kept_row->full_name();
      }
      if (!kept_name.empty()) {
        report->kept.push_back(kept_name + " (kept snapshot of " + key.second +
                               ": the parent of the next incremental backup)");
      }
    }
  }
  // Read-only devices of kept snapshots (thin_device.h) that a dead run left open: they keep
  // the pool from deleting that snapshot. A live run's is its own business.
  for (const std::string& run_id : ParentDeviceRuns()) {
    Result<Lease> lease = ReadLease(lease_dir, run_id);
    if (lease.ok() && LeaseHolderAlive(*lease)) continue;
    Status s = RemoveParentDevice(run_id);
    if (s.ok()) {
      report->removed.push_back("device-mapper device " + std::string(kParentDevicePrefix) + run_id +
                                " (" + DescribeDeadRun(run_id, lease) + ")");
    } else {
      run_has_lv[run_id] = true;  // keep the lease while its device is there
    }
    note_error(s);
  }
  // Lease files of dead runs whose snapshot is gone (or was never created).
  for (const std::string& run_id : LeaseIds(lease_dir)) {
    if (run_has_lv.count(run_id)) continue;
    Result<Lease> lease = ReadLease(lease_dir, run_id);
    if (lease.ok() && LeaseHolderAlive(*lease)) continue;
    Status s = RemoveLease(lease_dir, run_id);
    if (s.ok()) {
      report->removed.push_back("lease file " + lease_dir + "/" + run_id + ".json (" +
                                DescribeDeadRun(run_id, lease) + ")");
    }
    note_error(s);
  }
  return first_error;
}

}  // namespace hotsnap
