#include "snapshot/lvm_control.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

namespace hotsnap {
namespace {

using json = nlohmann::json;

class RealLvm : public LvmControl {
 public:
  Result<SubprocessResult> Run(const std::vector<std::string>& args,
                               std::chrono::milliseconds timeout) override {
    std::vector<std::string> argv = {"lvm"};
    argv.insert(argv.end(), args.begin(), args.end());
    SubprocessOptions options;
    options.timeout = timeout;
    // Our descriptors (the image, io_uring) are not lvm's business; without this lvm
    // warns about each one it inherits.
    options.extra_env = {"LVM_SUPPRESS_FD_WARNINGS=1"};
    auto r = RunSubprocess(argv, options);
    if (!r.ok()) return r.status().Wrap("running lvm (is lvm2 installed?)");
    return r;
  }
};

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  size_t start = s.find_first_not_of(" \n");
  return start == std::string::npos ? "" : s.substr(start);
}


std::optional<double> PercentField(const json& row, const char* name) {
  std::string s = LvmReportField(row, name);
  if (s.empty()) return std::nullopt;
  return std::strtod(s.c_str(), nullptr);
}

std::string DescribeFailure(const SubprocessResult& r) {
  if (r.timed_out) return "timed out";
  std::string err = Trim(r.err);
  return "exit code " + std::to_string(r.exit_code) + (err.empty() ? "" : ": " + err);
}

}  // namespace

std::string LvmReportField(const json& row, const char* name) {
  auto it = row.find(name);
  if (it == row.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

uint64_t LvmReportUnsigned(const json& row, const char* name) {
  std::string s = LvmReportField(row, name);
  return s.empty() ? 0 : std::strtoull(s.c_str(), nullptr, 10);
}

std::vector<std::string> SplitLvmTags(const std::string& s) {
  std::vector<std::string> tags;
  size_t start = 0;
  while (start < s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos) comma = s.size();
    if (comma > start) tags.push_back(s.substr(start, comma - start));
    start = comma + 1;
  }
  return tags;
}

Result<json> LvmReportRows(const std::string& text, const char* table) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.contains("report") || !doc["report"].is_array()) {
    return Status(Code::kInternal, std::string("unexpected output from lvm (not a JSON report): ") +
                                       text.substr(0, 200));
  }
  json rows = json::array();
  for (const json& part : doc["report"]) {
    auto it = part.find(table);
    if (it != part.end() && it->is_array()) {
      for (const json& row : *it) rows.push_back(row);
    }
  }
  return rows;
}

LvmControl* RealLvmControl() {
  static RealLvm instance;
  return &instance;
}

bool LvRecord::has_tag(const std::string& tag) const {
  for (const std::string& t : tags) {
    if (t == tag) return true;
  }
  return false;
}

const char kLvFields[] =
    "vg_name,lv_name,lv_path,lv_attr,segtype,pool_lv,origin,lv_tags,lv_size,lv_kernel_major,"
    "lv_kernel_minor,data_percent,metadata_percent";

Result<std::vector<LvRecord>> ParseLvsReport(const std::string& text) {
  auto rows = LvmReportRows(text, "lv");
  if (!rows.ok()) return rows.status();
  std::vector<LvRecord> lvs;
  for (const json& row : *rows) {
    LvRecord lv;
    lv.vg_name = LvmReportField(row, "vg_name");
    lv.lv_name = LvmReportField(row, "lv_name");
    lv.lv_path = LvmReportField(row, "lv_path");
    lv.lv_attr = LvmReportField(row, "lv_attr");
    lv.segtype = LvmReportField(row, "segtype");
    lv.pool_lv = LvmReportField(row, "pool_lv");
    lv.origin = LvmReportField(row, "origin");
    lv.tags = SplitLvmTags(LvmReportField(row, "lv_tags"));
    lv.size_bytes = LvmReportUnsigned(row, "lv_size");
    std::string major = LvmReportField(row, "lv_kernel_major");
    std::string minor = LvmReportField(row, "lv_kernel_minor");
    lv.kernel_major = major.empty() ? -1 : std::atoi(major.c_str());
    lv.kernel_minor = minor.empty() ? -1 : std::atoi(minor.c_str());
    lv.data_percent = PercentField(row, "data_percent");
    lv.metadata_percent = PercentField(row, "metadata_percent");
    lvs.push_back(std::move(lv));
  }
  return lvs;
}

Result<std::vector<VgRecord>> ParseVgsReport(const std::string& text) {
  auto rows = LvmReportRows(text, "vg");
  if (!rows.ok()) return rows.status();
  std::vector<VgRecord> vgs;
  for (const json& row : *rows) {
    VgRecord vg;
    vg.vg_name = LvmReportField(row, "vg_name");
    vg.free_bytes = LvmReportUnsigned(row, "vg_free");
    vg.extent_bytes = LvmReportUnsigned(row, "vg_extent_size");
    vgs.push_back(std::move(vg));
  }
  return vgs;
}

