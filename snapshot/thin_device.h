// ReadOnlyThinDevice: a read-only device-mapper device for one thin device id of a live thin
// pool, made with `dmsetup create --readonly` (table "0 SECTORS thin POOL_DEV THIN_ID"), not
// through LVM: to read an inactive thin LV (a kept snapshot, lvm_kept.h) without the two
// `lvchange` runs (activate, deactivate) that cost a second each under emulation and change
// LVM's metadata. LVM does not know the device; it only reads the pool's data.
//
// While it exists the pool refuses to delete that thin id (the kernel's delete fails EBUSY on
// an open or active thin device), so an lvremove of the LV fails instead of pulling the data
// away. Named hotsnap-parent-<run id>: a run that dies while holding one leaves it to the
// dead-run cleanup (CleanupLvmLeftovers, lvm_lease.h), which removes it by that name.
//
// Move-only; Remove() (or the destructor, which logs a failure) runs `dmsetup remove`.
// Needs root, dmsetup (lvm2) and the pool active.
#ifndef HOTSNAP_SNAPSHOT_THIN_DEVICE_H_
#define HOTSNAP_SNAPSHOT_THIN_DEVICE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "snapshot/thin_delta.h"

namespace hotsnap {

inline constexpr char kParentDevicePrefix[] = "hotsnap-parent-";

class ReadOnlyThinDevice {
 public:
  // Thin id `thin_id` of `pool`, `size_bytes` long (a multiple of 512), as device-mapper
  // device hotsnap-parent-<run_id>. kSource when dmsetup fails (quoting it), kUnsupported
  // without dmsetup. Nothing is left behind on error.
  static Result<ReadOnlyThinDevice> Create(const ThinPool& pool, uint64_t thin_id,
                                           uint64_t size_bytes, const std::string& run_id);
  ReadOnlyThinDevice(ReadOnlyThinDevice&& other) noexcept;
  ReadOnlyThinDevice& operator=(ReadOnlyThinDevice&& other) noexcept;
  ReadOnlyThinDevice(const ReadOnlyThinDevice&) = delete;
  ReadOnlyThinDevice& operator=(const ReadOnlyThinDevice&) = delete;
  ~ReadOnlyThinDevice();

  // The device node (/dev/mapper/NAME, or /dev/dm-N without udev).
  const std::string& path() const { return path_; }
  // Removes the device; idempotent. Close every descriptor of it first.
  Status Remove();

 private:
  ReadOnlyThinDevice(std::string name, std::string path)
      : name_(std::move(name)), path_(std::move(path)), held_(true) {}
  std::string name_;
  std::string path_;
  bool held_ = false;
};

// The run ids of the hotsnap-parent-<run id> devices that exist now (from sysfs).
std::vector<std::string> ParentDeviceRuns();
// Removes hotsnap-parent-<run_id> (dmsetup remove); one that does not exist counts as removed.
Status RemoveParentDevice(const std::string& run_id);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_THIN_DEVICE_H_
