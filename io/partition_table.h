// PartitionTable: what libblkid's partition chain finds on a whole device (or an image file),
// and what its superblock chain finds inside each partition.
//
// Used to refuse a restore over a partitioned disk, and meant for imaging a whole disk
// partition by partition. All offsets and sizes are in BYTES from the start of the device,
// whatever the device's logical sector size.
#ifndef HOTSNAP_IO_PARTITION_TABLE_H_
#define HOTSNAP_IO_PARTITION_TABLE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/source_device.h"

namespace hotsnap {

struct Partition {
  int number = 0;            // as the kernel numbers it: dos 1-4 primary, 5+ logical; gpt 1..n
  uint64_t start_bytes = 0;  // first byte, from the start of the device
  uint64_t size_bytes = 0;
  std::string type;            // dos: the type byte as "0x83"; gpt: the type GUID
  std::string uuid;            // PARTUUID: gpt the partition GUID; dos "<disk id>-<NN>"
  std::string name;            // gpt: the partition name; dos: ""
  bool extended = false;       // a dos extended partition: a container of logical partitions
  FilesystemProbe filesystem;  // what is inside; never probed in an extended partition
  // The kernel's device node of this partition ("/dev/loop3p2"), or "" when it has none (an
  // image file, a loop device without partition scanning). Set by ProbeSourcePartitions
  // (snapshot/disk_partitions.h); ProbePartitionTable leaves it "".
  std::string device_node;
};

struct PartitionTable {
  // libblkid's name of the table: "dos", "gpt", "PMBR" (a protective MBR whose GPT is
  // missing or damaged), "bsd", ...; "" when there is none (or the probe is ambiguous).
  std::string type;
  std::string uuid;  // PTUUID: the dos disk identifier ("1b2c3d4e") or the gpt disk GUID
  // More than one table signature that libblkid cannot rank: the layout is unknown, so type
  // is "" and partitions is empty. Treat the device as occupied.
  bool ambiguous = false;
  std::vector<Partition> partitions;  // in table order
  // False when probed without the partitions' filesystems (every filesystem left empty):
  // whoever reads the partitions probes them (fsmap/disk_map.h does, one thread each).
  bool filesystems_probed = true;

  // True when the device holds no partition table signature at all.
  bool none() const { return type.empty() && !ambiguous; }
};

// Probes `path` (a block device or a regular file) read-only through its own buffered
// descriptor. Fails, with `code` and a message naming the path, only when the path cannot be
// opened or libblkid cannot read it; a device without a table is a PartitionTable whose
// none() is true. Without `filesystems`, only the table is read (no superblock probe of each
// partition): what a map made under a freeze needs first.
Result<PartitionTable> ProbePartitionTable(const std::string& path, Code code,
                                           bool filesystems = true);

// "a dos partition table with 2 partitions (p1: ext4 (UUID ...), p2: swap)", "a gpt
// partition table with no partitions", "partition table signatures of more than one kind",
// or "" for none(): the words a message uses to say what the device holds.
std::string DescribePartitionTable(const PartitionTable& table);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_PARTITION_TABLE_H_
