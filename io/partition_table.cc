#include "io/partition_table.h"

#include <blkid/blkid.h>
#include <fcntl.h>

#include <cerrno>
#include <cstdio>

#include "base/unique_fd.h"
#include "io/blkid_probe.h"

namespace hotsnap {
namespace {

// libblkid reports partition starts and sizes in 512-byte sectors on every device.
constexpr uint64_t kBlkidSectorBytes = 512;

std::string Lookup(blkid_probe pr, const char* name) {
  const char* value = nullptr;
  if (blkid_probe_lookup_value(pr, name, &value, nullptr) != 0 || value == nullptr) return "";
  return value;
}

Partition EntryOf(blkid_partition par, int fd, bool is_gpt, bool filesystems) {
  Partition p;
  p.number = blkid_partition_get_partno(par);
  p.start_bytes = static_cast<uint64_t>(blkid_partition_get_start(par)) * kBlkidSectorBytes;
  p.size_bytes = static_cast<uint64_t>(blkid_partition_get_size(par)) * kBlkidSectorBytes;
  if (is_gpt) {
    const char* type = blkid_partition_get_type_string(par);
    if (type != nullptr) p.type = type;
  } else {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02x", blkid_partition_get_type(par) & 0xff);
    p.type = hex;
  }
  if (const char* uuid = blkid_partition_get_uuid(par); uuid != nullptr) p.uuid = uuid;
  if (const char* name = blkid_partition_get_name(par); name != nullptr) p.name = name;
  p.extended = blkid_partition_is_extended(par) != 0;
  // An extended partition's first sector is an EBR, not a filesystem.
  if (!p.extended && filesystems) p.filesystem = ProbeFilesystemAt(fd, p.start_bytes, p.size_bytes);
  return p;
}

}  // namespace

Result<PartitionTable> ProbePartitionTable(const std::string& path, Code code, bool filesystems) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(code, errno, "opening " + path + " to probe it");
  BlkidProbe pr(blkid_new_probe());
  if (!pr.valid() || blkid_probe_set_device(pr.get(), fd.get(), 0, 0) != 0) {
    return Status(code, "libblkid cannot probe " + path);
  }
  // Only the partition chain: a filesystem signature is the superblock probe's business.
  blkid_probe_enable_superblocks(pr.get(), 0);
  blkid_probe_enable_partitions(pr.get(), 1);
  blkid_probe_set_partitions_flags(pr.get(), BLKID_PARTS_ENTRY_DETAILS);
  PartitionTable table;
  table.filesystems_probed = filesystems;
  int rc = blkid_do_safeprobe(pr.get());
  if (rc == -2) {
    table.ambiguous = true;
    return table;
  }
  if (rc < 0) return Status(code, "libblkid failed to read the partition table of " + path);
  if (rc == 1) return table;  // nothing found
  table.type = Lookup(pr.get(), "PTTYPE");
  table.uuid = Lookup(pr.get(), "PTUUID");
  // The entries come from the binary interface (a PMBR has none).
  blkid_partlist list = blkid_probe_get_partitions(pr.get());
  if (list == nullptr) return table;
  int count = blkid_partlist_numof_partitions(list);
  for (int i = 0; i < count; ++i) {
    blkid_partition par = blkid_partlist_get_partition(list, i);
    if (par != nullptr) table.partitions.push_back(EntryOf(par, fd.get(), table.type == "gpt", filesystems));
  }
  return table;
}

std::string DescribePartitionTable(const PartitionTable& table) {
  if (table.ambiguous) {
    return "partition table signatures of more than one kind, so libblkid cannot tell which "
           "layout is live";
  }
  if (table.type.empty()) return "";
  std::string out = "a " + table.type + " partition table";
  size_t n = table.partitions.size();
  if (n == 0) return out + " with no partitions";
  out += " with " + std::to_string(n) + (n == 1 ? " partition (" : " partitions (");
  for (size_t i = 0; i < n; ++i) {
    const Partition& p = table.partitions[i];
    std::string inside = p.extended ? "extended" : DescribeFilesystem(p.filesystem);
    out += (i > 0 ? ", p" : "p") + std::to_string(p.number) + ": " +
           (inside.empty() ? "no recognised filesystem" : inside);
  }
  return out + ")";
}

}  // namespace hotsnap
