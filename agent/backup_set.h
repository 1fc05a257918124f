// A backup of several sources at one moment: `hotsnap backup /dev/sda /dev/sdb -o DIR` (a
// database on one disk, its write-ahead log on another).
//
// Each source is planned and copied as a backup of its own (agent/backup_job.h) into
// DIR/NAME.zst (NAME: the source's file name), all of them at once, one thread each, with
// one run id written into every image. Every filesystem of every source is in one
// consistency group: the freeze and tracked modes take their final freeze through one
// FreezeRendezvous, which freezes the union of the groups when every copy has reached its
// consistency point (hooks run once, there). A source nothing mounts read-write is read as
// it is. The LVM modes are refused: each LV's snapshot would be a moment of its own.
//
// All or nothing: an image is published only once every copy is complete; a copy that fails
// makes the others fail before they publish. Then DIR/manifest.json lists the set (run id,
// host, time, the group's frozen and crash-consistent members, and each image's source,
// file name, size and image hash); without it the set is incomplete.
#ifndef HOTSNAP_AGENT_BACKUP_SET_H_
#define HOTSNAP_AGENT_BACKUP_SET_H_

#include <memory>
#include <string>
#include <vector>

#include "agent/backup_job.h"
#include "base/status.h"
#include "snapshot/freeze_rendezvous.h"

namespace hotsnap {

struct BackupSetOptions {
  std::vector<std::string> sources;  // at least two
  std::string dir;                   // an existing directory
  BackupOptions common;              // every other option of backup (source, dest unused)
};

struct BackupSetPlan {
  BackupSetOptions options;
  std::string run_id;
  std::string manifest_path;                   // DIR/manifest.json
  std::vector<BackupPlan> plans;               // one per source, in the order given
  std::unique_ptr<FreezeRendezvous> rendezvous;  // stable address: the plans' modes use it
  std::vector<std::string> frozen;             // the union group, in freeze order
  std::vector<std::string> crash_consistent;
};

struct BackupSetReport {
  std::string run_id;
  std::string manifest_path;
  std::vector<BackupReport> images;
};

// Inspect and plan every source, as PlanBackup does for one, plus the set's own checks:
// distinct sources, none a partition of another, a local directory, no NAME twice, no
// manifest already there (unless --overwrite), DIR not on a filesystem of the group.
Result<BackupSetPlan> PlanBackupSet(const BackupSetOptions& options);

// Runs every plan at once; publishes the images, then the manifest, only if all succeeded.
// The first failure is the one returned.
Result<BackupSetReport> RunBackupSet(BackupSetPlan plan);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_BACKUP_SET_H_
