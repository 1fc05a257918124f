// What a whole-disk image's metadata records about the disk's partition table: the table and,
// for each partition, where it lies, what is in it, and how much of it the image holds.
// The JSON encoder and decoder of the metadata's "partition_table" object live beside it
// (docs/image-format.md describes the fields). All offsets and sizes are in BYTES.
#ifndef HOTSNAP_IO_IMAGE_PARTITIONS_H_
#define HOTSNAP_IO_IMAGE_PARTITIONS_H_

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

struct ImagePartition {
  int number = 0;            // as the kernel numbers it (dos 5+ are logical)
  uint64_t start_bytes = 0;  // from the start of the disk
  uint64_t size_bytes = 0;
  std::string type;       // gpt: the type GUID; dos: the type byte, "0x83"
  std::string uuid;       // PARTUUID
  std::string name;       // gpt partition name
  bool extended = false;  // a dos extended partition (a container)
  std::string fs_type;    // what libblkid found inside: "ext4", "xfs", "vfat", "swap", ""
  std::string fs_uuid;
  std::string fs_label;
  uint64_t used_bytes = 0;  // bytes of the partition the image holds
  std::string used_map;     // "ext4 bitmap", "xfs bnobt", "swap header", "all blocks", ...
  bool operator==(const ImagePartition&) const = default;
};

struct ImagePartitionTable {
  std::string type;  // "gpt", "dos"; "" when the image is not of a partitioned disk
  std::string uuid;  // PTUUID
  std::vector<ImagePartition> partitions;  // in table order
  bool empty() const { return type.empty(); }
  bool operator==(const ImagePartitionTable&) const = default;
};

// The "partition_table" object of the metadata JSON.
nlohmann::ordered_json EncodePartitionTable(const ImagePartitionTable& table);
// Reads it back; every partition must lie within `device_bytes`. A bad field is a kIntegrity
// error naming it ("partition_table.partitions[2].start_bytes ...").
Result<ImagePartitionTable> DecodePartitionTable(const nlohmann::json& j, uint64_t device_bytes);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_IMAGE_PARTITIONS_H_
