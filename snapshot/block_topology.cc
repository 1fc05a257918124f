#include "snapshot/block_topology.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "base/unique_fd.h"

namespace hotsnap {
namespace {

namespace fs = std::filesystem;

// Contents of a small sysfs attribute without the trailing newline; nullopt if unreadable.
std::optional<std::string> ReadAttribute(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

std::optional<uint64_t> ParseUnsigned(std::string_view text) {
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// Parses a "major:minor" sysfs value.
std::optional<dev_t> ParseDevNumber(std::string_view text) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  std::optional<uint64_t> major_number = ParseUnsigned(text.substr(0, colon));
  std::optional<uint64_t> minor_number = ParseUnsigned(text.substr(colon + 1));
  if (!major_number || !minor_number) return std::nullopt;
  return makedev(*major_number, *minor_number);
}

// The kernel's huge_encode_dev(), used for lo_device in struct loop_info64.
dev_t DecodeKernelDev(uint64_t encoded) {
  unsigned major_number = static_cast<unsigned>((encoded & 0xfff00) >> 8);
  unsigned minor_number = static_cast<unsigned>((encoded & 0xff) | ((encoded >> 12) & 0xfff00));
  return makedev(major_number, minor_number);
}

std::optional<BlockDevice> BlockDeviceFromSysDir(const fs::path& dir) {
  std::error_code ec;
  fs::path canonical = fs::canonical(dir, ec);
  if (ec) return std::nullopt;
  std::optional<std::string> dev_text = ReadAttribute((canonical / "dev").string());
  if (!dev_text) return std::nullopt;
  std::optional<dev_t> dev = ParseDevNumber(*dev_text);
  if (!dev) return std::nullopt;
  return BlockDevice{*dev, canonical.filename().string(), canonical.string()};
}

enum class Match { kYes, kNo, kUnknown };

// Compares by inode using sysfs attributes some kernels provide.
Match MatchBySysfsInode(const std::string& loop_dir, const FileIdentity& file) {
  std::optional<std::string> inode_text = ReadAttribute(loop_dir + "/loop/backing_inode");
  std::optional<std::string> dev_text = ReadAttribute(loop_dir + "/loop/backing_dev");
  if (!inode_text || !dev_text) return Match::kUnknown;
  std::optional<uint64_t> inode = ParseUnsigned(*inode_text);
  std::optional<dev_t> dev = ParseDevNumber(*dev_text);
  if (!dev) {
    std::optional<uint64_t> encoded = ParseUnsigned(*dev_text);
    if (encoded) dev = DecodeKernelDev(*encoded);
  }
  if (!inode || !dev) return Match::kUnknown;
  return (*inode == file.ino && *dev == file.dev) ? Match::kYes : Match::kNo;
}

// Compares by inode as the loop driver reports it (struct loop_info64).
Match MatchByLoopStatus(const std::string& loop_name, const FileIdentity& file) {
  std::string node = "/dev/" + loop_name;
  UniqueFd fd(open(node.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd.valid()) return Match::kUnknown;
  loop_info64 info{};
  if (ioctl(fd.get(), LOOP_GET_STATUS64, &info) != 0) return Match::kUnknown;
  bool same = info.lo_inode == file.ino && DecodeKernelDev(info.lo_device) == file.dev;
  return same ? Match::kYes : Match::kNo;
}

bool MatchByPath(const std::string& backing_file, const FileIdentity& file) {
  // d_path() appends " (deleted)" once the backing file is unlinked: whatever now lives at
  // that path is a different file.
  constexpr std::string_view kDeleted = " (deleted)";
  if (backing_file.size() >= kDeleted.size() &&
      backing_file.compare(backing_file.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0) {
    return false;
  }
  return !file.canonical_path.empty() && backing_file == file.canonical_path;
}

}  // namespace

Result<BlockDevice> FindBlockDevice(dev_t dev, Code failure_code) {
  std::string link =
      "/sys/dev/block/" + std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
  std::optional<BlockDevice> device = BlockDeviceFromSysDir(link);
  if (!device) {
    return Status(failure_code, "block device " + std::to_string(major(dev)) + ":" +
                                    std::to_string(minor(dev)) + " is not known to sysfs (" + link +
                                    ")");
  }
  return *device;
}

std::vector<BlockDevice> ListPartitions(const BlockDevice& disk) {
  std::vector<BlockDevice> partitions;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(disk.sys_dir, ec)) {
    // A partition is a subdirectory with a "partition" attribute (holding its number).
    std::error_code exists_ec;
    if (!fs::exists(entry.path() / "partition", exists_ec)) continue;
    std::optional<BlockDevice> partition = BlockDeviceFromSysDir(entry.path());
    if (partition) partitions.push_back(std::move(*partition));
  }
  std::sort(partitions.begin(), partitions.end(),
            [](const BlockDevice& a, const BlockDevice& b) { return a.dev < b.dev; });
  return partitions;
}

std::vector<KernelPartition> ListKernelPartitions(const BlockDevice& disk) {
  // sysfs "start" and "size" are in 512-byte sectors whatever the logical sector size.
  constexpr uint64_t kSysfsSectorBytes = 512;
  std::vector<KernelPartition> out;
  for (BlockDevice& device : ListPartitions(disk)) {
    auto number = ReadAttribute(device.sys_dir + "/partition");
    auto start = ReadAttribute(device.sys_dir + "/start");
    auto size = ReadAttribute(device.sys_dir + "/size");
    if (!number || !start || !size) continue;
    auto n = ParseUnsigned(*number);
    auto st = ParseUnsigned(*start);
    auto sz = ParseUnsigned(*size);
    if (!n || !st || !sz || *n > 1u << 20) continue;
    out.push_back(KernelPartition{std::move(device), static_cast<int>(*n), *st * kSysfsSectorBytes,
                                  *sz * kSysfsSectorBytes});
  }
  return out;
}

std::vector<std::string> ListHolders(const BlockDevice& device) {
  std::vector<std::string> holders;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(device.sys_dir + "/holders", ec)) {
    holders.push_back(entry.path().filename().string());
  }
  std::sort(holders.begin(), holders.end());
  return holders;
}

std::vector<BlockDevice> FindLoopDevicesBackedBy(const FileIdentity& file) {
  std::vector<BlockDevice> loops;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator("/sys/block", ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("loop", 0) != 0) continue;
    std::string dir = entry.path().string();
    // backing_file exists only while the loop device is attached.
    std::optional<std::string> backing_file = ReadAttribute(dir + "/loop/backing_file");
    if (!backing_file) continue;

    Match match = MatchBySysfsInode(dir, file);
    if (match == Match::kUnknown) match = MatchByLoopStatus(name, file);
    bool same =
        match == Match::kYes || (match == Match::kUnknown && MatchByPath(*backing_file, file));
    if (!same) continue;
    std::optional<BlockDevice> loop = BlockDeviceFromSysDir(entry.path());
    if (loop) loops.push_back(std::move(*loop));
  }
  std::sort(loops.begin(), loops.end(),
            [](const BlockDevice& a, const BlockDevice& b) { return a.dev < b.dev; });
  return loops;
}

}  // namespace hotsnap
