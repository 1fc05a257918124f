// Kept thin snapshots: the thin snapshot of the last successful backup of an origin, left in
// place as the parent of the next incremental one (ThinChangedRanges, thin_delta.h, compares
// it with the next run's snapshot).
//
// A kept snapshot (one per origin LV) is
//   - named  hotsnap-keep-<origin>,
//   - tagged hotsnap, hotsnap_keep, hotsnap_keep_run_<run id>, hotsnap_keep_time_<unix s>,
//   - inactive, with LVM's activation-skip flag set (as LVM sets it on every thin snapshot),
//     so vgchange -ay / lvchange -ay leave it inactive; only `lvchange -ay -K` activates it.
// It carries no hotsnap_run_<id> tag, so the dead-run cleanup (lvm_lease.h) never takes it for
// a leftover; that cleanup skips every LV this file names, whatever its tags.
//
// Keeping a new one (KeepThinSnapshot) takes one lvs and up to five LVM changes, each atomic
// on its own:
//   1. the run's snapshot hotsnap-<origin>-<run> is flagged and given the two record tags
//      (skipped when lvcreate did that already, as LvmSnapshotView does). Until step 4 it is
//      still the run's: if the run dies, cleanup removes it.
//   2. the old kept snapshot, if any, is renamed hotsnap-prev-<origin> (still hotsnap_keep);
//   3. the run's snapshot is renamed hotsnap-keep-<origin>;
//   4. commit: it gets hotsnap_keep and loses its hotsnap_run_<run> tag, and is deactivated
//      in the same lvchange (tags first);
//   5. hotsnap-prev-<origin> is removed.
// Under emulation each LVM command costs a second, so the sequence asks lvs once, and repairs
// (below) only when that report shows a crash's leftovers.
// A failure in steps 1-4 is rolled back (the new snapshot removed, the old one renamed back);
// a crash between two steps leaves a state RepairKeptSnapshots puts right: before the commit
// toward the old snapshot (an unfinished hotsnap-keep-<origin> is removed and hotsnap-prev-
// renamed back), after it toward the new one (hotsnap-prev- removed). So the old kept snapshot
// is only removed once the new one is in place, and a failed or interrupted run never leaves
// a new kept snapshot behind.
//
// Concurrency: one backup per origin at a time (the source lock, source_lock.h). Repairs skip
// an origin while a live run (by its lease) has an LV of it under way.
#ifndef HOTSNAP_SNAPSHOT_LVM_KEPT_H_
#define HOTSNAP_SNAPSHOT_LVM_KEPT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "snapshot/lvm_control.h"
#include "snapshot/lvm_lease.h"
#include "snapshot/thin_delta.h"

namespace hotsnap {

inline constexpr char kKeepTag[] = "hotsnap_keep";
inline constexpr char kKeepRunTagPrefix[] = "hotsnap_keep_run_";
inline constexpr char kKeepTimeTagPrefix[] = "hotsnap_keep_time_";

// What a kept snapshot is, as read back from LVM.
struct KeptSnapshot {
  std::string vg_name;
  std::string lv_name;  // hotsnap-keep-<origin>
  std::string origin_lv;
  std::string pool_lv;
  uint64_t thin_id = 0;      // the pool's device id of the snapshot (thin_delta's --snap1)
  int64_t created_unix = 0;  // when the snapshot was taken (lvcreate ran), s since the epoch
  std::string run_id;        // the LvmSnapshotView run that took it (LvmSnapshotView::run_id())

  std::string full_name() const { return vg_name + "/" + lv_name; }
};

std::string KeptSnapshotName(const std::string& origin_lv);     // hotsnap-keep-<origin>
std::string RetiredSnapshotName(const std::string& origin_lv);  // hotsnap-prev-<origin>

// The origin a hotsnap-keep-<origin> or hotsnap-prev-<origin> name stands for; empty for
// other names.
std::string KeptSnapshotOrigin(const std::string& lv_name);

// Whether an LV is (or is on its way to be, or was) a kept snapshot: tagged hotsnap_keep, or
// named hotsnap-keep-* or hotsnap-prev-* unless it is a run's own snapshot (of an origin
// named keep-* or prev-*: its name ends in the run id of its run tag). Dead-run cleanup leaves
// such LVs alone.
bool IsKeptSnapshotLv(const std::string& lv_name, const std::vector<std::string>& tags);

// Steps 1-5 above for the run's thin snapshot VG/SNAPSHOT_LV (taken of ORIGIN_LV by run
// RUN_ID at CREATED_UNIX). Its device must be closed. The record returned is the snapshot's
// row of that one lvs, under its new name. Errors: kSource quoting LVM; after a
// failure before the commit the new snapshot is gone and the old kept one is back.
// `listed` (may be null): a ListThinLvs report of VG made since the snapshot was created, with
// no LVM change to the origin's LVs since (a delta's, thin_delta.h), used instead of that lvs.
Result<KeptSnapshot> KeepThinSnapshot(LvmControl* lvm, const std::string& lease_dir,
                                      const std::string& vg, const std::string& snapshot_lv,
                                      const std::string& origin_lv, const std::string& run_id,
                                      int64_t created_unix,
                                      const std::vector<ThinLvRecord>* listed = nullptr);

// Puts a state left by a crash in KeepThinSnapshot right (see above); does nothing when there
// is nothing to do, or while a live run other than `except_run` has an LV of ORIGIN under way.
// `done` (may be null) gets one line per action.
Status RepairKeptSnapshots(LvmControl* lvm, const std::string& lease_dir, const std::string& vg,
                           const std::string& origin_lv, const std::string& except_run = "",
                           std::vector<std::string>* done = nullptr);

// Whether a state left by a crash needs RepairKeptSnapshots, from the tags of the origin's
// hotsnap-keep- and hotsnap-prev- LVs in a report (null: no such LV): a hotsnap-keep- one not
// yet committed (no hotsnap_keep tag) or a hotsnap-prev- one still tagged hotsnap_keep. Lets
// callers that hold a report skip the repair's own lvs runs when all is well.
bool KeptSnapshotsNeedRepair(const std::vector<std::string>* kept_tags,
                             const std::vector<std::string>* retired_tags);

// The kept snapshot of ORIGIN_LV in `lvs` (ListThinLvs of its VG), for a caller that checked
// KeptSnapshotsNeedRepair on the same report: nullopt when there is none; kSource when the LV
// of that name is no thin LV.
Result<std::optional<KeptSnapshot>> KeptSnapshotIn(const std::vector<ThinLvRecord>& lvs,
                                                   const std::string& origin_lv);
// KeptSnapshotsNeedRepair for ORIGIN_LV's LVs in `lvs`.
bool KeptSnapshotsNeedRepairIn(const std::vector<ThinLvRecord>& lvs, const std::string& origin_lv);

// The kept snapshot of VG/ORIGIN_LV (after a repair, when one is needed), or nullopt when
// there is none. One lvs when nothing needs repair.
Result<std::optional<KeptSnapshot>> FindKeptSnapshot(
    const std::string& vg, const std::string& origin_lv, LvmControl* lvm = RealLvmControl(),
    const std::string& lease_dir = kDefaultLeaseDir);

// Removes the kept snapshot of VG/ORIGIN_LV, and a hotsnap-prev- one left by a crash (the next
// backup of it is then a full one). No kept snapshot is not an error. An LV of that name that
// hotsnap did not tag is left alone (kSource).
Status DropKeptSnapshot(const std::string& vg, const std::string& origin_lv,
                        LvmControl* lvm = RealLvmControl());

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_LVM_KEPT_H_
