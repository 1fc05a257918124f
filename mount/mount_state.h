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

// One filesystem of a mount: the image's own at the mount point, or (whole-disk image) one
// partition's, at the mount point or at MOUNTPOINT/pN.
struct MountedPart {
  int partition = 0;        // as `hotsnap info` numbers it; 0: the image's own filesystem
  std::string fs_type;      // from the image metadata
  std::string mount_point;  // canonical path
  std::string loop_device;  // "" until attached
  // The server made mount_point (MOUNTPOINT/pN) and removes it after unmounting; recorded
  // right after the mkdir, so a crash between the two leaves an empty directory behind.
  bool created_dir = false;
};

struct MountRecord {
  std::string id;
  std::string image;        // image file, as given
  std::string mount_point;  // canonical path, as given to `hotsnap mount` (the record's key)
  std::string fuse_dir;     // RunDir()/mounts/ID
  std::string device_file;  // fuse_dir + "/device"
  // In mount order; a part is recorded before its loop device is attached and again once it
  // is, so `hotsnap cleanup` knows every kernel object a crashed server had made.
  std::vector<MountedPart> parts;
  // Partitions of a whole-disk image that were not mounted, with the reason (for the user).
  std::vector<std::string> skipped;
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
// Removes the record, its log, its (empty) FUSE directory and the (empty) directories the
// server created for its parts. Missing files are fine.
void RemoveMountRecord(const MountRecord& record);

// Whether the recorded server still runs: its pid with the recorded start time
// (ProcessStartTicks in base/process_identity.h), so a reused pid is not mistaken for it.
bool ServerAlive(const MountRecord& record);

}  // namespace hotsnap

#endif  // HOTSNAP_MOUNT_MOUNT_STATE_H_
