// Whether this process may do what a job asks, checked before the job has any side effect.
//
// Backing up or restoring a block device needs root: opening it (O_DIRECT, O_EXCL on the
// target), freezing its filesystem (FIFREEZE needs CAP_SYS_ADMIN), LVM snapshots and perf
// write tracking all do. Without root those steps would fail one by one, some after a
// temporary file was created or a hook had run; this check fails first, with one sentence.
// Regular files (VM disk images) need no root: the file's own permissions decide.
#ifndef HOTSNAP_AGENT_PRIVILEGES_H_
#define HOTSNAP_AGENT_PRIVILEGES_H_

#include <string>

#include "base/status.h"

namespace hotsnap {

// OK if `path` is not a block device or we run as root; else `code` (kSource for a backup's
// source, kTarget for a restore's target) saying that `what` ("back up", "restore onto")
// needs root.
Status CheckRootForDevice(const std::string& path, const std::string& what, Code code);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_PRIVILEGES_H_
