#include "agent/consistency_group.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "agent/copy_mode.h"
#include "snapshot/freeze.h"

namespace hotsnap {
namespace {

std::string Canonical(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr), &std::free);
  return real ? std::string(real.get()) : path;
}

// Whether the user's PART names `device` (same block device number) or `mount_point`.
bool Names(const std::string& part, const std::string& device, const std::string& mount_point) {
  struct stat a, b;
  if (::stat(part.c_str(), &a) == 0 && S_ISBLK(a.st_mode) && ::stat(device.c_str(), &b) == 0 &&
      S_ISBLK(b.st_mode) && a.st_rdev == b.st_rdev) {
    return true;
  }
  return !mount_point.empty() && Canonical(part) == Canonical(mount_point);
}

// " Pass --allow-crash-consistent PART ..., or ALTERNATIVE first."
std::string Advice(const std::string& part, const std::string& alternative) {
  return " Pass --allow-crash-consistent " + part +
         " to copy it anyway as it is at that moment (crash-consistent, recorded in the "
         "image's report), or " +
         alternative + " first.";
}

// A holder ("dm-0") as people know it: " (/dev/mapper/vg-lv)" from its device-mapper name in
// sysfs, "" for md or when sysfs does not say.
std::string HolderAlias(const std::string& holder) {
  std::ifstream in("/sys/class/block/" + holder + "/dm/name");
  std::string name;
  if (!std::getline(in, name) || name.empty()) return "";
  return " (/dev/mapper/" + name + ")";
}

// What `holder` is stacked on, ", stacked on /dev/loop0p2", from its sysfs slaves.
std::string HolderSlaves(const std::string& holder) {
  std::vector<std::string> slaves;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator("/sys/class/block/" + holder + "/slaves", ec)) {
    slaves.push_back("/dev/" + entry.path().filename().string());
  }
  if (slaves.empty()) return "";
  std::sort(slaves.begin(), slaves.end());
  std::string out = ", stacked on ";
  for (size_t i = 0; i < slaves.size(); ++i) out += (i ? " and " : "") + slaves[i];
  return out;
}

}  // namespace

bool PartNamesMemberOf(const std::string& part, const DeviceUse& use) {
  for (const MountUse& m : use.mounts) {
    if (m.read_write && Names(part, m.device, m.mount_point)) return true;
  }
  for (const std::string& holder : use.holders) {
    if (Names(part, "/dev/" + holder, "")) return true;
  }
  return false;
}

std::vector<std::string> ConsistencyGroup::mount_points() const {
  std::vector<std::string> out;
  for (const MountUse& m : members) out.push_back(m.mount_point);
  return out;
}

std::string ConsistencyGroup::Describe() const {
  std::string out;
  for (const MountUse& m : members) {
    out += (out.empty() ? "" : ", ") + m.mount_point + " (" + m.fs_type + " on " + m.device + ")";
  }
  return out;
}

Result<ConsistencyGroup> PlanConsistencyGroup(const BackupSubject& subject,
                                              const std::vector<std::string>& allow,
                                              bool check_holders) {
  std::vector<bool> used(allow.size(), false);
  auto allowed = [&](const std::string& device, const std::string& mount_point) {
    bool hit = false;
    for (size_t i = 0; i < allow.size(); ++i) {
      if (Names(allow[i], device, mount_point)) used[i] = hit = true;
    }
    return hit;
  };
  // First what each PART names, so that a typo is reported as such before any refusal.
  for (const MountUse& m : subject.use.mounts) {
    if (m.read_write) allowed(m.device, m.mount_point);
  }
  if (check_holders) {
    for (const std::string& holder : subject.use.holders) allowed("/dev/" + holder, "");
  }
  for (size_t i = 0; i < allow.size(); ++i) {
    if (!used[i]) {
      return Status(Code::kUsage, "--allow-crash-consistent " + allow[i] +
                                      ": no read-write mounted filesystem or stacked device of " +
                                      subject.path + " is that");
    }
  }
  ConsistencyGroup group;
  std::vector<MountUse> members;
  std::set<std::string> devices;  // each read-write filesystem once
  for (const MountUse& m : subject.use.mounts) {
    // A filesystem mounted at several places (bind mounts) is one member: a second FIFREEZE
    // of its superblock would fail with EBUSY.
    if (!m.read_write || !devices.insert(m.device).second) continue;
    if (allowed(m.device, m.mount_point)) {
      group.crash_consistent.push_back(m.device + " at " + m.mount_point);
      continue;
    }
    if (!FilesystemTypeCanFreeze(m.fs_type)) {
      return Status(Code::kSource,
                    m.device + " (" + m.fs_type + ", mounted read-write at " + m.mount_point +
                        ") cannot be frozen: the " + m.fs_type +
                        " driver has no freeze support, so it cannot join the consistency "
                        "group of " +
                        subject.path + "." + Advice(m.device, "unmount it"));
    }
    members.push_back(m);
  }
  if (check_holders) {
    for (const std::string& holder : subject.use.holders) {
      std::string node = "/dev/" + holder;
      std::string alias = HolderAlias(holder);
      if (allowed(node, "")) {
        group.crash_consistent.push_back(node + alias);
        continue;
      }
      // Unmounting what is mounted from the holder would not help: the holder stays, and so
      // does this refusal, until it is deactivated (or removed).
      return Status(Code::kSource,
                    subject.path + " is held by " + node + alias + HolderSlaves(holder) +
                        " (device-mapper or md: an LVM logical volume, a RAID or crypt device on "
                        "it), whose writes no freeze of " +
                        subject.path +
                        "'s filesystems covers. Back up the logical volume itself with "
                        "--snapshot lvm." +
                        Advice(node, "deactivate it (an LV: lvchange -an)"));
    }
  }
  // Freeze order: deeper mount points first, the found order among equals.
  std::stable_sort(members.begin(), members.end(), [](const MountUse& a, const MountUse& b) {
    return MountPointDepth(a.mount_point) > MountPointDepth(b.mount_point);
  });
  group.members = std::move(members);
  return group;
}

}  // namespace hotsnap
