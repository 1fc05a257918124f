#include "mount/mount_table.h"

#include <fstream>
#include <sstream>

namespace hotsnap {

std::vector<MountInfoEntry> CurrentMounts() {
  std::ifstream in("/proc/self/mountinfo");
  std::stringstream text;
  text << in.rdbuf();
  return ParseMountInfo(text.str());
}

}  // namespace hotsnap