Result<std::vector<LvRecord>> ListLvs(LvmControl* lvm, const std::vector<std::string>& names) {
  std::vector<std::string> args = {"lvs", "-a", "--reportformat", "json", "--units", "b",
                                   "--nosuffix", "-o", kLvFields};
  args.insert(args.end(), names.begin(), names.end());
  auto r = lvm->Run(args, kLvmReportTimeout);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0 || r->timed_out) {
    return Status(Code::kSource, "lvm lvs failed (" + DescribeFailure(*r) + ")");
  }
  return ParseLvsReport(r->out);
}

Result<VgRecord> GetVg(LvmControl* lvm, const std::string& vg_name) {
  auto r = lvm->Run({"vgs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
                     "vg_name,vg_free,vg_extent_size", vg_name},
                    kLvmReportTimeout);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0 || r->timed_out) {
    return Status(Code::kSource, "lvm vgs " + vg_name + " failed (" + DescribeFailure(*r) + ")");
  }
  auto vgs = ParseVgsReport(r->out);
  if (!vgs.ok()) return vgs.status();
  for (VgRecord& vg : *vgs) {
    if (vg.vg_name == vg_name) return vg;
  }
  return Status(Code::kSource, "volume group " + vg_name + " not found by lvm vgs");
}

Status RunLvmChange(LvmControl* lvm, const std::vector<std::string>& args, const std::string& what,
                    std::chrono::milliseconds timeout) {
  auto r = lvm->Run(args, timeout);
  if (!r.ok()) return r.status().Wrap(what);
  if (r->timed_out) {
    return Status(Code::kSource, what + ": lvm " + args.front() + " did not finish within " +
                                     std::to_string(timeout.count() / 1000) + " s");
  }
  if (r->exit_code != 0) {
    return Status(Code::kSource, what + ": lvm " + args.front() + " failed (" + DescribeFailure(*r) + ")");
  }
  return Status::Ok();
}

Status RemoveLv(LvmControl* lvm, const std::string& full_name, std::chrono::milliseconds retry_for) {
  auto deadline = std::chrono::steady_clock::now() + retry_for;
  auto pause = std::chrono::milliseconds(200);
  while (true) {
    auto r = lvm->Run({"lvremove", "-f", "-y", full_name}, kLvmChangeTimeout);
    if (!r.ok()) return r.status().Wrap("removing " + full_name);
    if (r->exit_code == 0 && !r->timed_out) return Status::Ok();
    const std::string& err = r->err;
    if (err.find("Failed to find logical volume") != std::string::npos ||
        err.find("not found") != std::string::npos) {
      return Status::Ok();  // already gone (another cleanup got there first)
    }
    bool in_use = err.find("in use") != std::string::npos || err.find("open") != std::string::npos;
    if (!in_use || r->timed_out || std::chrono::steady_clock::now() + pause > deadline) {
      return Status(Code::kSource, "removing LVM snapshot " + full_name + " failed (" +
                                       DescribeFailure(*r) + "); remove it with: lvremove " +
                                       full_name);
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(2000));
  }
}

bool LvmAvailable() {
  if (::access("/dev/mapper/control", F_OK) != 0) return false;
  for (const char* dir : {"/usr/sbin/lvm", "/sbin/lvm", "/usr/bin/lvm", "/bin/lvm"}) {
    if (::access(dir, X_OK) == 0) return true;
  }
  return false;
}

const LvRecord* FindLvRow(const std::vector<LvRecord>& lvs, const std::string& vg,
                          const std::string& lv) {
  for (const LvRecord& row : lvs) {
    if (row.vg_name == vg && row.lv_name == lv) return &row;
  }
  return nullptr;
}

Result<std::optional<LvRecord>> FindLogicalVolume(LvmControl* lvm, const std::string& path,
                                                  std::vector<LvRecord>* listed) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(Code::kSource, errno, "stat " + path);
  if (!S_ISBLK(st.st_mode)) return std::optional<LvRecord>();
  unsigned major = ::major(st.st_rdev), minor = ::minor(st.st_rdev);
  // Device-mapper devices created by LVM carry a "LVM-" uuid; anything else is not ours to ask.
  std::ifstream uuid_file("/sys/dev/block/" + std::to_string(major) + ":" + std::to_string(minor) +
                          "/dm/uuid");
  std::string uuid;
  if (!uuid_file || !std::getline(uuid_file, uuid) || uuid.rfind("LVM-", 0) != 0) {
    return std::optional<LvRecord>();
  }
  auto lvs = ListLvs(lvm);
  if (!lvs.ok()) return lvs.status();
  std::optional<LvRecord> found;
  for (const LvRecord& lv : *lvs) {
    if (lv.kernel_major == static_cast<int>(major) && lv.kernel_minor == static_cast<int>(minor)) {
      found = lv;
      break;
    }
  }
  if (listed != nullptr) *listed = std::move(lvs.value());
  return found;
}

std::string FormatMiB(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f MiB", bytes / 1048576.0);
  return buf;
}

}  // namespace hotsnap
