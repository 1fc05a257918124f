#include "agent/used_map.h"

#include <fcntl.h>

#include <cerrno>

#include "agent/progress.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "fsmap/disk_map.h"
#include "io/partition_table.h"

namespace hotsnap {

Result<UsedBlockMap> MapUsedBlocks(const SourceDevice& source, bool all_blocks, bool announce,
                                   std::set<std::string>* shown) {
  auto say = [&](const std::string& notice) {
    if (announce && (shown == nullptr || shown->insert(notice).second)) Notice(notice);
  };
  if (all_blocks) return UsedBlockMap::AllBlocks(source.size_bytes);
  // Buffered: the map's small metadata reads need no O_DIRECT alignment.
  UniqueFd fd(::open(source.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(Code::kSource, errno, "opening " + source.path);
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  // A whole disk: each partition mapped on its own, at its offset in the disk. A partition's
  // filesystem mounted from the kernel's partition device writes through that device's cache,
  // which a freeze flushes to the disk; the disk's own cache was dropped just above.
  // The partitions' filesystems are probed by ComputeDiskMap, each in its mapping thread.
  auto table = ProbePartitionTable(source.path, Code::kSource, /*filesystems=*/false);
  if (!table.ok()) return table.status();
  if (IsMappableTable(*table)) {
    auto map = ComputeDiskMap(fd.get(), source.path, source.size_bytes, *table);
    if (!map.ok()) {
      return map.status().Wrap(
          "reading the partitions' free-space records (use --all-blocks "
          "to read every block instead)");
    }
    for (const std::string& notice : map->disk_layout()->notices) say(notice);
    return map;
  }
  std::string notice;
  auto map = ComputeUsedBlockMap(fd.get(), source.path, source.size_bytes, &notice);
  if (!map.ok()) {
    return map.status().Wrap(
        "reading the filesystem's free-space records (use --all-blocks to "
        "read every block instead)");
  }
  if (!notice.empty()) say(notice);
  return map;
}

std::string DescribeMap(const UsedBlockMap& map) {
  if (const DiskLayout* disk = map.disk_layout(); disk != nullptr) {
    std::string out = disk->table_type + " partitions:";
    for (size_t i = 0; i < disk->partitions.size(); ++i) {
      const MappedPartition& p = disk->partitions[i];
      // "ext4 bitmap" and "swap header" name the filesystem already; "all blocks" does not.
      bool named = p.fs_type.empty() || p.method.rfind(p.fs_type, 0) == 0;
      out += (i ? ", p" : " p") + std::to_string(p.partition.number) + " " +
             (named ? std::string() : p.fs_type + " ") + p.method + " " + HumanBytes(p.used_bytes);
    }
    return out;
  }
  if (map.all_blocks()) return "all blocks";
  if (map.fs_type() == "xfs") return "xfs bnobt";
  return map.fs_type() + " bitmap";
}

ImagePartitionTable PartitionTableOf(const UsedBlockMap& map) {
  ImagePartitionTable table;
  const DiskLayout* disk = map.disk_layout();
  if (disk == nullptr) return table;
  table.type = disk->table_type;
  table.uuid = disk->table_uuid;
  for (const MappedPartition& m : disk->partitions) {
    ImagePartition p;
    p.number = m.partition.number;
    p.start_bytes = m.partition.start_bytes;
    p.size_bytes = m.partition.size_bytes;
    p.type = m.partition.type;
    p.uuid = m.partition.uuid;
    p.name = m.partition.name;
    p.extended = m.partition.extended;
    p.fs_type = m.fs_type;
    p.fs_uuid = m.partition.filesystem.uuid;
    p.fs_label = m.partition.filesystem.label;
    p.used_bytes = m.used_bytes;
    p.used_map = m.method;
    table.partitions.push_back(std::move(p));
  }
  return table;
}

void RecordMap(const UsedBlockMap& map, ImageMetadata* meta) {
  meta->used_bytes = map.used_bytes();
  meta->used_map = DescribeMap(map);
  meta->partition_table = PartitionTableOf(map);
}

std::string FormatPartitionLines(const ImagePartitionTable& table, const std::string& indent) {
  std::string out;
  for (const ImagePartition& p : table.partitions) {
    char head[160];
    std::snprintf(head, sizeof(head), "p%-3d start %llu, %s, type %s", p.number,
                  static_cast<unsigned long long>(p.start_bytes), HumanBytes(p.size_bytes).c_str(),
                  p.type.c_str());
    out += indent + head;
    if (p.extended) {
      out += ": extended, " + HumanBytes(p.used_bytes) + " of EBRs and gaps kept\n";
      continue;
    }
    out += ": " + (p.fs_type.empty() ? std::string("no filesystem") : p.fs_type);
    if (!p.fs_label.empty()) out += " label '" + p.fs_label + "'";
    if (!p.fs_uuid.empty()) out += " UUID " + p.fs_uuid;
    out += ", used " + HumanBytes(p.used_bytes) + " (" + p.used_map + ")\n";
  }
  return out;
}

}  // namespace hotsnap
