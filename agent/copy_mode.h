// CopyMode: one snapshot mode of a backup — how the consistent view is taken, copied into the
// image and released. Every mode (none, freeze, tracked, lvm, lvm-thin) implements this one
// interface, and the backup flow (agent/backup_job.cc) calls it in the same order for all:
//
//   Plan()     checks, without any side effect, that the mode can run on this source with these
//              options, and says what it will do. A dry run stops after it. Everything a mode
//              can refuse before touching the system is refused here, so that the dry run and
//              the run refuse the same things.
//   Prepare()  takes the view: freezes, creates the snapshot. From here on the system is
//              touched; the destructor undoes whatever Release() did not.
//   Copy()     writes the image's metadata frame and every chunk through the pipeline it is
//              given (progress and events are attached there, once, by the flow).
//   Release()  ends the view (thaws, removes the snapshot); its status decides whether the copy
//              counts. Idempotent.
//
// Not thread-safe; one backup owns one mode.
#ifndef HOTSNAP_AGENT_COPY_MODE_H_
#define HOTSNAP_AGENT_COPY_MODE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/backup_pipeline.h"
#include "agent/change_log.h"
#include "agent/consistency_group.h"
#include "agent/snapshot_mode.h"
#include "base/status.h"
#include "fsmap/used_block_map.h"
#include "io/image_format.h"
#include "io/image_writer.h"
#include "io/source_device.h"
#include "snapshot/device_use.h"
#include "snapshot/freeze_rendezvous.h"
#include "snapshot/hooks.h"

namespace hotsnap {

// What the inspect pass found out about the source. Owned by the plan, alive for the run.
struct BackupSubject {
  std::string path;        // as given
  SourceDevice device;     // the live source, open for reading
  DeviceUse use;           // who mounts or holds it
  FilesystemProbe fs;      // what libblkid finds on it
  // The read-write mount of the source's filesystem, or nullptr.
  const MountUse* ReadWriteMount() const;
};

// The options every mode reads (a subset of BackupOptions, so modes do not see the sink's).
struct ModeOptions {
  std::chrono::milliseconds max_freeze{10000};
  HookSet hooks;
  uint64_t cow_bytes = 0;  // lvm: COW area in bytes; 0: the default
  bool all_blocks = false;
  // --allow-crash-consistent: members left out of the consistency group (devices or mount
  // points; agent/consistency_group.h).
  std::vector<std::string> allow_crash_consistent;
  // Several sources at one moment (agent/backup_set.h): the freeze and tracked modes freeze
  // through it, together with the other sources' groups; their hooks run there. Not owned.
  FreezeRendezvous* rendezvous = nullptr;
  // lvm-thin: keep the snapshot after the image is published, as the parent of the next
  // delta (snapshot/lvm_kept.h); a delta of it then asks thin_delta what changed.
  bool keep_snapshot = false;
};

// What the mode is handed to copy into.
struct CopyTarget {
  ImageMetadata* meta;        // filled by the flow; the mode sets used bytes, map and layout
  ImageWriter* writer;        // Begin() is the mode's to call
  int image_fd = -1;          // reads back what the writer wrote (Sink::read_back_fd()), or -1
  PipelineOptions pipeline;   // level, workers, queue depth, rate limit, progress
  // A delta image (meta->layout kDelta): the parent's hash of every chunk, for
  // ImageWriter::Begin and the pipeline; empty otherwise.
  std::vector<Hash128> base_hashes;
  std::string base_path;  // that parent's file (tracked mode rebuilds its chunks from it)
  Hash128 base_image_hash;
  const ImageMetadata* base_meta = nullptr;  // the parent's metadata, or null
  ChangeLogSource change_log;  // writes recorded since the parent (agent/change_log.h), or empty
};

// What a copy did, for the report.
struct CopyResult {
  RunReport report;           // freeze windows, rounds, used bytes at the consistency point
  std::string reader;         // "io_uring", "pread" (of the first pipeline run)
  uint64_t bytes_read = 0;    // from the source, every round
  uint64_t zero_chunks = 0;
  uint64_t chunks = 0;
  // The used-block map at the consistency point (what the copy read): the next delta's
  // ChangeLog::parent_used. Null for tracked mode (it maps again at every freeze).
  std::shared_ptr<const UsedBlockMap> used_map;
};

class CopyMode {
 public:
  virtual ~CopyMode() = default;
  virtual SnapshotMode mode() const = 0;
  // What Prepare and Copy will do, in one line, e.g. "freeze /mnt/data for at most 10000 ms".
  virtual std::string Describe() const = 0;
  // Bytes the copy is expected to read, and how that was found. A mode that maps at its
  // consistency point (a freeze, a snapshot) gives an estimate here; one that reads an idle
  // device maps it now and uses that very map in Copy.
  virtual Status Plan(const BackupSubject& subject) = 0;
  virtual uint64_t planned_bytes() const = 0;
  virtual std::string planned_map() const = 0;
  // The mounts this mode freezes (the image must not be written there), in freeze order.
  virtual std::vector<MountUse> frozen_mounts() const { return {}; }
  // Read-write mounted filesystems of the source copied without a freeze on request
  // (--allow-crash-consistent), for the report; set by Plan().
  const std::vector<std::string>& crash_consistent() const { return crash_consistent_; }
  virtual Status Prepare() = 0;
  virtual Result<CopyResult> Copy(CopyTarget* target) = 0;
  virtual Status Release(CopyResult* result) = 0;
  // After the image is published: what only a published image may leave behind (a kept
  // thin snapshot). A failure here is a warning the mode prints, not the run's.
  virtual void AfterPublish() {}

