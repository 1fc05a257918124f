// The partitions of a backup source: what its partition table says (libblkid, through
// ProbePartitionTable) joined with what the kernel made of it (the partition devices sysfs
// lists under the disk), so a caller can freeze or mount the filesystem of a partition by its
// own device node while the disk map reads it through the disk.
#ifndef HOTSNAP_SNAPSHOT_DISK_PARTITIONS_H_
#define HOTSNAP_SNAPSHOT_DISK_PARTITIONS_H_

#include <string>

#include "base/status.h"
#include "io/partition_table.h"

namespace hotsnap {

// ProbePartitionTable(path, code), then, when `path` is a whole-disk block device, sets each
// partition's device_node to the kernel partition whose number and start (in bytes) match
// the table's entry. A partition the kernel does not know (no partition scanning, a table
// written since the last re-read) keeps device_node "". Fails only as ProbePartitionTable.
Result<PartitionTable> ProbeSourcePartitions(const std::string& path, Code code);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_DISK_PARTITIONS_H_
