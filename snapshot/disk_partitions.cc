#include "snapshot/disk_partitions.h"

#include <sys/stat.h>

#include "snapshot/block_topology.h"

namespace hotsnap {

Result<PartitionTable> ProbeSourcePartitions(const std::string& path, Code code) {
  auto table = ProbePartitionTable(path, code);
  if (!table.ok() || table->partitions.empty()) return table;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) return table;
  auto disk = FindBlockDevice(st.st_rdev, code);
  if (!disk.ok()) return table;  // sysfs does not know it: no partition devices to name
  for (const KernelPartition& kp : ListKernelPartitions(*disk)) {
    for (Partition& p : table->partitions) {
      if (p.number == kp.number && p.start_bytes == kp.start_bytes) {
        p.device_node = "/dev/" + kp.device.name;
      }
    }
  }
  return table;
}

}  // namespace hotsnap
