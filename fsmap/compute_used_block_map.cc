// ComputeUsedBlockMap: probe the filesystem type with libblkid, then hand over to the
// ext or xfs reader.
#include <blkid/blkid.h>

#include <memory>

#include "fsmap/ext_used_blocks.h"
#include "fsmap/used_block_map.h"
#include "fsmap/xfs_used_blocks.h"

namespace hotsnap {
namespace {

struct ProbeDeleter {
  void operator()(blkid_struct_probe* probe) const { blkid_free_probe(probe); }
};

// Result of probing: the TYPE blkid found ("" if none), or why there is none.
struct Probe {
  std::string type;
  std::string reason;  // when type is empty: a sentence fragment naming the device
};

std::string LookUp(blkid_probe probe, const char* name) {
  const char* value = nullptr;
  if (blkid_probe_lookup_value(probe, name, &value, nullptr) != 0 || value == nullptr) return "";
  return value;
}

Result<Probe> ProbeFilesystem(int fd, const std::string& device_name, uint64_t base_bytes,
                              uint64_t device_bytes) {
  std::unique_ptr<blkid_struct_probe, ProbeDeleter> owner(blkid_new_probe());
  blkid_probe probe = owner.get();
  if (probe == nullptr) return Status(Code::kInternal, "blkid_new_probe failed");
  if (blkid_probe_set_device(probe, fd, static_cast<blkid_loff_t>(base_bytes),
                             static_cast<blkid_loff_t>(device_bytes)) != 0) {
    return Status(Code::kSource, "libblkid cannot probe " + device_name);
  }
  blkid_probe_enable_superblocks(probe, 1);
  blkid_probe_set_superblocks_flags(probe, BLKID_SUBLKS_TYPE);
  // Partition tables are probed too: a whole disk is not the filesystem that may happen
  // to sit in its first partition.
  blkid_probe_enable_partitions(probe, 1);
  int rc = blkid_do_safeprobe(probe);
  if (rc < -1) return Probe{"", "more than one filesystem signature found on " + device_name};
  if (rc < 0) return Status(Code::kSource, "libblkid failed to probe " + device_name);
  if (rc == 1) return Probe{"", "no filesystem signature found on " + device_name};
  std::string type = LookUp(probe, "TYPE");
  std::string table = LookUp(probe, "PTTYPE");
  if (!type.empty() && !table.empty()) {
    return Probe{"", "both a " + type + " filesystem and a " + table +
                         " partition table found on " + device_name};
  }
  if (!table.empty()) return Probe{"", device_name + " holds a " + table + " partition table"};
  if (type.empty()) return Probe{"", "no filesystem signature found on " + device_name};
  return Probe{type, ""};
}

}  // namespace

Result<UsedBlockMap> ComputeUsedBlockMap(int fd, const std::string& device_name,
                                         uint64_t device_bytes, std::string* notice) {
  return ComputeUsedBlockMapAt(fd, device_name, 0, device_bytes, notice);
}

Result<UsedBlockMap> ComputeUsedBlockMapAt(int fd, const std::string& device_name,
                                           uint64_t base_bytes, uint64_t device_bytes,
                                           std::string* notice) {
  notice->clear();
  Result<Probe> probe = ProbeFilesystem(fd, device_name, base_bytes, device_bytes);
  if (!probe.ok()) return probe.status();
  const std::string& type = probe->type;
  if (type == "ext2" || type == "ext3" || type == "ext4") {
    // libext2fs opens by name; this names the very file the caller opened.
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    return ExtUsedBlockMap(path, device_name, type, base_bytes, device_bytes, notice);
  }
  if (type == "xfs") return XfsUsedBlockMap(fd, device_name, base_bytes, device_bytes, notice);

  std::string why = !type.empty() ? type + " filesystem on " + device_name
                                  : probe->reason;
  *notice = why + ", no ext2/3/4 or xfs filesystem to map; reading every block";
  return UsedBlockMap::AllBlocks(device_bytes);
}

}  // namespace hotsnap
