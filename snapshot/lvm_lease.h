// Leases on LVM snapshots: how a snapshot left behind by a crashed run is found and removed,
// and nothing else is.
//
// Every snapshot hotsnap creates is
//   - named  hotsnap-<origin>-<run id>,
//   - tagged hotsnap and hotsnap_run_<run id> (lvcreate --addtag),
//   - recorded, before lvcreate runs, in <lease dir>/<run id>.json with the pid, the pid's
//     start time (so a reused pid is not mistaken for the run) and the boot id.
// A run is dead when its lease file is missing (the lease dir is on /run, emptied at boot,
// while LVM snapshots survive reboots), names another boot, or names a process that no
// longer exists or started at another time. Only LVs carrying all three marks of a dead run
// are removed. Kept thin snapshots (hotsnap-keep-<origin>, lvm_kept.h) carry no run tag and
// are never removed here; a crash while one was being replaced is put right (RepairKeptSnapshots).
//
// Scope: one host. A VG shared between hosts (lvmlockd) is not supported: another host's
// live run would look dead here.
#ifndef HOTSNAP_SNAPSHOT_LVM_LEASE_H_
#define HOTSNAP_SNAPSHOT_LVM_LEASE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/process_identity.h"
#include "base/status.h"
#include "snapshot/lvm_control.h"

namespace hotsnap {

inline constexpr char kDefaultLeaseDir[] = "/run/hotsnap/leases";
inline constexpr char kSnapshotTag[] = "hotsnap";
inline constexpr char kRunTagPrefix[] = "hotsnap_run_";

struct Lease {
  std::string run_id;
  ProcessIdentity holder;        // the run's process (pid, start time, boot id)
  std::string vg_name;
  std::string snapshot_lv;       // name inside the VG
  std::string origin_lv;
  std::string mode;              // "lvm" or "lvm-thin"
};

// A lease for the calling process (its identity filled in). Run ids: NewRunId().
Lease LeaseForThisProcess(const std::string& run_id);

// Writes <dir>/<run id>.json atomically (creating `dir`), or removes it. Removing a missing
// file is not an error.
Status WriteLease(const std::string& dir, const Lease& lease);
Status RemoveLease(const std::string& dir, const std::string& run_id);
// Reads <dir>/<run id>.json; kSource when it is missing or unreadable.
Result<Lease> ReadLease(const std::string& dir, const std::string& run_id);

// Whether the run that holds `lease` is still running on this boot.
bool LeaseHolderAlive(const Lease& lease);

// The run id an LV carries if it has all the marks of ours (name prefix, hotsnap tag, run
// tag); empty otherwise.
std::string OwnedRunId(const LvRecord& lv);

struct LvmCleanupReport {
  std::vector<std::string> removed;  // one line each: what and why
  std::vector<std::string> kept;     // ours, but the run is alive
};

// Removes the snapshots (and lease files) of dead runs. Does nothing when LVM is not
// available here. Errors are collected; the first one is returned after trying the rest.
// `listed` (may be null): an `lvs -a` report of every LV just read (FindLogicalVolume's), used
// instead of running lvs again; kept snapshots are looked at again only when it shows one in
// need of repair.
Status CleanupLvmLeftovers(LvmControl* lvm, const std::string& lease_dir, LvmCleanupReport* report,
                           const std::vector<LvRecord>* listed = nullptr);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_LVM_LEASE_H_
