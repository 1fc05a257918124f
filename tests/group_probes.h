// Probes for tests of backups that must capture several filesystems at one moment
// (tests/consistency_group_test.cc: the filesystems of one disk; tests/backup_set_test.cc:
// those of several sources).
//
// - ProbeHook: a while-frozen hook that proves each member is frozen at the final moment: a
//   write to each member, started by the hook in its own session, has not finished while the
//   hook runs (and finishes once the backup thawed).
// - CrossWriter: appends transfer j to a log on filesystem A, then to a log on B, fsyncing
//   each. A copy of both at one moment holds count(B) <= count(A) <= count(B) + 1.
#ifndef HOTSNAP_TESTS_GROUP_PROBES_H_
#define HOTSNAP_TESTS_GROUP_PROBES_H_

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace hotsnap::testing {

// An ext4 on one loop device and an XFS on another (backing files in `dir`), both mounted
// read-write at dir/ext4 and dir/xfs; unmounted and detached on destruction.
class TwoLoopFilesystems {
 public:
  TwoLoopFilesystems(const std::string& dir, uint64_t ext4_bytes, uint64_t xfs_bytes)
      : a_(dir, ext4_bytes, "a.img"), b_(dir, xfs_bytes, "b.img") {
    MakeFilesystem("ext4", a_.device());
    MakeFilesystem("xfs", b_.device());
    ext4_.emplace(a_.device(), dir + "/ext4");
    xfs_.emplace(b_.device(), dir + "/xfs");
  }
  const std::string& a() const { return a_.device(); }  // the ext4's device
  const std::string& b() const { return b_.device(); }  // the XFS's device
  std::string ext4() const { return ext4_->path(); }
  std::string xfs() const { return xfs_->path(); }

 private:
  LoopDevice a_, b_;
  std::optional<MountPoint> ext4_, xfs_;
};

// Appends transfer j (a 9-byte line) to A/transfers.log, then to B/transfers.log, each
// with fsync, until stopped: in its own process group, killed whole.
class CrossWriter {
 public:
  CrossWriter(const std::string& a, const std::string& b) {
    std::string script =
        "j=0; while :; do "
        "printf '%08d\\n' $j | dd of=" +
        Quote(a + "/transfers.log") +
        " oflag=append conv=notrunc,fsync status=none || exit 1; "
        "printf '%08d\\n' $j | dd of=" +
        Quote(b + "/transfers.log") +
        " oflag=append conv=notrunc,fsync status=none || exit 1; "
        "j=$((j+1)); done";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::setpgid(pid_, pid_);
  }
  ~CrossWriter() { Stop(); }
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(-pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

inline uint64_t Lines(const std::string& path) {
  std::string text = ReadAll(path);
  uint64_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

// The "result" event among line-delimited JSON events.
inline nlohmann::json LastResultEvent(const std::string& events) {
  nlohmann::json found;
  size_t at = 0;
  while (at < events.size()) {
    size_t end = events.find('\n', at);
    if (end == std::string::npos) end = events.size();
    auto j = nlohmann::json::parse(events.substr(at, end - at), nullptr, false);
    if (j.is_object() && j.value("event", "") == "result") found = j;
    at = end + 1;
  }
  return found;
}

// The hook starts a write to each member in a session of its own (so the hook's end kills
// nothing) and waits up to 2 s for them: a member that is not frozen takes its write at once.
inline std::string ProbeHook(const std::string& out, const std::vector<std::string>& members) {
  std::string h = "set -u; out=" + Quote(out) + "; mkdir -p \"$out\"; ";
  for (size_t i = 0; i < members.size(); ++i) {
    std::string n = std::to_string(i);
    h += "setsid sh -c 'echo x > \"$1/probe\"; sync -f \"$1\"; touch \"$2\"' sh " +
         Quote(members[i]) + " \"$out/" + n + ".done\" </dev/null >/dev/null 2>&1 & ";
  }
  h += "i=0; while [ $i -lt 20 ]; do all=1; ";
  for (size_t i = 0; i < members.size(); ++i) {
    h += "[ -e \"$out/" + std::to_string(i) + ".done\" ] || all=0; ";
  }
  h += "[ $all = 1 ] && break; sleep 0.1; i=$((i+1)); done; ";
  for (size_t i = 0; i < members.size(); ++i) {
    std::string n = std::to_string(i);
    h += "if [ -e \"$out/" + n + ".done\" ]; then echo " + n + " written; else echo " + n +
         " blocked; fi >> \"$out/result\"; ";
  }
  h += "printf '%s\\n' \"$HOTSNAP_MOUNTPOINT\" > \"$out/env\"";
  return h;
}

}  // namespace hotsnap::testing

#endif  // HOTSNAP_TESTS_GROUP_PROBES_H_
