#include "snapshot/cpu_list.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "base/parse_number.h"

namespace hotsnap {
namespace {

// Far above any real machine (the kernel's NR_CPUS tops out at 8192): a bigger number is
// garbage, and a huge range must not allocate gigabytes.
constexpr int kMaxCpu = 1 << 16;

class SysfsCpuInfo : public CpuInfo {
 public:
  Result<std::vector<int>> OnlineCpus() override {
    const std::string path = "/sys/devices/system/cpu/online";
    std::ifstream in(path);
    if (!in) return Status(Code::kUnsupported, "cannot read " + path);
    std::stringstream text;
    text << in.rdbuf();
    return ParseCpuList(text.str(), path);
  }
};

}  // namespace

Result<std::vector<int>> ParseCpuList(std::string_view text, const std::string& where) {
  std::vector<int> cpus;
  std::string_view rest = text;
  if (!rest.empty() && rest.back() == '\n') rest.remove_suffix(1);
  auto bad = [&](const std::string& why) {
    return Status(Code::kInternal,
                  where + ": " + why + " in the CPU list " + QuoteForMessage(text));
  };
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    std::string_view part = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (part.empty() || (comma != std::string_view::npos && rest.empty())) {
      return bad("an empty entry");
    }
    size_t dash = part.find('-');
    // ParseDecimal would accept the surrounding blanks the kernel never prints: refuse them.
    if (part.find_first_not_of("0123456789-") != std::string_view::npos) {
      return bad("an unexpected character");
    }
    auto first = ParseDecimal<int>(part.substr(0, dash), where);
    if (!first.ok()) return bad("a bad CPU number");
    int last = *first;
    if (dash != std::string_view::npos) {
      auto end = ParseDecimal<int>(part.substr(dash + 1), where);
      if (!end.ok()) return bad("a bad CPU number");
      last = *end;
    }
    if (last < *first) return bad("a descending range");
    if (last >= kMaxCpu) return bad("a CPU number above " + std::to_string(kMaxCpu - 1));
    for (int c = *first; c <= last; ++c) cpus.push_back(c);
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::string FormatCpuList(const std::vector<int>& cpus) {
  std::string out;
  for (size_t i = 0; i < cpus.size();) {
    size_t j = i;
    while (j + 1 < cpus.size() && cpus[j + 1] == cpus[j] + 1) ++j;
    if (!out.empty()) out += ',';
    out += std::to_string(cpus[i]);
    if (j > i) out += "-" + std::to_string(cpus[j]);
    i = j + 1;
  }
  return out;
}

CpuInfo* RealCpuInfo() {
  static SysfsCpuInfo info;
  return &info;
}

}  // namespace hotsnap
