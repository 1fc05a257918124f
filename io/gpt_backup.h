// Moving a GPT's backup header and entry array to the end of a larger disk, as `sgdisk -e`
// does, after a whole-disk image of a smaller disk was restored onto it.
//
// A GPT keeps its backup header in the disk's last sector and its backup entries just before
// it, and the primary header records both places (alternate LBA, last usable LBA). Restored
// onto a larger disk, the backup sits where the old disk ended and the kernel and fdisk call
// the table damaged. libfdisk relocates the backup when it reads such a table (and recomputes
// both headers' CRCs); this writes that result.
#ifndef HOTSNAP_IO_GPT_BACKUP_H_
#define HOTSNAP_IO_GPT_BACKUP_H_

#include <string>

#include "base/status.h"

namespace hotsnap {

// Opens `path` (a block device or a file) read-write with libfdisk and, when it holds a GPT
// whose backup is not at its end, writes the relocated backup header and entries and the
// updated primary header, then flushes them. Returns whether anything was written; a device
// without a GPT, or one already in place, is left untouched (false). Errors have code kTarget
// and name the path.
Result<bool> MoveGptBackupToEnd(const std::string& path);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_GPT_BACKUP_H_
