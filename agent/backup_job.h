// The backup job: source → consistent view → pipeline → image → publish.
#ifndef HOTSNAP_AGENT_BACKUP_JOB_H_
#define HOTSNAP_AGENT_BACKUP_JOB_H_

#include <chrono>
#include <cstdint>
#include <vector>
#include <string>

#include "base/status.h"
#include "io/image_format.h"
#include "snapshot/hooks.h"

namespace hotsnap {

struct BackupOptions {
  std::string source;
  std::string dest;             // a path, or "-" for stdout
  std::string snapshot = "none";  // none | freeze | lvm | lvm-thin | auto
  uint64_t cow_bytes = 0;       // --snapshot lvm: COW area in bytes (--cow-size); 0: default
  std::chrono::milliseconds max_freeze{10000};  // --snapshot freeze: longest freeze allowed
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
  std::string snapshot_mode;
  std::vector<int64_t> freeze_ms;  // each freeze window's length, in milliseconds
  uint32_t rounds = 0;             // tracked mode: re-copy rounds
  uint64_t recopied_bytes = 0;     // tracked mode: bytes copied again
  uint64_t final_capture_bytes = 0;  // tracked mode: bytes read under the final freeze
};

Result<BackupReport> RunBackup(const BackupOptions& options);

// What a backup with these options would do (--dry-run): the same checks as RunBackup up to
// the point where it would write or freeze anything, then the plan. Reads only metadata (the
// filesystem's free-space records, from the live device); writes nothing, connects nowhere.
struct BackupPlan {
  std::string source;
  uint64_t device_bytes = 0;
  uint32_t logical_sector_bytes = 0;
  std::string fs_type, fs_uuid, fs_label;
  uint64_t used_bytes = 0;
  std::string used_map;       // "ext4 bitmap", "xfs bnobt", "all blocks"
  std::string snapshot_mode;  // as requested
  std::string snapshot_detail;  // what it would do, e.g. "freeze /mnt/data for at most 10 s"
  std::string dest;
  std::string dest_kind;      // "file", "stdout", "ssh"
  int level = 3;
  uint64_t rate_limit_bytes_per_s = 0;
};
Result<BackupPlan> PlanBackup(const BackupOptions& options);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_BACKUP_JOB_H_
