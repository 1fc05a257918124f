#include "mount/mount_plan.h"

namespace hotsnap {
namespace {

// "partition 4 (swap at byte 473956352 of the disk)"; "partition 5 (at byte ...)" when empty.
std::string DescribePartition(int number, const std::string& fs_type, uint64_t start_bytes) {
  return "partition " + std::to_string(number) + " (" + (fs_type.empty() ? "" : fs_type + " ") +
         "at byte " + std::to_string(start_bytes) + " of the disk)";
}

std::string PartitionName(const ImagePartition& p) {
  return DescribePartition(p.number, p.fs_type, p.start_bytes);
}

PlannedMount ForPartition(const ImagePartition& p, const ReadOnlyMount& how,
                          const std::string& mount_point, bool own_directory) {
  PlannedMount m;
  m.partition = p.number;
  m.fs_type = p.fs_type;
  m.how = how;
  m.offset_bytes = p.start_bytes;
  m.size_bytes = p.size_bytes;
  m.mount_point = mount_point;
  m.own_directory = own_directory;
  return m;
}

// --partition N: partition N alone at `dir`.
Result<MountPlan> PlanOnePartition(const ImagePartitionTable& table, const std::string& image,
                                   int partition, const std::string& dir) {
  std::string mountable;
  for (const ImagePartition& p : table.partitions) {
    if (p.number == partition && !p.extended) {
      auto how = ReadOnlyMountFor(p.fs_type);
      if (!how.ok()) return how.status().Wrap(PartitionName(p) + " of " + image);
      MountPlan plan;
      plan.mounts.push_back(ForPartition(p, *how, dir, /*own_directory=*/false));
      return plan;
    }
    if (!p.extended && ReadOnlyMountFor(p.fs_type).ok()) {
      mountable += (mountable.empty() ? "" : ", ") + PartitionDirName(p.number) + " " + p.fs_type;
    }
  }
  return Status(Code::kUsage,
                image + " has no partition " + std::to_string(partition) + " (" +
                    (mountable.empty() ? "none is mountable" : "mountable: " + mountable) + ")");
}

// No --partition: every mountable partition at dir/pN.
Result<MountPlan> PlanWholeDisk(const ImagePartitionTable& table, const std::string& image,
                                const std::string& dir) {
  MountPlan plan;
  for (const ImagePartition& p : table.partitions) {
    if (p.extended) continue;  // a container: its logical partitions are listed themselves
    if (p.fs_type.empty()) {
      plan.skipped.push_back({p.number, PartitionName(p) +
                                            " is not mounted: it holds no filesystem libblkid "
                                            "recognised at backup time"});
      continue;
    }
    auto how = ReadOnlyMountFor(p.fs_type);
    if (!how.ok()) {
      plan.skipped.push_back(
          {p.number, PartitionName(p) + " is not mounted: hotsnap mounts ext2/3/4, xfs and vfat "
                                        "partitions only"});
      continue;
    }
    plan.mounts.push_back(
        ForPartition(p, *how, dir + "/" + PartitionDirName(p.number), /*own_directory=*/true));
  }
  if (plan.mounts.empty()) {
    std::string why;
    for (const SkippedPartition& s : plan.skipped) why += "; " + s.notice;
    return Status(Code::kUnsupported, image + " is the image of a whole " + table.type +
                                          " disk with no partition hotsnap can mount" + why);
  }
  return plan;
}

}  // namespace

std::string PartitionDirName(int partition) { return "p" + std::to_string(partition); }

std::string PlannedMount::Describe() const {
  if (partition == 0) return "the " + fs_type + " filesystem";
  return DescribePartition(partition, fs_type, offset_bytes);
}

Result<MountPlan> PlanMounts(const ImageMetadata& meta, const std::string& image, int partition,
                             const std::string& dir) {
  const ImagePartitionTable& table = meta.partition_table;
  if (table.empty()) {
    if (partition != 0) {
      return Status(
          Code::kUsage,
          image + " is not the image of a partitioned disk; mount it without --partition");
    }
    auto how = ReadOnlyMountFor(meta.fs_type);
    if (!how.ok()) return how.status();
    PlannedMount m;
    m.fs_type = meta.fs_type;
    m.how = *how;
    m.mount_point = dir;
    MountPlan plan;
    plan.mounts.push_back(std::move(m));
    return plan;
  }
  if (partition != 0) return PlanOnePartition(table, image, partition, dir);
  return PlanWholeDisk(table, image, dir);
}

}  // namespace hotsnap
