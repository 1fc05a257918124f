#include "agent/privileges.h"

#include <sys/stat.h>
#include <unistd.h>

namespace hotsnap {

Status CheckRootForDevice(const std::string& path, const std::string& what, Code code) {
  struct stat st;
  if (::geteuid() == 0 || ::stat(path.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) {
    return Status::Ok();
  }
  return Status(code, "hotsnap must run as root to " + what + " the block device " + path +
                          " (running as uid " + std::to_string(::geteuid()) +
                          "); nothing was done. Run it as root, e.g. with sudo");
}

}  // namespace hotsnap