 protected:
  std::vector<std::string> crash_consistent_;
};

// The mode for `requested` (kAuto resolved from the subject: an LVM snapshot for a logical
// volume, tracking for a source with filesystems mounted read-write — every one of them, the
// consistency group of agent/consistency_group.h —, else a plain read). Refuses what the
// mode refuses (mounted read-write with none, a regular file with tracked, no LVM, a member
// that cannot join the group, ...).
Result<std::unique_ptr<CopyMode>> ChooseCopyMode(SnapshotMode requested,
                                                 const ModeOptions& options,
                                                 const BackupSubject& subject);

// The modes, one factory each (agent/view_modes.cc, agent/tracked_mode.cc).
// `crash_consistent`: read-write mounts the user let be read as they are.
std::unique_ptr<CopyMode> MakePlainMode(const ModeOptions& options,
                                        std::vector<std::string> crash_consistent = {});
std::unique_ptr<CopyMode> MakeFreezeMode(const ModeOptions& options, ConsistencyGroup group);
std::unique_ptr<CopyMode> MakeLvmMode(const ModeOptions& options, SnapshotMode mode,
                                      const MountUse* mount);
std::unique_ptr<CopyMode> MakeTrackedMode(const ModeOptions& options, ConsistencyGroup group);

// The plan's figure for a mode that maps the used blocks only at its consistency point (a
// freeze, a snapshot), of the filesystem mounted at `mount_point`: the device's bytes less what
// statfs reports free (f_bfree), which counts metadata and the journal or log as used, as the
// maps do; every byte with `all_blocks`. *how says which.
Status EstimateMountedUse(const BackupSubject& subject, const std::string& mount_point,
                          bool all_blocks, uint64_t* bytes, std::string* how);

// The same for a consistency group: the source's bytes less what statfs reports free in
// each member (the rest of a disk, partition tables and unmounted partitions, counts whole
// here; the copy maps it).
Status EstimateGroupUse(const BackupSubject& subject, const ConsistencyGroup& group,
                        bool all_blocks, uint64_t* bytes, std::string* how);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_COPY_MODE_H_
