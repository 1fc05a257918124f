#include "snapshot/lvm_kept.h"

#include <cstdlib>
#include <cstring>

#include "base/crash_point.h"
#include "base/log.h"
#include "snapshot/thin_delta.h"

namespace hotsnap {
namespace {

constexpr char kKeptPrefix[] = "hotsnap-keep-";
constexpr char kRetiredPrefix[] = "hotsnap-prev-";

bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// The value of the first tag starting with `prefix`, or empty.
std::string TagValue(const std::vector<std::string>& tags, const std::string& prefix) {
  for (const std::string& tag : tags) {
    if (tag.size() > prefix.size() && StartsWith(tag, prefix)) return tag.substr(prefix.size());
  }
  return "";
}

const ThinLvRecord* Find(const std::vector<ThinLvRecord>& lvs, const std::string& name) {
  for (const ThinLvRecord& lv : lvs) {
    if (lv.lv_name == name) return &lv;
  }
  return nullptr;
}

// A live run other than `except_run` has an LV of `origin` under way: its snapshot
// (hotsnap-<origin>-<run>) or a half-renamed hotsnap-keep-<origin> carrying its run tag.
bool LiveRunOnOrigin(const std::vector<ThinLvRecord>& lvs, const std::string& lease_dir,
                     const std::string& origin, const std::string& except_run) {
  for (const ThinLvRecord& lv : lvs) {
    std::string run = TagValue(lv.tags, kRunTagPrefix);
    if (run.empty() || run == except_run) continue;
    if (lv.lv_name != KeptSnapshotName(origin) && lv.lv_name != "hotsnap-" + origin + "-" + run)
      continue;
    Result<Lease> lease = ReadLease(lease_dir, run);
    if (lease.ok() && LeaseHolderAlive(*lease)) return true;
  }
  return false;
}

Result<KeptSnapshot> RecordOf(const ThinLvRecord& lv, const std::string& origin) {
  KeptSnapshot kept;
  kept.vg_name = lv.vg_name;
  kept.lv_name = lv.lv_name;
  kept.origin_lv = origin;
  kept.pool_lv = lv.pool_lv;
  kept.run_id = TagValue(lv.tags, kKeepRunTagPrefix);
  kept.created_unix = std::strtoll(TagValue(lv.tags, kKeepTimeTagPrefix).c_str(), nullptr, 10);
  char* end = nullptr;
  kept.thin_id = std::strtoull(lv.thin_id.c_str(), &end, 10);
  if (lv.segtype != "thin" || lv.thin_id.empty() || *end != '\0') {
    return Status(Code::kSource, "kept snapshot " + lv.full_name() + " is a " + lv.segtype +
                                     " LV without a thin id; drop it (lvremove " + lv.full_name() +
                                     ")");
  }
  return kept;
}

Status Rename(LvmControl* lvm, const std::string& vg, const std::string& from,
              const std::string& to) {
  return RunLvmChange(lvm, {"lvrename", vg, from, to}, "renaming " + vg + "/" + from + " to " + to);
}

}  // namespace

std::string KeptSnapshotName(const std::string& origin_lv) { return kKeptPrefix + origin_lv; }
std::string RetiredSnapshotName(const std::string& origin_lv) { return kRetiredPrefix + origin_lv; }

std::string KeptSnapshotOrigin(const std::string& lv_name) {
  for (const std::string prefix : {kKeptPrefix, kRetiredPrefix}) {
    if (lv_name.size() > prefix.size() && StartsWith(lv_name, prefix))
      return lv_name.substr(prefix.size());
  }
  return "";
}

bool IsKeptSnapshotLv(const std::string& lv_name, const std::vector<std::string>& tags) {
  for (const std::string& tag : tags) {
    if (tag == kKeepTag) return true;
  }
  if (KeptSnapshotOrigin(lv_name).empty()) return false;
  // A run's own snapshot of an origin named keep-* or prev-* (hotsnap-keep-x-<run>, with the
  // run tag that names the same run) is not one of ours here.
  for (const std::string& tag : tags) {
    std::string run = tag.size() > std::strlen(kRunTagPrefix) && StartsWith(tag, kRunTagPrefix)
                          ? tag.substr(std::strlen(kRunTagPrefix))
                          : "";
    if (!run.empty() && lv_name.size() > run.size() + 1 &&
        lv_name.compare(lv_name.size() - run.size() - 1, std::string::npos, "-" + run) == 0) {
      return false;
    }
  }
  return true;
}

bool KeptSnapshotsNeedRepair(const std::vector<std::string>* kept_tags,
                             const std::vector<std::string>* retired_tags) {
  auto has_keep = [](const std::vector<std::string>& tags) {
    for (const std::string& tag : tags) {
      if (tag == kKeepTag) return true;
    }
    return false;
  };
  return (kept_tags != nullptr && !has_keep(*kept_tags)) ||
         (retired_tags != nullptr && has_keep(*retired_tags));
}

bool KeptSnapshotsNeedRepairIn(const std::vector<ThinLvRecord>& lvs, const std::string& origin_lv) {
  const ThinLvRecord* kept = Find(lvs, KeptSnapshotName(origin_lv));
  const ThinLvRecord* retired = Find(lvs, RetiredSnapshotName(origin_lv));
  return KeptSnapshotsNeedRepair(kept ? &kept->tags : nullptr, retired ? &retired->tags : nullptr);
}

Result<std::optional<KeptSnapshot>> KeptSnapshotIn(const std::vector<ThinLvRecord>& lvs,
                                                   const std::string& origin_lv) {
  const ThinLvRecord* lv = Find(lvs, KeptSnapshotName(origin_lv));
  if (lv == nullptr || !lv->has_tag(kKeepTag)) return std::optional<KeptSnapshot>();
  auto kept = RecordOf(*lv, origin_lv);
  if (!kept.ok()) return kept.status();
  return std::optional<KeptSnapshot>(std::move(kept.value()));
}

Status RepairKeptSnapshots(LvmControl* lvm, const std::string& lease_dir, const std::string& vg,
                           const std::string& origin_lv, const std::string& except_run,
                           std::vector<std::string>* done) {
  auto lvs = ListThinLvs(lvm, vg);
  if (!lvs.ok()) return lvs.status().Wrap("looking for kept snapshots of " + vg + "/" + origin_lv);
  if (LiveRunOnOrigin(*lvs, lease_dir, origin_lv, except_run)) return Status::Ok();
  const std::string kept_name = KeptSnapshotName(origin_lv),
                    retired_name = RetiredSnapshotName(origin_lv);
  const ThinLvRecord* kept = Find(*lvs, kept_name);
  const ThinLvRecord* retired = Find(*lvs, retired_name);
  auto note = [done](const std::string& line) {
    if (done != nullptr) done->push_back(line);
  };
  // Renamed but not committed (a crash between steps 3 and 4): a dead run's snapshot.
  if (kept != nullptr && !kept->has_tag(kKeepTag)) {
    if (!kept->has_tag(kSnapshotTag) || TagValue(kept->tags, kRunTagPrefix).empty()) {
      return Status(Code::kSource, vg + "/" + kept_name +
                                       " exists but was not made by hotsnap; "
                                       "rename it, hotsnap keeps its snapshot of " +
                                       origin_lv + " under that name");
    }
    HOTSNAP_RETURN_IF_ERROR(RemoveLv(lvm, vg + "/" + kept_name));
    note("LVM snapshot " + vg + "/" + kept_name +
         " (an interrupted run's, never committed as kept)");
    kept = nullptr;
  }
  if (retired != nullptr && retired->has_tag(kKeepTag)) {
    if (kept != nullptr) {
      // Replaced (a crash between steps 4 and 5).
      HOTSNAP_RETURN_IF_ERROR(RemoveLv(lvm, vg + "/" + retired_name));
      note("LVM snapshot " + vg + "/" + retired_name + " (replaced by " + kept_name + ")");
    } else {
      // Retired, and its replacement never committed (a crash between steps 2 and 4).
      HOTSNAP_RETURN_IF_ERROR(Rename(lvm, vg, retired_name, kept_name));
      note("renamed " + vg + "/" + retired_name + " back to " + kept_name +
           " (its replacement was never committed)");
    }
  }
  return Status::Ok();
}

Result<KeptSnapshot> KeepThinSnapshot(LvmControl* lvm, const std::string& lease_dir,
                                      const std::string& vg, const std::string& snapshot_lv,
                                      const std::string& origin_lv, const std::string& run_id,
                                      int64_t created_unix, const std::vector<ThinLvRecord>* listed) {
  const std::string kept_name = KeptSnapshotName(origin_lv),
                    retired_name = RetiredSnapshotName(origin_lv);
  const std::string what = "keeping " + vg + "/" + snapshot_lv + " as " + kept_name;
  // One lvs for the whole sequence: the repair (and a second lvs) only when it shows a crash's
  // leftovers; the record returned is the run's snapshot's row under its new name.
  Result<std::vector<ThinLvRecord>> lvs = Status(Code::kInternal, "");
  if (listed != nullptr && Find(*listed, snapshot_lv) != nullptr) {
    lvs = *listed;
  } else {
    lvs = ListThinLvs(lvm, vg);
  }
  if (!lvs.ok()) return lvs.status().Wrap(what);
  if (KeptSnapshotsNeedRepairIn(*lvs, origin_lv)) {
    HOTSNAP_RETURN_IF_ERROR(RepairKeptSnapshots(lvm, lease_dir, vg, origin_lv, run_id).Wrap(what));
    lvs = ListThinLvs(lvm, vg);
    if (!lvs.ok()) return lvs.status().Wrap(what);
  }
  const bool had_old = Find(*lvs, kept_name) != nullptr;

  std::string current = snapshot_lv;  // the new snapshot's name as it goes
  // Before the commit, any failure removes the new snapshot and puts the old one back.
  auto roll_back = [&](const Status& failed) {
    Status undo = RemoveLv(lvm, vg + "/" + current);
    if (undo.ok()) undo = RepairKeptSnapshots(lvm, lease_dir, vg, origin_lv, run_id);
    return failed.Wrap(what).WithCleanup(undo);
  };
  const ThinLvRecord* snap = Find(*lvs, snapshot_lv);
  if (snap == nullptr) {
    return roll_back(Status(Code::kSource, "lvs does not show " + vg + "/" + snapshot_lv));
  }
  auto record = RecordOf(*snap, origin_lv);
  if (!record.ok()) return roll_back(record.status());
  record->lv_name = kept_name;
  record->run_id = run_id;
  record->created_unix = created_unix;
  const std::string run_tag = kKeepRunTagPrefix + run_id,
                    time_tag = kKeepTimeTagPrefix + std::to_string(created_unix);
  // Already flagged and recorded when lvcreate made it so (LvmSnapshotView does).
  const bool flagged = snap->has_tag(run_tag) && snap->has_tag(time_tag) &&
                       snap->lv_attr.size() > 9 && snap->lv_attr[9] == 'k';
  // 1. Skipped on activation, the record in its tags (deactivated with the commit).
  Status s = Status::Ok();
  if (!flagged) {
    s = RunLvmChange(lvm,
                     {"lvchange", "-ky", "--addtag", run_tag, "--addtag", time_tag, vg + "/" + current},
                     "flagging " + vg + "/" + current);
  }
  // 2. The old one out of the way, 3. the new one under the name.
  if (s.ok() && had_old) {
    s = Rename(lvm, vg, kept_name, retired_name);
    if (s.ok()) CrashPoint("keep-retired");
  }
  if (s.ok()) {
    s = Rename(lvm, vg, current, kept_name);
    if (s.ok()) current = kept_name;
    if (s.ok()) CrashPoint("keep-renamed");
  }
  // 4. Commit, and deactivate: lvchange changes the tags first, then the activation, in one
  // run. If the deactivation fails the command fails and the new one is rolled back as
  // uncommitted (the old one comes back), though its tags changed: a valid state either way.
  if (s.ok()) {
    std::vector<std::string> commit = {"lvchange", "--addtag", kKeepTag, "--deltag",
                                       kRunTagPrefix + run_id};
    if (snap->active()) commit.push_back("-an");
    commit.push_back(vg + "/" + kept_name);
    s = RunLvmChange(lvm, commit, "committing " + vg + "/" + kept_name);
  }
  if (!s.ok()) return roll_back(s);
  CrashPoint("keep-committed");
  // 5. The old one. If this fails the next repair removes it; the new one is kept already.
  if (had_old) {
    Status removed = RemoveLv(lvm, vg + "/" + retired_name);
    if (!removed.ok()) Notice("the replaced kept snapshot is still there: " + removed.message());
  }
  return record;
}

Result<std::optional<KeptSnapshot>> FindKeptSnapshot(const std::string& vg,
                                                     const std::string& origin_lv, LvmControl* lvm,
                                                     const std::string& lease_dir) {
  auto lvs = ListThinLvs(lvm, vg);
  if (!lvs.ok()) return lvs.status();
  if (KeptSnapshotsNeedRepairIn(*lvs, origin_lv)) {
    HOTSNAP_RETURN_IF_ERROR(RepairKeptSnapshots(lvm, lease_dir, vg, origin_lv));
    lvs = ListThinLvs(lvm, vg);
    if (!lvs.ok()) return lvs.status();
  }
  return KeptSnapshotIn(*lvs, origin_lv);
}

Status DropKeptSnapshot(const std::string& vg, const std::string& origin_lv, LvmControl* lvm) {
  auto lvs = ListThinLvs(lvm, vg);
  if (!lvs.ok()) return lvs.status().Wrap("dropping the kept snapshot of " + vg + "/" + origin_lv);
  for (const std::string& name : {KeptSnapshotName(origin_lv), RetiredSnapshotName(origin_lv)}) {
    const ThinLvRecord* lv = Find(*lvs, name);
    if (lv == nullptr) continue;
    if (!lv->has_tag(kSnapshotTag)) {
      return Status(Code::kSource, vg + "/" + name + " is not tagged " + kSnapshotTag +
                                       ": not hotsnap's, left alone");
    }
    HOTSNAP_RETURN_IF_ERROR(RemoveLv(lvm, vg + "/" + name));
  }
  return Status::Ok();
}

}  // namespace hotsnap
