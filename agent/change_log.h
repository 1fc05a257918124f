// Change logs: the writes to a source recorded between two backups, so that a delta backup
// reads only the chunks that changed instead of every used block.
//
// A process that stays running between backups (the agent) records every write to the
// source from the parent backup's consistency point on (the write tracker of tracked mode,
// snapshot/write_tracker.h) and hands the next delta backup a ChangeLog at that backup's own
// consistency point (the freeze, or the snapshot). The backup trusts it only when its token
// proves it covers exactly the time since the parent:
//   - boot_id is this boot's (writes made while the recording process did not run, across
//     a reboot, are not in it);
//   - parent_image_hash is the --base image's hash (it was recorded from that backup on);
//   - lost_records is 0 (the kernel dropped no write record);
//   - device_bytes is the source's size, and parent_used (the used blocks at the parent's
//     consistency point) is there, with that size.
// Any doubt, and the backup compares hashes instead (every used block read), saying why in
// its report (RunReport::change_reason).
//
// With a trusted log, a chunk is read only if a write touched it or its used blocks differ
// from the parent's: a deleted file changes only the filesystem's metadata on disk, but its
// blocks become free and must be zeros in the new image, so such a chunk is read (and its
// free blocks stored as zeros) too. Every other chunk is the parent's, unread.
#ifndef HOTSNAP_AGENT_CHANGE_LOG_H_
#define HOTSNAP_AGENT_CHANGE_LOG_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "fsmap/used_block_map.h"
#include "io/image_format.h"

namespace hotsnap {

struct ChangeLogToken {
  std::string boot_id;        // /proc/sys/kernel/random/boot_id when the writes were recorded
  Hash128 parent_image_hash;  // the image whose consistency point the recording started at
  uint64_t lost_records = 0;  // write records the kernel dropped while recording
  uint64_t device_bytes = 0;  // the source's size when recording started
};

struct ChangeLog {
  // What recorded it, the report's change_source when it is trusted: "change log" (writes
  // tracked by a running process), "thin_delta" (an LVM thin pool's own mapping metadata).
  std::string origin = "change log";
  ChangeLogToken token;
  std::vector<ByteExtent> changed;  // device byte ranges written (any order; may overlap)
  std::shared_ptr<const UsedBlockMap> parent_used;  // used blocks at the parent's point
};

// Called by the copy at its consistency point (the source frozen or snapshotted): the writes
// recorded up to that point.
using ChangeLogSource = std::function<Result<ChangeLog>()>;

struct ChangeSourceChoice {
  std::string source;  // the log's origin, or "hash compare"
  std::string reason;  // why; for a fallback, what was wrong with the change log
  bool use_log = false;
};

// Whether a delta backup of a source of `device_bytes` against the parent of
// `parent_image_hash`, in boot `boot_id`, may trust `log` (null: there is none).
ChangeSourceChoice ChooseChangeSource(const ChangeLog* log, const Hash128& parent_image_hash,
                                      uint64_t device_bytes, const std::string& boot_id);

// Per chunk of `meta`'s geometry: true when the chunk is certainly the parent's — no write in
// `log` touches it and its used blocks in `now` are those in log.parent_used.
std::vector<bool> UnchangedChunks(const ChangeLog& log, const UsedBlockMap& now,
                                  const ImageMetadata& meta);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_CHANGE_LOG_H_
