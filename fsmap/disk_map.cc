#include "fsmap/disk_map.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include "base/unique_fd.h"
#include "fsmap/used_block_map_builder.h"

namespace hotsnap {
namespace {

// Joins byte ranges, given in ascending order of start, into a builder of `block_bytes`
// granularity: each range is widened to whole blocks and clipped where it would overlap the
// block already added (a block two ranges share is used once).
class DiskMapJoiner {
 public:
  DiskMapJoiner(const std::string& table_type, uint64_t disk_bytes, uint32_t block_bytes)
      : builder_(table_type, disk_bytes, block_bytes), block_bytes_(block_bytes) {}

  Status Add(uint64_t offset_bytes, uint64_t length_bytes) {
    if (length_bytes == 0) return Status::Ok();
    uint64_t first = offset_bytes / block_bytes_;
    uint64_t end = (offset_bytes + length_bytes + block_bytes_ - 1) / block_bytes_;
    first = std::max(first, next_block_);
    if (end <= first) return Status::Ok();
    next_block_ = end;
    return builder_.AddUsedBlocks(first, end - first);
  }

  UsedBlockMap Build() && { return std::move(builder_).Build(); }

 private:
  UsedBlockMapBuilder builder_;
  uint32_t block_bytes_;
  uint64_t next_block_ = 0;
};

// The largest power of two from 512 to 4096 dividing every leaf's start and size.
uint32_t JoinGranularity(const std::vector<const Partition*>& leaves) {
  uint32_t block = 4096;
  for (const Partition* p : leaves) {
    while (block > 512 && (p->start_bytes % block != 0 || p->size_bytes % block != 0)) block /= 2;
  }
  return block;
}

std::string PartitionName(const std::string& device_name, int number) {
  return device_name + " partition " + std::to_string(number);
}

// One partition's own map, offsets from the partition's start.
Result<UsedBlockMap> MapPartition(int fd, const std::string& device_name, MappedPartition* out) {
  const Partition& p = out->partition;
  const std::string name = PartitionName(device_name, p.number);
  const std::string& type = p.filesystem.type;
  out->fs_type = type;
  if (type == "swap") {
    out->method = "swap header";
    out->notice = name + " is swap: only its " + std::to_string(kSwapHeaderBytes) +
                  "-byte header page is kept; the rest restores as zeros";
    UsedBlockMapBuilder builder("swap", p.size_bytes, 512);
    HOTSNAP_RETURN_IF_ERROR(
        builder.AddUsedBlocks(0, std::min(kSwapHeaderBytes, p.size_bytes) / 512));
    return std::move(builder).Build();
  }
  if (type == "ext2" || type == "ext3" || type == "ext4" || type == "xfs") {
    std::string notice;
    auto map = ComputeUsedBlockMapAt(fd, name, p.start_bytes, p.size_bytes, &notice);
    if (!map.ok()) return map.status();
    out->notice = notice;
    if (map->all_blocks()) {
      out->method = "all blocks";
    } else {
      out->method = type == "xfs" ? "xfs bnobt" : type + " bitmap";
    }
    return map;
  }
  out->method = "all blocks";
  // vfat is read whole by design; say why only for what could have been mapped otherwise.
  if (type != "vfat") {
    std::string what = type.empty() ? "no recognised filesystem"
                                    : (p.filesystem.ambiguous ? "ambiguous signatures" : type);
    out->notice =
        name + " holds " + what + ", no ext2/3/4 or xfs filesystem to map; reading it whole";
  }
  return UsedBlockMap::AllBlocks(p.size_bytes);
}

// Leaves (partitions that are not DOS extended containers) in ascending order of start, or
// a reason the table cannot be trusted.
std::string SortedLeaves(const PartitionTable& table, uint64_t disk_bytes,
                         std::vector<const Partition*>* leaves) {
  for (const Partition& p : table.partitions) {
    if (p.start_bytes > disk_bytes || disk_bytes - p.start_bytes < p.size_bytes) {
      return "partition " + std::to_string(p.number) + " runs past the end of the disk";
    }
    if (!p.extended && p.size_bytes > 0) leaves->push_back(&p);
  }
  std::sort(leaves->begin(), leaves->end(),
            [](const Partition* a, const Partition* b) { return a->start_bytes < b->start_bytes; });
  for (size_t i = 1; i < leaves->size(); ++i) {
    const Partition* prev = (*leaves)[i - 1];
    if (prev->start_bytes + prev->size_bytes > (*leaves)[i]->start_bytes) {
      return "partitions " + std::to_string(prev->number) + " and " +
             std::to_string((*leaves)[i]->number) + " overlap";
    }
  }
  return "";
}

}  // namespace

bool IsMappableTable(const PartitionTable& table) {
  return !table.ambiguous && (table.type == "gpt" || table.type == "dos");
}

Result<UsedBlockMap> ComputeDiskMap(int fd, const std::string& device_name, uint64_t disk_bytes,
                                    const PartitionTable& table) {
  auto layout = std::make_shared<DiskLayout>();
  layout->table_type = table.type;
  layout->table_uuid = table.uuid;
  std::vector<const Partition*> leaves;
  std::string untrusted = SortedLeaves(table, disk_bytes, &leaves);
  if (!IsMappableTable(table) || !untrusted.empty()) {
    std::string why = untrusted.empty() ? "no gpt or dos partition table" : untrusted;
    layout->notices.push_back("the " + table.type + " partition table of " + device_name +
                              " is not usable (" + why + "); reading every block");
    for (Partition p : table.partitions) {
      if (!table.filesystems_probed && !p.extended) {
        p.filesystem = ProbeFilesystemAt(fd, p.start_bytes, p.size_bytes);
      }
      layout->partitions.push_back(
          MappedPartition{p, p.filesystem.type, "all blocks", p.size_bytes, ""});
    }
    return AttachDiskLayout(UsedBlockMap::AllBlocks(disk_bytes), std::move(layout));
  }

  // Each partition is mapped in a thread of its own: under a freeze (tracked mode maps at
  // every freeze) the disk's map then costs its slowest partition's, not the sum.
  std::vector<MappedPartition> results(leaves.size());
  std::vector<Result<UsedBlockMap>> maps(leaves.size(), Status(Code::kInternal, "not mapped"));
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < leaves.size(); ++i) {
      results[i].partition = *leaves[i];
      if (i + 1 == leaves.size()) {
        if (!table.filesystems_probed) results[i].partition.filesystem = ProbeFilesystemAt(
            fd, leaves[i]->start_bytes, leaves[i]->size_bytes);
        maps[i] = MapPartition(fd, device_name, &results[i]);
        continue;
      }
      // A description of its own: libblkid may seek and read, and offsets are per description.
      threads.emplace_back([&, i] {
        UniqueFd own(::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDONLY | O_CLOEXEC));
        if (!own.valid()) {
          maps[i] = Status::FromErrno(Code::kSource, errno, "reopening " + device_name);
          return;
        }
        if (!table.filesystems_probed) results[i].partition.filesystem = ProbeFilesystemAt(
            own.get(), leaves[i]->start_bytes, leaves[i]->size_bytes);
        maps[i] = MapPartition(own.get(), device_name, &results[i]);
      });
    }
    for (std::thread& t : threads) t.join();
  }

  // No coarser than the finest filesystem block: a free 1 KiB block of an ext4 next to a
  // used one stays free (its deleted data is not read), as in the partition's own map.
  uint32_t granularity = JoinGranularity(leaves);
  for (const Result<UsedBlockMap>& map : maps) {
    if (map.ok()) granularity = std::max<uint32_t>(512, std::min(granularity, map->block_bytes()));
  }
  DiskMapJoiner joiner(table.type, disk_bytes, granularity);
  uint64_t cursor = 0;  // bytes below this are joined
  std::vector<MappedPartition> mapped;
  std::vector<ByteExtent> extents;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const Partition* p = leaves[i];
    // The table, gaps, EBRs: everything since the previous partition.
    HOTSNAP_RETURN_IF_ERROR(joiner.Add(cursor, p->start_bytes - cursor));
    MappedPartition& result = results[i];
    const Result<UsedBlockMap>& map = maps[i];
    if (!map.ok()) return map.status();
    result.used_bytes = map->used_bytes();
    extents.clear();
    map->UsedIn(0, p->size_bytes, &extents);
    for (const ByteExtent& e : extents) {
      HOTSNAP_RETURN_IF_ERROR(joiner.Add(p->start_bytes + e.offset_bytes, e.length_bytes));
    }
    cursor = p->start_bytes + p->size_bytes;
    if (!result.notice.empty()) layout->notices.push_back(result.notice);
    mapped.push_back(std::move(result));
  }
  HOTSNAP_RETURN_IF_ERROR(joiner.Add(cursor, disk_bytes - cursor));

  // Report in table order, extended containers included.
  for (const Partition& p : table.partitions) {
    if (p.extended) {
      // Kept: its EBRs and whatever of it no logical partition holds.
      uint64_t outside = p.size_bytes;
      for (const Partition* leaf : leaves) {
        if (leaf->start_bytes >= p.start_bytes &&
            leaf->start_bytes + leaf->size_bytes <= p.start_bytes + p.size_bytes) {
          outside -= leaf->size_bytes;
        }
      }
      layout->partitions.push_back(MappedPartition{p, "", "extended (EBRs)", outside, ""});
      continue;
    }
    auto it = std::find_if(mapped.begin(), mapped.end(), [&p](const MappedPartition& m) {
      return m.partition.number == p.number;
    });
    if (it != mapped.end()) layout->partitions.push_back(std::move(*it));
  }
  return AttachDiskLayout(std::move(joiner).Build(), std::move(layout));
}

UsedBlockMap AttachDiskLayout(UsedBlockMap map, std::shared_ptr<const DiskLayout> disk) {
  map.disk_layout_ = std::move(disk);
  return map;
}

}  // namespace hotsnap
