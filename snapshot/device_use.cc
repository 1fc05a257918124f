#include "snapshot/device_use.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <optional>

#include "snapshot/block_topology.h"

namespace hotsnap {
namespace {

// Reads a whole /proc file. /proc files report size 0, so read until EOF.
Result<std::string> ReadProcFile(const std::string& path, Code failure_code) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(failure_code, errno, "opening " + path);
  std::string text;
  char buffer[16384];
  while (true) {
    ssize_t n = read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(failure_code, errno, "reading " + path);
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

// The devices whose use counts as use of `path`: the device and its partitions, or for a
// regular file every loop device over it and their partitions.
struct Inspected {
  std::vector<BlockDevice> devices;
  std::optional<FileIdentity> file;  // set when `path` is a regular file

  const BlockDevice* Find(dev_t dev) const {
    for (const BlockDevice& device : devices) {
      if (device.dev == dev) return &device;
    }
    return nullptr;
  }
};

void AddWithPartitions(const BlockDevice& device, Inspected* inspected) {
  inspected->devices.push_back(device);
  for (BlockDevice& partition : ListPartitions(device)) {
    inspected->devices.push_back(std::move(partition));
  }
}

Result<Inspected> ResolveDevices(const std::string& path, Code failure_code) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return Status::FromErrno(failure_code, errno, "cannot inspect " + path);
  }
  Inspected inspected;
  if (S_ISBLK(st.st_mode)) {
    Result<BlockDevice> device = FindBlockDevice(st.st_rdev, failure_code);
    if (!device.ok()) return device.status().Wrap(path);
    AddWithPartitions(*device, &inspected);
  } else if (S_ISREG(st.st_mode)) {
    FileIdentity file{st.st_dev, st.st_ino, ""};
    if (char* real = realpath(path.c_str(), nullptr)) {
      file.canonical_path = real;
      free(real);
    }
    for (const BlockDevice& loop : FindLoopDevicesBackedBy(file)) {
      AddWithPartitions(loop, &inspected);
    }
    inspected.file = std::move(file);
  } else {
    return Status(failure_code, path + " is neither a block device nor a regular file");
  }
  return inspected;
}

// The device a mount is on: its superblock's st_dev, or, for filesystems that report an
// anonymous device number (btrfs), the device node named as its source.
const BlockDevice* MountedDevice(const MountInfoEntry& mount, const Inspected& inspected) {
  const BlockDevice* device = inspected.Find(makedev(mount.major, mount.minor));
  if (device != nullptr || mount.source.rfind("/dev/", 0) != 0) return device;
  struct stat st {};
  if (stat(mount.source.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) return nullptr;
  return inspected.Find(st.st_rdev);
}

bool SwapIsOn(const SwapEntry& swap, const Inspected& inspected) {
  struct stat st {};
  if (stat(swap.path.c_str(), &st) != 0) return false;  // e.g. a deleted swap file
  if (S_ISBLK(st.st_mode)) return inspected.Find(st.st_rdev) != nullptr;
  return S_ISREG(st.st_mode) && inspected.file && st.st_dev == inspected.file->dev &&
         st.st_ino == inspected.file->ino;
}

void AddUnique(const std::string& value, std::vector<std::string>* values) {
  if (std::find(values->begin(), values->end(), value) == values->end()) {
    values->push_back(value);
  }
}

}  // namespace

bool DeviceUse::mounted_read_write() const {
  return std::any_of(mounts.begin(), mounts.end(),
                     [](const MountUse& mount) { return mount.read_write; });
}

bool DeviceUse::in_use() const { return !mounts.empty() || !swaps.empty() || !holders.empty(); }

std::string DeviceUse::Describe() const {
  std::vector<std::string> parts;
  for (const MountUse& mount : mounts) {
    parts.push_back(std::string(mount.read_write ? "mounted read-write" : "mounted read-only") +
                    " at " + mount.mount_point + " (" + mount.device + ", " + mount.fs_type + ")");
  }
  for (const std::string& swap : swaps) parts.push_back("active swap " + swap);
  for (const std::string& holder : holders) parts.push_back("held by " + holder);
  if (parts.empty()) return "not in use";
  std::string line = parts[0];
  for (size_t i = 1; i < parts.size(); ++i) line += "; " + parts[i];
  return line;
}

Result<DeviceUse> InspectDeviceUse(const std::string& path, Code failure_code) {
  Result<Inspected> inspected = ResolveDevices(path, failure_code);
  if (!inspected.ok()) return inspected.status();
  std::string context = "checking whether " + path + " is in use";

  DeviceUse use;
  if (inspected->devices.empty()) return use;  // a regular file no loop device is over

  Result<std::string> mountinfo = ReadProcFile("/proc/self/mountinfo", failure_code);
  if (!mountinfo.ok()) return mountinfo.status().Wrap(context);
  for (const MountInfoEntry& mount : ParseMountInfo(*mountinfo)) {
    const BlockDevice* device = MountedDevice(mount, *inspected);
    if (device == nullptr) continue;
    use.mounts.push_back(
        MountUse{"/dev/" + device->name, mount.mount_point, mount.fs_type, mount.read_write()});
  }

  Result<std::string> swaps = ReadProcFile("/proc/swaps", failure_code);
  if (!swaps.ok()) return swaps.status().Wrap(context);
  for (const SwapEntry& swap : ParseSwaps(*swaps)) {
    if (SwapIsOn(swap, *inspected)) AddUnique(swap.path, &use.swaps);
  }

  for (const BlockDevice& device : inspected->devices) {
    for (const std::string& holder : ListHolders(device)) AddUnique(holder, &use.holders);
  }
  return use;
}

Result<UniqueFd> OpenExclusiveForWrite(const std::string& path, int extra_flags) {
  Result<DeviceUse> use = InspectDeviceUse(path, Code::kTarget);
  if (!use.ok()) return use.status();
  if (use->in_use()) {
    return Status(Code::kTarget, "refusing to write to " + path + ": " + use->Describe());
  }

  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    return Status::FromErrno(Code::kTarget, errno, "cannot inspect " + path);
  }
  int access_mode = (extra_flags & O_ACCMODE) == O_RDWR ? O_RDWR : O_WRONLY;
  int flags = (extra_flags & ~O_ACCMODE) | access_mode | O_CLOEXEC;
  // O_EXCL on a block device claims it: the open fails with EBUSY while it is mounted, an
  // active swap area, held by device-mapper/md, or claimed by another O_EXCL opener.
  if (S_ISBLK(st.st_mode)) flags |= O_EXCL;

  int fd = open(path.c_str(), flags);
  if (fd < 0 && errno == EBUSY && S_ISBLK(st.st_mode)) {
    return Status(Code::kTarget,
                  "refusing to write to " + path +
                      ": the kernel refused exclusive access (EBUSY from O_EXCL); it is "
                      "mounted, an active swap area or claimed by another program, possibly "
                      "where this process cannot see it (another mount namespace)",
                  EBUSY);
  }
  if (fd < 0) return Status::FromErrno(Code::kTarget, errno, "opening " + path + " for writing");
  return UniqueFd(fd);
}

}  // namespace hotsnap
