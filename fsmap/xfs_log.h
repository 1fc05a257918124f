// Whether an XFS filesystem's on-disk free-space records are current, judged from its internal
// log without replaying it (see kernel-notes/xfs-used-blocks.md, "The log").
#ifndef HOTSNAP_FSMAP_XFS_LOG_H_
#define HOTSNAP_FSMAP_XFS_LOG_H_

#include <array>
#include <cstdint>
#include <string>

#include "base/status.h"
#include "fsmap/pread_source.h"

namespace hotsnap {

// Where the internal log is, from the superblock.
struct XfsLogLocation {
  uint64_t start_byte = 0;            // byte offset of the log's first block on the data device
  uint64_t length_bb = 0;             // log length in 512-byte basic blocks
  std::array<uint8_t, 16> fs_uuid{};  // sb_uuid, stamped in every log record header
  uint64_t fs_start_byte = 0;         // where the filesystem starts in the descriptor
  uint64_t fs_bytes = 0;              // its size in bytes (inodes the log names lie inside)
};

// Reads the log at `location` of `fd` with pread only and returns "" when nothing in it needs
// replaying before the AGFs and free-space btrees can be trusted: the last record is an
// unmount record at the log head (clean unmount, read-only remount), or every record from the
// tail to the head logs only the superblock and inodes that are on disk with that change (a
// log covered by a freeze, as in --snapshot freeze, lvm or tracked; the inodes are read to
// check their di_lsn). Otherwise returns why the log is dirty or cannot be
// judged (torn record, unknown item, unexpected layout), a sentence fragment naming the log
// block (512-byte units from the log start). The caller then reads every block. Errors only
// for failed reads, naming `device_name` and the byte offset.
Result<std::string> XfsLogDirtyReason(int fd, const std::string& device_name, uint64_t device_bytes,
                                      const XfsLogLocation& location);
// The same, reading through `source` (fsmap/pread_source.h).
Result<std::string> XfsLogDirtyReason(const PreadSource& source, const std::string& device_name,
                                      uint64_t device_bytes, const XfsLogLocation& location);

}  // namespace hotsnap

#endif  // HOTSNAP_FSMAP_XFS_LOG_H_
