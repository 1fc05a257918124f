// CPU lists as the kernel prints them ("0-3,8-11,16"), and the seam that reads which CPUs
// are online, so tests can bring a CPU "online" while writes are tracked.
#ifndef HOTSNAP_SNAPSHOT_CPU_LIST_H_
#define HOTSNAP_SNAPSHOT_CPU_LIST_H_

#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace hotsnap {

// Parses a kernel CPU list (Documentation/admin-guide/cputopology.rst): comma-separated
// CPU numbers and inclusive ranges "A-B", one trailing newline allowed; "" or "\n" is the
// empty list. Returns the CPUs in ascending order without duplicates. Bad text fails
// (kInternal) naming `where` (the file) and the text.
Result<std::vector<int>> ParseCpuList(std::string_view text, const std::string& where);

// Formats CPUs (ascending) back into the kernel's form, ranges compressed: {0,1,2,5} → "0-2,5".
std::string FormatCpuList(const std::vector<int>& cpus);

// Which CPUs are online. The real one reads /sys/devices/system/cpu/online.
class CpuInfo {
 public:
  virtual ~CpuInfo() = default;
  virtual Result<std::vector<int>> OnlineCpus() = 0;
};
CpuInfo* RealCpuInfo();

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_CPU_LIST_H_
