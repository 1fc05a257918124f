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
  std::string snapshot = "none";  // none | freeze
  std::chrono::milliseconds max_freeze{10000};  // --snapshot freeze: longest freeze allowed
  HookSet hooks;
  int level = 3;
  unsigned workers = 0;         // 0: one per core
  unsigned queue_depth = 4;
  bool overwrite = false;
  bool allow_io_uring = true;
  bool progress = false;        // progress line on stderr
  bool all_blocks = false;      // read every block, even those the filesystem marks free
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
};

Result<BackupReport> RunBackup(const BackupOptions& options);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_BACKUP_JOB_H_
