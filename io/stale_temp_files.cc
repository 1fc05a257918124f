#include "io/stale_temp_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "base/unique_fd.h"

namespace hotsnap {

int TemporaryFilePid(const std::string& name) {
  static const std::string kMarker = ".hotsnap-";
  static const std::string kSuffix = ".tmp";
  if (name.size() < 1 + kMarker.size() + 1 + kSuffix.size() || name[0] != '.' ||
      name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0) {
    return -1;
  }
  size_t marker = name.rfind(kMarker);
  if (marker == std::string::npos || marker < 2) return -1;  // ".X" at least before it
  std::string digits = name.substr(marker + kMarker.size(),
                                   name.size() - kSuffix.size() - marker - kMarker.size());
  if (digits.empty() || digits.size() > 9) return -1;
  for (char c : digits) {
    if (c < '0' || c > '9') return -1;
  }
  int pid = std::stoi(digits);
  return pid > 0 ? pid : -1;
}

namespace {

// kill(pid, 0) fails with ESRCH only when no such process exists; EPERM means it does.
bool ProcessExists(int pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

}  // namespace

Status RemoveStaleTemporaryFiles(const std::string& dir, StaleTempReport* report) {
  UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) return Status::FromErrno(Code::kTarget, errno, "opening directory " + dir);
  int listing = ::dup(dfd.get());
  if (listing < 0) return Status::FromErrno(Code::kInternal, errno, "dup");
  std::unique_ptr<DIR, int (*)(DIR*)> d(::fdopendir(listing), ::closedir);
  if (d == nullptr) {
    ::close(listing);
    return Status::FromErrno(Code::kTarget, errno, "reading directory " + dir);
  }
  std::string prefix = dir.empty() || dir.back() == '/' ? dir : dir + "/";
  Status result;
  while (dirent* e = ::readdir(d.get())) {
    std::string name = e->d_name;
    int pid = TemporaryFilePid(name);
    if (pid < 0) continue;
    std::string path = prefix + name;
    struct stat st;
    if (::fstatat(dfd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (!S_ISREG(st.st_mode)) {
      report->kept.push_back(path + " (not a regular file)");
      continue;
    }
    if (ProcessExists(pid)) {
      report->kept.push_back(path + " (process " + std::to_string(pid) + " is running)");
      continue;
    }
    if (::unlinkat(dfd.get(), name.c_str(), 0) != 0) {
      if (errno == ENOENT) continue;  // its owner or another cleanup got there first
      if (result.ok()) result = Status::FromErrno(Code::kTarget, errno, "removing " + path);
      continue;
    }
    report->removed.push_back(path + " (temporary file of dead process " + std::to_string(pid) + ")");
  }
  if (!report->removed.empty()) ::fsync(dfd.get());
  return result;
}

}  // namespace hotsnap
