#include "snapshot/thin_device.h"

#include <dirent.h>

#include <fstream>

#include "base/log.h"
#include "base/subprocess.h"

namespace hotsnap {
namespace {

std::string DeviceName(const std::string& run_id) { return kParentDevicePrefix + run_id; }

std::string Describe(const SubprocessResult& r) {
  if (r.timed_out) return "timed out";
  std::string err = r.err;
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
  return "exit code " + std::to_string(r.exit_code) + (err.empty() ? "" : ": " + err);
}

// Runs dmsetup ARGS; kUnsupported when it cannot be started, kSource (with `what`) when it fails.
Status RunDmsetup(const std::vector<std::string>& args, const std::string& what) {
  std::vector<std::string> argv = {"dmsetup"};
  argv.insert(argv.end(), args.begin(), args.end());
  SubprocessOptions options;
  options.timeout = kDmsetupTimeout;
  auto r = RunSubprocess(argv, options);
  if (!r.ok()) {
    return Status(Code::kUnsupported, "cannot run dmsetup (package lvm2): " + r.status().message());
  }
  if (r->exit_code != 0 || r->timed_out) {
    return Status(Code::kSource, what + ": dmsetup " + args.front() + " failed (" + Describe(*r) + ")");
  }
  return Status::Ok();
}

}  // namespace

Result<ReadOnlyThinDevice> ReadOnlyThinDevice::Create(const ThinPool& pool, uint64_t thin_id,
                                                      uint64_t size_bytes,
                                                      const std::string& run_id) {
  const std::string name = DeviceName(run_id);
  const std::string what = "mapping thin id " + std::to_string(thin_id) + " of pool " +
                           pool.full_name() + " read-only as " + name;
  if (size_bytes == 0 || size_bytes % 512 != 0) {
    return Status(Code::kInternal, what + ": size " + std::to_string(size_bytes) +
                                       " bytes is not a positive multiple of 512");
  }
  auto tpool = DmDevicePath(pool.tpool_dm_name());
  if (!tpool.ok()) return tpool.status().Wrap(what);
  const std::string table =
      "0 " + std::to_string(size_bytes / 512) + " thin " + *tpool + " " + std::to_string(thin_id);
  HOTSNAP_RETURN_IF_ERROR(RunDmsetup({"create", "--readonly", name, "--table", table}, what));
  auto path = DmDevicePath(name);
  if (!path.ok()) {
    Status removed = RemoveParentDevice(run_id);
    return path.status().Wrap(what).WithCleanup(removed);
  }
  return ReadOnlyThinDevice(name, *path);
}

ReadOnlyThinDevice::ReadOnlyThinDevice(ReadOnlyThinDevice&& other) noexcept
    : name_(std::move(other.name_)), path_(std::move(other.path_)), held_(other.held_) {
  other.held_ = false;
}

ReadOnlyThinDevice& ReadOnlyThinDevice::operator=(ReadOnlyThinDevice&& other) noexcept {
  if (this != &other) {
    if (held_) {
      Status s = Remove();
      if (!s.ok()) Error(s.message());
    }
    name_ = std::move(other.name_);
    path_ = std::move(other.path_);
    held_ = other.held_;
    other.held_ = false;
  }
  return *this;
}

ReadOnlyThinDevice::~ReadOnlyThinDevice() {
  if (!held_) return;
  Status s = Remove();
  if (!s.ok()) Error(s.message());
}

Status ReadOnlyThinDevice::Remove() {
  if (!held_) return Status::Ok();
  held_ = false;
  return RunDmsetup({"remove", "--retry", name_}, "removing the device-mapper device " + name_ +
                                           " (remove it with: dmsetup remove " + name_ + ")");
}

std::vector<std::string> ParentDeviceRuns() {
  std::vector<std::string> runs;
  DIR* d = ::opendir("/sys/block");
  if (d == nullptr) return runs;
  const std::string prefix = kParentDevicePrefix;
  while (dirent* e = ::readdir(d)) {
    std::string dev = e->d_name;
    if (dev.rfind("dm-", 0) != 0) continue;
    std::ifstream in("/sys/block/" + dev + "/dm/name");
    std::string name;
    if (in && std::getline(in, name) && name.size() > prefix.size() && name.rfind(prefix, 0) == 0) {
      runs.push_back(name.substr(prefix.size()));
    }
  }
  ::closedir(d);
  return runs;
}

Status RemoveParentDevice(const std::string& run_id) {
  const std::string name = DeviceName(run_id);
  bool exists = false;
  for (const std::string& run : ParentDeviceRuns()) exists = exists || run == run_id;
  if (!exists) return Status::Ok();
  return RunDmsetup({"remove", "--retry", name}, "removing the device-mapper device " + name);
}

}  // namespace hotsnap
