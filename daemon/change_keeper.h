// ChangeKeeper: the agent's change logs between runs (agent/change_log.h), one per source.
//
// For each source the agent records every write (the write tracker of tracked mode,
// snapshot/write_tracker.h) from before one backup starts to the next backup's consistency
// point, and hands that backup the writes as its change source, so that it reads only the
// chunks they touched. The run of a source goes:
//
//   BeforeBackup(source)   the tracker runs (started now if it was not), and a "next" log
//                          starts here: it will cover the new image's consistency point
//                          (writes recorded before that point are harmless extras)
//   SourceFor(source)      the backup's ChangeLogSource: at the consistency point, the writes
//                          since the parent (the current log), or an error saying why there
//                          is none (the backup then compares hashes and reports that reason)
//   AfterBackup(source, r) success: the next log becomes the current one, its token the new
//                          image's (this boot, r.image_hash, records lost, the device's size)
//                          and parent_used r.used_map. Failure: the current log goes on
//                          recording (the next attempt still has every write since its parent)
//
// Persist() writes each current log to STATE_DIR/changelog/SOURCE.json (atomically: a temp
// file, fsync, rename, directory fsync) with the device's write counters at that moment
// (/sys/dev/block/MAJ:MIN/stat: write and discard I/Os and 512-byte sectors); the agent
// calls it periodically and at shutdown. Load() at the agent's start takes a persisted log
// back only if it was written in this boot and the counters are unchanged (nothing wrote to
// the device while no tracker ran); otherwise it is discarded and the reason is kept for the
// next run's ChangeLogSource to report.
//
// Thread-safety: every method may be called from any thread (one mutex); the ChangeLogSource
// returned by SourceFor() refers to the keeper, which must outlive the backup.
#ifndef HOTSNAP_DAEMON_CHANGE_KEEPER_H_
#define HOTSNAP_DAEMON_CHANGE_KEEPER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "agent/backup_job.h"
#include "agent/change_log.h"
#include "base/status.h"
#include "fsmap/used_block_map.h"
#include "snapshot/write_tracker.h"

namespace hotsnap {

// What a block device's statistics count of the writes completed on it since boot
// (Documentation/block/stat.rst: fields 5, 7, 12 and 14). Sectors are 512 bytes.
struct DeviceWriteCounters {
  std::string stat_path;  // the /sys file they were read from
  uint64_t write_ios = 0;
  uint64_t write_sectors = 0;
  uint64_t discard_ios = 0;  // 0 on kernels without the discard fields (before 4.18)
  uint64_t discard_sectors = 0;
  bool operator==(const DeviceWriteCounters& o) const {
    return write_ios == o.write_ios && write_sectors == o.write_sectors &&
           discard_ios == o.discard_ios && discard_sectors == o.discard_sectors;
  }
  std::string Describe() const;  // "write I/Os 12, sectors written 96, discards 0 (0 sectors)"
};

// The counters of `device` (a whole disk or a partition: /sys/dev/block/MAJ:MIN/stat).
Result<DeviceWriteCounters> ReadWriteCounters(const std::string& device);

// The file name a source's log is kept under: /dev/vg0/data -> "vg0-data" (RepoSourceName's rule).
std::string ChangeLogFileName(const std::string& device);

struct ChangeKeeperOptions {
  std::string state_dir;  // logs live in STATE_DIR/changelog/
  // Injectable for tests; the defaults read the system.
  std::function<std::string()> boot_id;  // default: BootId()
  std::function<Result<DeviceWriteCounters>(const std::string&)>
      write_counters;  // ReadWriteCounters
};

// What Load() found for one source.
struct LoadedLog {
  std::string source;
  bool valid = false;
  std::string reason;  // why it was discarded; "" when valid
};

class ChangeKeeper {
 public:
  explicit ChangeKeeper(ChangeKeeperOptions options);
  ~ChangeKeeper();
  ChangeKeeper(const ChangeKeeper&) = delete;
  ChangeKeeper& operator=(const ChangeKeeper&) = delete;

  // Reads every persisted log; for each valid one starts its source's tracker at once (then
  // checks the counters, so that no write falls between the check and the tracking). A
  // discarded file is removed. Errors only when the directory cannot be read.
  Result<std::vector<LoadedLog>> Load();

  // See the header comment. BeforeBackup fails if the tracker cannot start (the backup can
  // still run: without a change log), and with kBusy while a backup of the source is under
  // way (between BeforeBackup and AfterBackup): the second backup must then neither use
  // SourceFor() nor call AfterBackup(), which belong to the first.
  Status BeforeBackup(const std::string& source);
  ChangeLogSource SourceFor(const std::string& source);
  void AfterBackup(const std::string& source, const Result<BackupReport>& result);

  // Writes every current log (see the header comment); the first error, after trying all.
  Status Persist();
  // Persist(), then stops every tracker (the agent's shutdown).
  Status PersistAndStop();
  // Moves every tracker's records into the logs. The kernel's rings hold 2 MiB per CPU and
  // source: the agent drains every second so that a busy device does not overflow them
  // (an overflow is counted as lost records, and the next delta then compares hashes).
  void DrainAll();

  // Whether `source` has a current log (its next delta can be driven by it).
  bool HasLog(const std::string& source);
  // The writes of `source`'s current log up to now (drains the tracker), for status and
  // tests; an error when there is no current log.
  Result<ChangeLog> Peek(const std::string& source);

 private:
  struct Log {
    ChangeLogToken token;
    std::vector<ByteExtent> changed;  // coalesced
    std::shared_ptr<const UsedBlockMap> parent_used;
  };
  struct Source {
    std::string device;
    uint64_t device_bytes = 0;
    std::unique_ptr<WriteTracker> tracker;
    std::unique_ptr<Log> current;  // writes since the newest image's consistency point
    std::unique_ptr<Log> next;     // writes since BeforeBackup of the backup under way
    std::string no_log_reason;     // why there is no current log
  };

  Source& SourceLocked(const std::string& device);
  Status StartTrackerLocked(Source* s);
  Status DrainLocked(Source* s);  // the tracker's records into current and next
  Result<ChangeLog> CurrentLocked(Source* s);
  Status PersistLocked(Source* s);
  std::string PathOf(const std::string& device) const;

  ChangeKeeperOptions options_;
  std::mutex mu_;
  std::map<std::string, Source> sources_;
};

}  // namespace hotsnap

#endif  // HOTSNAP_DAEMON_CHANGE_KEEPER_H_
