// The backup job: one flow of named passes for every snapshot mode.
//
//   inspect  what the source is, who uses it, what filesystem it holds
//   plan     the snapshot mode chosen and every check made that needs no side effect
//            (a dry run stops here and prints the plan)
//   sink     the destination opened: a temporary file, stdout, or an ssh upload
//   copy     the mode takes its view, copies it into the image, releases it
//   finish   the trailer and seek table
//   publish  the image appears under its final name
//
// PlanBackup runs the first two passes and RunPlan the rest, so the plan a dry run prints is
// the very object the run executes: the two cannot disagree.
#ifndef HOTSNAP_AGENT_BACKUP_JOB_H_
#define HOTSNAP_AGENT_BACKUP_JOB_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/change_log.h"
#include "agent/copy_mode.h"
#include "agent/snapshot_mode.h"
#include "base/status.h"
#include "io/image_format.h"
#include "snapshot/hooks.h"

namespace hotsnap {

struct BackupOptions {
  std::string source;
  std::string dest;             // a path, "-" for stdout, or ssh://
  SnapshotMode snapshot = SnapshotMode::kAuto;
  uint64_t cow_bytes = 0;       // --snapshot lvm: COW area in bytes (--cow-size); 0: default
  std::chrono::milliseconds max_freeze{10000};  // longest freeze allowed
  HookSet hooks;
  int level = 3;
  unsigned workers = 0;         // 0: one per core
  unsigned queue_depth = 4;
  bool overwrite = false;
  bool allow_io_uring = true;
  bool progress = false;        // progress line on stderr
  bool all_blocks = false;      // read every block, even those the filesystem marks free
  std::vector<std::string> ssh_options;  // ssh:// destinations: each passed as `ssh -o OPTION`
  uint64_t rate_limit_bytes_per_s = 0;   // pace the reads (--rate-limit); 0: no limit
  // Read-write mounted members (device or mount point) left out of the consistency group:
  // copied as they are, crash-consistent (agent/consistency_group.h).
  std::vector<std::string> allow_crash_consistent;
  // Set by a backup of several sources (agent/backup_set.h), for each of its images: the
  // freeze shared by all of them (not owned), the run id written into each image, and a
  // check made after the copy and before publishing (the image is published only if every
  // source's copy succeeded), and a check polled while copying that ends this copy early
  // once another source's has failed.
  FreezeRendezvous* rendezvous = nullptr;
  std::string run_id;
  std::function<Status()> before_publish;
  std::function<Status()> stop;
  // --base: the parent image of a delta backup ("" for a full one): a file, or an ssh://
  // image of which only the index is read. Only the chunks whose content differs from the
  // parent's are stored (docs/image-format.md, delta layout).
  std::string base;
  // A delta backup: the writes recorded since the parent (agent/change_log.h), asked for at
  // the consistency point; used only if its token proves it complete. Empty: hash compare.
  ChangeLogSource change_log;
  bool keep_snapshot = false;  // --keep-snapshot (lvm-thin): ModeOptions::keep_snapshot
};

struct BackupReport {
  std::string source;
  std::string dest;
  std::string reader;
  std::string fs_type;
  uint64_t device_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t bytes_read = 0;
  uint64_t image_bytes = 0;
  uint64_t chunks = 0;
  uint64_t zero_chunks = 0;
  double seconds = 0;
  Hash128 image_hash;
  SnapshotMode snapshot_mode = SnapshotMode::kNone;
  std::vector<int64_t> freeze_ms;  // each freeze window's length, in milliseconds
  uint32_t rounds = 0;             // tracked mode: re-copy rounds
  uint64_t recopied_bytes = 0;     // tracked mode: bytes copied again
  uint64_t final_capture_bytes = 0;  // tracked mode: bytes read under the final freeze
  std::vector<std::string> frozen;            // the consistency group's mount points
  std::vector<std::string> crash_consistent;  // members left out (--allow-crash-consistent)
  // A delta backup: its parent, how changes were found, chunks stored and left to the parent.
  std::string base;
  uint64_t base_image_bytes = 0;        // the parent's size
  uint64_t base_remote_tail_bytes = 0;  // an ssh:// parent: bytes of its index received
  std::string change_source;
  std::string change_reason;
  uint64_t changed_chunks = 0;
  uint64_t unchanged_chunks = 0;
  // The used-block map at the consistency point, for a change log recorded from this image on
  // (ChangeLog::parent_used, agent/change_log.h); null when the mode does not keep one (tracked).
  std::shared_ptr<const UsedBlockMap> used_map;
};

enum class DestKind { kFile, kStdout, kSsh };
const char* DestKindName(DestKind kind);  // "file", "stdout", "ssh"

// The parent of a delta backup, as the plan pass found it: its index (tail and metadata
// only) after its own chain of parents was found complete — for an ssh:// parent, its own
// index only, read over ssh (its parents are not looked for there).
struct DeltaBase {
  std::string path;                   // as given: a file path or an ssh:// URL
  std::string file_name;              // the parent's file name, recorded in the delta
  ImageMetadata meta;
  Hash128 image_hash;
  std::vector<Hash128> chunk_hashes;  // the parent's hash of every chunk
  uint64_t image_bytes = 0;           // the parent's size
  size_t chain_links = 1;             // the parent and its own parents (a file parent)
  bool remote = false;                // an ssh:// parent
  uint64_t remote_tail_bytes = 0;     // an ssh:// parent: bytes received to index it
};

// What the plan pass decided. Move-only: it owns the open source and the chosen mode.
struct BackupPlan {
  BackupOptions options;
  std::optional<DeltaBase> base;  // --base
  std::unique_ptr<BackupSubject> subject;  // stable address: the mode keeps a pointer to it
  std::unique_ptr<CopyMode> mode;
  DestKind dest_kind = DestKind::kFile;
};

// The inspect and plan passes: reads only metadata (the source's geometry, its users, its
// filesystem and used-block map or an estimate of it); writes, freezes and connects nothing.
// Fails as the run would for everything that can be known before the run touches anything.
Result<BackupPlan> PlanBackup(const BackupOptions& options);

// The remaining passes, on a plan from PlanBackup.
Result<BackupReport> RunPlan(BackupPlan plan);

// PlanBackup, then RunPlan.
Result<BackupReport> RunBackup(const BackupOptions& options);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_BACKUP_JOB_H_
