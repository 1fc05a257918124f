#include "snapshot/freeze_stacking.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "snapshot/block_topology.h"

namespace hotsnap {
namespace {

namespace fs = std::filesystem;

constexpr int kMaxDepth = 16;  // stacking deeper than this is treated as doubt

// Adds to *under the st_dev of every filesystem that holds a backing file of a loop device
// beneath the block device in `sys_dir`, following partitions to their disk, slaves of dm and
// md devices, and those filesystems' own devices. False on doubt.
bool CollectUnder(const fs::path& sys_dir, int depth, std::set<dev_t>* under) {
  if (depth > kMaxDepth) return false;
  std::error_code ec;
  fs::path dir = fs::canonical(sys_dir, ec);
  if (ec) return false;
  if (fs::exists(dir / "partition", ec)) dir = dir.parent_path();  // a partition: its disk
  if (fs::exists(dir / "loop", ec)) {
    std::ifstream in(dir / "loop" / "backing_file");
    std::string backing;
    if (!std::getline(in, backing) || backing.empty()) return false;
    struct stat st;
    if (::stat(backing.c_str(), &st) != 0) return false;  // "(deleted)" and the like: doubt
    if (!under->insert(st.st_dev).second) return true;   // seen: no need to go further
    auto holder = FindBlockDevice(st.st_dev, Code::kSource);
    // A backing file on a filesystem without a block device of its own (tmpfs, NFS) rests on
    // nothing a member could be.
    if (!holder.ok()) return true;
    return CollectUnder(holder->sys_dir, depth + 1, under);
  }
  for (const fs::directory_entry& slave : fs::directory_iterator(dir / "slaves", ec)) {
    if (!CollectUnder(slave.path(), depth + 1, under)) return false;
  }
  return true;
}

}  // namespace

bool MayFreezeAtOnce(const std::vector<std::string>& mount_points) {
  std::vector<dev_t> members;
  for (const std::string& m : mount_points) {
    struct stat st;
    if (::stat(m.c_str(), &st) != 0) return false;
    members.push_back(st.st_dev);
  }
  for (size_t i = 0; i < members.size(); ++i) {
    auto device = FindBlockDevice(members[i], Code::kSource);
    if (!device.ok()) return false;
    std::set<dev_t> under;
    if (!CollectUnder(device->sys_dir, 0, &under)) return false;
    for (size_t j = 0; j < members.size(); ++j) {
      if (j != i && (members[j] == members[i] || under.count(members[j]) > 0)) return false;
    }
  }
  return true;
}

}  // namespace hotsnap
