// PreadSource: where the xfs readers (fsmap/xfs_used_blocks.h, fsmap/xfs_log.h) get their
// bytes — a descriptor, or any RangedReader (io/ranged_reader.h), such as the device bytes of
// an image read through its decoder.
#ifndef HOTSNAP_FSMAP_PREAD_SOURCE_H_
#define HOTSNAP_FSMAP_PREAD_SOURCE_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>

#include "io/ranged_reader.h"

namespace hotsnap {

// pread's contract: reads up to `bytes` bytes at byte `offset` into `buf`; returns how many
// (0 at the end), or -1 with errno set.
using PreadSource = std::function<ssize_t(void* buf, size_t bytes, uint64_t offset)>;

// pread(2) on `fd`, which must outlive the source.
PreadSource FdPreadSource(int fd);
// `reader`, which must outlive the source: reads past its end return what there is (0 at the
// end); its errors are -1 with the Status' errno (EIO when it has none).
PreadSource RangedPreadSource(RangedReader* reader);

}  // namespace hotsnap

#endif  // HOTSNAP_FSMAP_PREAD_SOURCE_H_
