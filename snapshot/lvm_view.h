// The "lvm" and "lvm-thin" snapshot modes: the backup reads an LVM snapshot of the source
// logical volume, so the origin stays writable (and unfrozen) during the whole copy.
//
//   lvm       classic copy-on-write snapshot (lvcreate -s -L COW). Every origin block written
//             while the snapshot exists is copied into the COW area first; when the area is
//             full the kernel invalidates the snapshot. Check() watches its fill level.
//   lvm-thin  thin snapshot of a thin LV (lvcreate -s -K: activated as it is made). It shares
//             the pool; refused when the pool's data or metadata use is above a threshold, and
//             Check() aborts if the pool fills up while reading (the pool's device-mapper
//             status: no lvs while reading).
//
// LVM suspends the origin (which freezes its filesystem) inside lvcreate; no second freeze
// is added. The user's hooks run around lvcreate: --pre-freeze before it, --while-frozen once
// the snapshot exists, --post-thaw right after that (always, when --pre-freeze ran).
//
// Leftovers: the snapshot is leased (see lvm_lease.h) before it is created; Open() first
// removes leftovers of dead runs. Release() (or the destructor) removes the snapshot and the
// lease. Not thread-safe.
//
// Kept snapshots (lvm-thin with keep_snapshot): once the backup succeeded, Keep() instead of
// Release() turns the thin snapshot into the origin's kept one, hotsnap-keep-<origin>, the
// parent of the next incremental backup (lvm_kept.h: inactive, skipped on activation, never
// removed by cleanup; the old kept one is replaced only once the new one is in place). A
// backup that fails calls Release() (or just ends): its snapshot is removed and the old kept
// one stays; one that is killed leaves its snapshot to the dead-run cleanup, as without keep.
#ifndef HOTSNAP_SNAPSHOT_LVM_VIEW_H_
#define HOTSNAP_SNAPSHOT_LVM_VIEW_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "snapshot/hooks.h"
#include "snapshot/lvm_control.h"
#include "snapshot/lvm_kept.h"
#include "snapshot/lvm_lease.h"
#include "snapshot/view.h"

namespace hotsnap {

struct LvmViewOptions {
  std::string source;        // the origin LV's block device (any alias)
  std::string mode = "lvm";  // "lvm", "lvm-thin", or "auto" (lvm-thin for a thin LV, else lvm)
  uint64_t cow_bytes = 0;    // lvm: COW area in bytes; 0: 10 % of the origin, at least 64 MiB
  double thin_pool_max_percent = 80;  // lvm-thin: refuse above this pool data/metadata use
  double thin_pool_abort_percent = 95;  // lvm-thin: abort the read above this
  std::chrono::milliseconds check_interval{1000};  // Check() runs lvs at most this often
  std::string mount_point;   // where the origin is mounted (hooks' environment); may be empty
  HookSet hooks;
  std::string lease_dir = kDefaultLeaseDir;
  // lvm-thin only (Open refuses it with a classic snapshot): allow Keep().
  bool keep_snapshot = false;
  LvmControl* lvm = RealLvmControl();
};

// The default COW size for an origin of `origin_bytes`, before rounding to extents.
uint64_t DefaultCowBytes(uint64_t origin_bytes);

// What LvmSnapshotView::Plan found: the origin, the kind of snapshot, its COW area.
struct LvmSnapshotPlan {
  LvRecord origin;
  bool thin = false;
  uint64_t cow_bytes = 0;  // classic: the COW area in bytes, rounded to extents; thin: 0
  std::vector<LvRecord> listed;  // the lvs report (every LV) the plan was made from
};

class LvmSnapshotView : public ConsistentView {
 public:
  // The checks Open makes before it changes anything (which LV, thin or classic, room for the
  // snapshot), without side effects: a dry run's plan. Open repeats the room check after it
  // removed leftovers of dead runs, which may have freed space.
  static Result<LvmSnapshotPlan> Plan(const LvmViewOptions& options);
  // Finds the LV behind options.source, cleans up dead runs' leftovers, checks room (VG free
  // space or pool use), leases, runs the hooks around lvcreate, activates the snapshot.
  // `plan` (may be null): Plan()'s result for the same options, made moments before: its lvs
  // report stands in for a new one (each lvs costs a second under emulation).
  // Errors: kUsage (not an LV, lvm-thin on a non-thin LV), kSource (no room, pool too full,
  // LVM failed), kUnsupported (no LVM or device-mapper here). Nothing is left behind on error.
  static Result<std::unique_ptr<LvmSnapshotView>> Open(const LvmViewOptions& options,
                                                       const LvmSnapshotPlan* plan = nullptr);
  ~LvmSnapshotView() override;
  LvmSnapshotView(const LvmSnapshotView&) = delete;
  LvmSnapshotView& operator=(const LvmSnapshotView&) = delete;

  const std::string& device_path() const override { return device_path_; }
  std::string mode() const override { return thin_ ? "lvm-thin" : "lvm"; }
  // Rate-limited to options.check_interval (the first one too, after the snapshot was made),
  // or 4 times as long as the last check took.
  Status Check() override;
  // Polls LVM now: after a read error, tells whether the snapshot was invalidated.
  Status CheckNow();
  // Removes the snapshot (retrying while it is "in use") and the lease. Idempotent; does
  // nothing after a successful Keep().
  Status Release() override;
  // keep_snapshot: ends the view by keeping the snapshot as the origin's kept one
  // (KeepThinSnapshot, lvm_kept.h) and removing the lease; kept() then describes it. Call it
  // only for a backup that succeeded (the image complete and valid, ideally published), with
  // the snapshot device closed (LVM deactivates it). On failure the new snapshot is removed,
  // the old kept one is left as it was, and the view is released. kInternal without
  // keep_snapshot or after Release().
  Status Keep();
  // A ListThinLvs report of the origin's VG made after the snapshot was created (a delta's),
  // for Keep() to use instead of its own lvs.
  void NoteThinReport(std::vector<ThinLvRecord> rows) { thin_report_ = std::move(rows); }
  // What Keep() kept; nullopt before it, or when it failed.
  const std::optional<KeptSnapshot>& kept() const { return kept_; }

  const std::string& snapshot_name() const { return snapshot_; }  // VG/LV
  const std::string& run_id() const { return run_id_; }

 private:
  LvmSnapshotView(const LvmViewOptions& options, const LvRecord& origin, bool thin, std::string run_id);
  Status Create();
  Status Activate();
  Status CheckClassic(const LvRecord& snap);
  Status CheckPool();

  LvmViewOptions options_;
  LvRecord origin_;
  bool thin_;
  std::string run_id_;
  std::string snapshot_;      // VG/LV
  std::string device_path_;
  uint64_t cow_bytes_ = 0;
  double max_percent_seen_ = 0;
  bool warned_ = false;
  bool leased_ = false;
  bool released_ = false;
  int64_t created_unix_ = 0;  // when lvcreate ran
  std::optional<KeptSnapshot> kept_;
  std::optional<std::vector<ThinLvRecord>> thin_report_;
  std::chrono::steady_clock::time_point last_check_{};
  std::chrono::steady_clock::duration next_interval_{};
  Status last_status_;
};

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_LVM_VIEW_H_
