// RunUmount and RunMountCleanup: undoing mounts from outside the server process.
#include <limits.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <set>
#include <thread>

#include "base/log.h"
#include "mount/fs_mount.h"
#include "mount/fuse_server.h"
#include "mount/loop_attachment.h"
#include "mount/mount_job.h"
#include "mount/mount_table.h"

namespace hotsnap {
namespace {

constexpr int kServerStopSeconds = 30;
const std::string kFuseType = std::string("fuse.") + kFuseSubtype;

bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

bool PathExists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Unmounts every part's filesystem (not lazily), or none: if one is busy, those unmounted
// before it are mounted again from their loop devices (the server still holds them) and the
// busy one's kTarget is returned.
Status UnmountAllOrNone(const MountRecord& r) {
  std::vector<const MountedPart*> unmounted;
  for (const MountedPart& p : r.parts) {
    if (p.loop_device.empty() || !IsMountedFrom(p.mount_point, p.loop_device)) continue;
    Status s = UnmountIfSource(p.mount_point, p.loop_device, /*lazy=*/false);
    if (s.ok()) {
      unmounted.push_back(&p);
      continue;
    }
    for (const MountedPart* back : unmounted) {
      auto how = ReadOnlyMountFor(back->fs_type);
      if (!how.ok()) return s.WithCleanup(how.status());
      auto again = FsMount::Mount(back->loop_device, back->mount_point, *how);
      if (!again.ok()) return s.WithCleanup(again.status().Wrap("mounting it again"));
      // The mount stays: the server unmounts it at its teardown, as before.
      again->Release();
    }
    return s;
  }
  return Status::Ok();
}

// The canonical form of a mount point the user names. A dead mount may not resolve
// (ENOTCONN, EIO), so fall back to the absolute path as given.
std::string CanonicalOrAbsolute(const std::string& path) {
  char resolved[PATH_MAX];
  if (::realpath(path.c_str(), resolved) != nullptr) return resolved;
  if (!path.empty() && path[0] == '/') return path;
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) return path;
  return std::string(cwd) + "/" + path;
}

// Unmounts a hotsnap FUSE mount whose server is gone or stuck: its requests would hang or
// fail, so abort the connection and detach it.
Status UnmountFuse(const MountInfoEntry& m) {
  if (::umount2(m.mount_point.c_str(), UMOUNT_NOFOLLOW) == 0 || errno == EINVAL) return Status::Ok();
  HOTSNAP_RETURN_IF_ERROR(AbortFuseConnection(m.minor));
  if (::umount2(m.mount_point.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0 && errno != EINVAL) {
    return Status::FromErrno(Code::kTarget, errno, "unmounting FUSE at " + m.mount_point);
  }
  return Status::Ok();
}

// Undoes what a mount record describes, whose server is dead (or would not stop): each
// part's filesystem (lazily if busy) and loop device — also a loop device over the FUSE file
// that was attached but not yet recorded, with whatever is mounted from it —, the FUSE mount,
// then the record and the directories the server made.
Status CleanUpRecord(const MountRecord& r, std::vector<std::string>* done) {
  Status first;
  auto keep = [&first](Status s) {
    if (!s.ok() && first.ok()) first = s;
  };
  // (loop device, the mount point recorded for it)
  std::vector<std::pair<std::string, std::string>> loops;
  for (const MountedPart& p : r.parts) {
    if (!p.loop_device.empty()) loops.emplace_back(p.loop_device, p.mount_point);
  }
  for (const std::string& d : LoopDevicesBackedUnder(r.fuse_dir + "/")) {
    bool recorded = false;
    for (const auto& [loop, unused] : loops) recorded = recorded || loop == d;
    if (!recorded) loops.emplace_back(d, "");
  }
  for (const auto& [loop, mount_point] : loops) {
    for (const MountInfoEntry& m : CurrentMounts()) {
      if (m.source != loop) continue;
      // Only where the record says, or (an unrecorded loop device over our own file) anywhere.
      if (!mount_point.empty() && m.mount_point != mount_point) continue;
      Status s = UnmountIfSource(m.mount_point, loop, /*lazy=*/true);
      if (s.ok()) done->push_back("unmounted " + m.mount_point + " (" + loop + ")");
      keep(s);
    }
    if (LoopBackingFile(loop) == r.device_file) {
      Status s = DetachLoopIfBackedBy(loop, r.device_file, 5);
      done->push_back((s.ok() ? "detached " : "marked for detaching (still in use) ") + loop);
    }
  }
  for (const MountInfoEntry& m : CurrentMounts()) {
    if (m.mount_point == r.fuse_dir && m.fs_type == kFuseType) {
      Status s = UnmountFuse(m);
      if (s.ok()) done->push_back("unmounted FUSE " + r.fuse_dir);
      keep(s);
    }
  }
  if (first.ok()) {
    RemoveMountRecord(r);
    for (const MountedPart& p : r.parts) {
      if (p.created_dir && !PathExists(p.mount_point)) {
        done->push_back("removed directory " + p.mount_point);
      }
    }
    done->push_back("removed record of " + r.image + " at " + r.mount_point);
  }
  return first;
}

// Waits until the server of `r` has exited, up to `seconds`.
bool WaitForServerExit(const MountRecord& r, int seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (ServerAlive(r)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace

Status RunUmount(const std::string& path) {
  std::string mount_point = CanonicalOrAbsolute(path);
  auto record = ReadMountRecord(MountIdFor(mount_point));
  if (!record.ok()) {
    // DIR/pN of a whole-disk mount: point at DIR.
    auto parent = ReadMountRecord(MountIdFor(mount_point.substr(0, mount_point.rfind('/'))));
    for (const MountedPart& p : parent.ok() ? parent->parts : std::vector<MountedPart>{}) {
      if (p.mount_point == mount_point) {
        return Status(Code::kUsage, mount_point + " is partition " + std::to_string(p.partition) +
                                        " of the hotsnap mount at " + parent->mount_point +
                                        "; 'hotsnap umount " + parent->mount_point +
                                        "' unmounts all of it");
      }
    }
    return Status(Code::kUsage, mount_point + " is not a hotsnap mount (no record in " + MountsDir() +
                                    "; 'hotsnap cleanup' removes leftovers of crashed mounts)");
  }
  // 1. The filesystems first, by us: a busy mount is refused here with nothing changed.
  HOTSNAP_RETURN_IF_ERROR(UnmountAllOrNone(*record));
  // 2. The server detaches the loop device, unmounts FUSE and removes the record.
  if (ServerAlive(*record)) {
    ::kill(record->pid, SIGTERM);
    if (!WaitForServerExit(*record, kServerStopSeconds)) {
      Error("the mount server (pid " + std::to_string(record->pid) + ") did not stop within " +
            std::to_string(kServerStopSeconds) + " s; removing the mount without it");
    }
  }
  // 3. Whatever a dead or stuck server left behind.
  auto left = ReadMountRecord(record->id);
  if (!left.ok()) return Status::Ok();
  std::vector<std::string> done;
  Status s = CleanUpRecord(*left, &done);
  for (const std::string& line : done) Notice(line);
  return s;
}

Status RunMountCleanup(MountCleanupReport* report) {
  Status first;
  auto keep = [&first](Status s) {
    if (!s.ok()) {
      Error(s.message());
      if (first.ok()) first = s;
    }
  };
  const std::string prefix = MountsDir() + "/";

  // 1. Records whose server is gone.
  std::vector<std::string> problems;
  std::set<std::string> live_dirs;
  for (const MountRecord& r : ListMountRecords(&problems)) {
    if (ServerAlive(r)) {
      live_dirs.insert(r.fuse_dir);
      report->skipped.push_back(r.mount_point + ": live mount of " + r.image + " (server pid " +
                                std::to_string(r.pid) + "; 'hotsnap umount' it)");
      continue;
    }
    keep(CleanUpRecord(r, &report->removed));
  }
  for (const std::string& p : problems) keep(Status(Code::kInternal, p));
  auto is_live = [&](const std::string& path) {
    for (const std::string& dir : live_dirs) {
      if (path == dir || StartsWith(path, dir + "/")) return true;
    }
    return false;
  };

  // 2. Loop devices over a hotsnap FUSE file whose record is lost: their filesystems, then them.
  for (const std::string& loop : LoopDevicesBackedUnder(prefix)) {
    std::string backing = LoopBackingFile(loop);
    if (is_live(backing)) continue;
    for (const MountInfoEntry& m : CurrentMounts()) {
      if (m.source != loop) continue;
      Status s = UnmountIfSource(m.mount_point, loop, /*lazy=*/true);
      if (s.ok()) report->removed.push_back("unmounted " + m.mount_point + " (" + loop + ")");
      keep(s);
    }
    Status s = DetachLoopIfBackedBy(loop, backing, 5);
    report->removed.push_back((s.ok() ? "detached " : "marked for detaching (still in use) ") + loop);
  }

  // 3. hotsnap FUSE mounts without a live server ("Transport endpoint is not connected").
  for (const MountInfoEntry& m : CurrentMounts()) {
    if (m.fs_type != kFuseType || !StartsWith(m.mount_point, prefix) || is_live(m.mount_point)) continue;
    Status s = UnmountFuse(m);
    if (s.ok()) {
      report->removed.push_back("unmounted stale FUSE " + m.mount_point);
      ::rmdir(m.mount_point.c_str());
    }
    keep(s);
  }
  return first;
}

}  // namespace hotsnap
