// Records of the mounts `hotsnap mount` made, so that `hotsnap umount` and `hotsnap
// cleanup` can undo them from another process, also after the server crashed.
//
// Layout under RunDir() (default /run/hotsnap; $HOTSNAP_RUN_DIR overrides it, for tests):
//   mounts/ID.json   the record (written atomically: temp file + rename)
//   mounts/ID/       the FUSE mount point; the served file is mounts/ID/device
//   mounts/ID.log    the server's stderr after it detached from the terminal
// ID is derived from the mount point's canonical path, so one mount point has one record.
// /run is a tmpfs: after a reboot, when every mount is gone, so are the records.
#ifndef HOTSNAP_MOUNT_MOUNT_STATE_H_
#define HOTSNAP_MOUNT_MOUNT_STATE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/process_identity.h"
#include "base/status.h"

namespace hotsnap {

struct MountRecord {
  std::string id;
  std::string image;        // image file, as given
  std::string mount_point;  // canonical path
  std::string fs_type;      // from the image metadata
  std::string fuse_dir;     // RunDir()/mounts/ID
  std::string device_file;  // fuse_dir + "/device"
  std::string loop_device;  // "" until attached
  pid_t pid = 0;            // the server process
  uint64_t pid_start_ticks = 0;  // its start time (/proc/PID/stat field 22): guards pid reuse
  std::string log_file;
};

std::string RunDir();
std::string MountsDir();  // RunDir() + "/mounts"
std::string MountIdFor(const std::string& canonical_mount_point);
// A record with the paths for `canonical_mount_point` filled in; nothing is written.
MountRecord NewMountRecord(const std::string& image, const std::string& canonical_mount_point);

Status WriteMountRecord(const MountRecord& record);
// kUsage with "not a hotsnap mount" if there is no record for the id.
Result<MountRecord> ReadMountRecord(const std::string& id);
// Every readable record; unreadable ones are reported in `problems`.
std::vector<MountRecord> ListMountRecords(std::vector<std::string>* problems);
// Removes the record, its log and its (empty) FUSE directory. Missing files are fine.
void RemoveMountRecord(const MountRecord& record);

// Whether the recorded server still runs: its pid with the recorded start time
// (ProcessStartTicks in base/process_identity.h), so a reused pid is not mistaken for it.
bool ServerAlive(const MountRecord& record);

}  // namespace hotsnap

#endif  // HOTSNAP_MOUNT_MOUNT_STATE_H_
