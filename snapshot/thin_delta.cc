#include "snapshot/thin_delta.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/log.h"

namespace hotsnap {
namespace {

using json = nlohmann::json;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  size_t start = s.find_first_not_of(" \n");
  return start == std::string::npos ? "" : s.substr(start);
}

std::string DoubleDashes(const std::string& name) {
  std::string out;
  for (char c : name) {
    out += c;
    if (c == '-') out += '-';
  }
  return out;
}

std::string Describe(const SubprocessResult& r) {
  if (r.timed_out) return "timed out";
  std::string err = r.err;
  // thin_delta follows its error with its usage text, which says nothing here.
  size_t usage = err.find("\nUsage:");
  if (usage != std::string::npos) err.resize(usage);
  err = Trim(err);
  return "exit code " + std::to_string(r.exit_code) + (err.empty() ? "" : ": " + err);
}

// Runs a device-mapper or thin-provisioning tool; kUnsupported when it cannot be started.
Result<SubprocessResult> RunTool(const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout, const char* package) {
  SubprocessOptions options;
  options.timeout = timeout;
  // thin_delta prints ~45 bytes per run of blocks, `same` ones included: a large, fragmented
  // pool can print far more than the default. Past this the XML is cut short, and the parser
  // refuses it (an error, never missing ranges).
  options.max_output_bytes = kThinDeltaMaxOutputBytes;
  auto r = RunSubprocess(argv, options);
  if (!r.ok()) {
    return Status(Code::kUnsupported, "cannot run " + argv.front() + " (package " + package +
                                          "): " + r.status().message());
  }
  return r;
}

const ThinLvRecord* FindRow(const std::vector<ThinLvRecord>& rows, const std::string& name) {
  for (const ThinLvRecord& row : rows) {
    if (row.lv_name == name) return &row;
  }
  return nullptr;
}

// The thin-pool status line: "<start> <len> thin-pool <transaction> <used>/<total meta>
// <used>/<total data> <held metadata root|-> <rw|ro|out_of_data_space> ...", or "Fail".
Result<std::string> PoolStatus(const ThinPool& pool) {
  auto r = RunTool({"dmsetup", "status", pool.tpool_dm_name()}, kDmsetupTimeout, "dmsetup");
  if (!r.ok()) return r.status();
  if (r->exit_code != 0 || r->timed_out) {
    return Status(Code::kSource, "thin pool " + pool.full_name() +
                                     " is not active (dmsetup status " + pool.tpool_dm_name() +
                                     ": " + Describe(*r) +
                                     "); activate a thin "
                                     "LV of it, or the pool itself (lvchange -ay " +
                                     pool.full_name() + ")");
  }
  return Trim(r->out);
}

}  // namespace

Result<ThinPool> ThinPoolIn(const std::vector<ThinLvRecord>& rows, const std::string& vg,
                              const std::string& pool_lv) {
  const ThinLvRecord* row = FindRow(rows, pool_lv);
  if (row == nullptr)
    return Status(Code::kSource, "thin pool " + vg + "/" + pool_lv + " not found by lvs");
  if (row->segtype != "thin-pool") {
    return Status(Code::kSource,
                  vg + "/" + pool_lv + " is a " + row->segtype + " LV, not a thin pool");
  }
  if (row->chunk_bytes == 0) {
    return Status(Code::kSource, "lvs reports no chunk size for thin pool " + vg + "/" + pool_lv);
  }
  ThinPool pool;
  pool.vg_name = vg;
  pool.pool_lv = pool_lv;
  pool.chunk_bytes = row->chunk_bytes;
  return pool;
}

Result<std::string> DmDevicePath(const std::string& name) {
  std::string mapper = "/dev/mapper/" + name;
  struct stat st;
  if (::stat(mapper.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) return mapper;
  DIR* d = ::opendir("/sys/block");
  if (d != nullptr) {
    while (dirent* e = ::readdir(d)) {
      std::string dev = e->d_name;
      if (dev.rfind("dm-", 0) != 0) continue;
      std::ifstream in("/sys/block/" + dev + "/dm/name");
      std::string found;
      if (in && std::getline(in, found) && found == name) {
        ::closedir(d);
        std::string node = "/dev/" + dev;
        if (::stat(node.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) return node;
        return Status(Code::kSource, "device-mapper device " + name + " is " + dev + " but " +
                                         node + " does not exist");
      }
    }
    ::closedir(d);
  }
  return Status(Code::kSource,
                "device-mapper device " + name + " not found (is the thin pool active?)");
}

bool ThinLvRecord::has_tag(const std::string& tag) const {
  return std::find(tags.begin(), tags.end(), tag) != tags.end();
}

Result<std::vector<ThinLvRecord>> ListThinLvs(LvmControl* lvm, const std::string& vg) {
  auto r = lvm->Run(
      {"lvs", "-a", "--reportformat", "json", "--units", "b", "--nosuffix", "-o",
       "vg_name,lv_name,segtype,pool_lv,origin,thin_id,lv_attr,lv_tags,chunk_size,lv_size", vg},
      kLvmReportTimeout);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0 || r->timed_out) {
    return Status(Code::kSource, "lvm lvs " + vg + " failed (" + Describe(*r) + ")");
  }
  auto report = LvmReportRows(r->out, "lv");
  if (!report.ok()) return report.status().Wrap("lvm lvs " + vg);
  std::vector<ThinLvRecord> rows;
  for (const json& row : *report) {
    ThinLvRecord t;
    t.vg_name = LvmReportField(row, "vg_name");
    t.lv_name = LvmReportField(row, "lv_name");
    t.segtype = LvmReportField(row, "segtype");
    t.pool_lv = LvmReportField(row, "pool_lv");
    t.origin = LvmReportField(row, "origin");
    t.thin_id = LvmReportField(row, "thin_id");
    t.lv_attr = LvmReportField(row, "lv_attr");
    t.tags = SplitLvmTags(LvmReportField(row, "lv_tags"));
    t.chunk_bytes = LvmReportUnsigned(row, "chunk_size");
    t.size_bytes = LvmReportUnsigned(row, "lv_size");
    rows.push_back(std::move(t));
  }
  return rows;
}

std::string LvmDmName(const std::string& vg, const std::string& lv, const std::string& layer) {
  return DoubleDashes(vg) + "-" + DoubleDashes(lv) + (layer.empty() ? "" : "-" + layer);
}

std::string ThinPool::tpool_dm_name() const { return LvmDmName(vg_name, pool_lv, "tpool"); }
std::string ThinPool::tmeta_dm_name() const { return LvmDmName(vg_name, pool_lv + "_tmeta"); }

Result<ThinPool> FindThinPool(const std::string& vg, const std::string& pool_lv, LvmControl* lvm) {
  auto rows = ListThinLvs(lvm, vg);
  if (!rows.ok()) return rows.status();
  return ThinPoolIn(*rows, vg, pool_lv);
}

Result<ThinPoolUse> ThinPoolUsage(const ThinPool& pool) {
  auto status = PoolStatus(pool);
  if (!status.ok()) return status.status();
  std::istringstream in(*status);
  std::vector<std::string> tokens;
  for (std::string t; in >> t;) tokens.push_back(t);
  auto type = std::find(tokens.begin(), tokens.end(), "thin-pool");
  auto fraction = [](const std::string& used_total, double* percent) {
    unsigned long long used = 0, total = 0;
    char slash = 0;
    std::istringstream f(used_total);
    if (!(f >> used >> slash >> total) || slash != '/' || total == 0) return false;
    *percent = 100.0 * static_cast<double>(used) / static_cast<double>(total);
    return true;
  };
  ThinPoolUse use;
  // Past the type: transaction id, metadata used/total, data used/total (blocks).
  if (type == tokens.end() || tokens.end() - type < 4 || !fraction(*(type + 2), &use.metadata_percent) ||
      !fraction(*(type + 3), &use.data_percent)) {
    return Status(Code::kSource, "thin pool " + pool.full_name() + " reports no usable status (" +
                                     *status + "); the pool may have failed");
  }
  return use;
}

Result<bool> ThinPoolHoldsMetadataSnapshot(const ThinPool& pool) {
  auto status = PoolStatus(pool);
  if (!status.ok()) return status.status();
  std::istringstream in(*status);
  std::vector<std::string> tokens;
  for (std::string t; in >> t;) tokens.push_back(t);
  auto type = std::find(tokens.begin(), tokens.end(), "thin-pool");
  // Past the type: transaction id, metadata use, data use, held root.
  if (type == tokens.end() || tokens.end() - type < 5) {
    return Status(Code::kSource, "thin pool " + pool.full_name() + " reports no usable status (" +
                                     *status + "); the pool may have failed");
  }
  return *(type + 4) != "-";
}

Result<ThinMetadataSnapshot> ThinMetadataSnapshot::Reserve(const ThinPool& pool) {
  const std::string tpool = pool.tpool_dm_name();
  const std::string hint =
      "; if nothing else (a backup, thin_dump, thin_delta) is using it, release "
      "it with: dmsetup message " +
      tpool + " 0 release_metadata_snap";
  // No look at the pool's status first (one dmsetup less): the kernel refuses a second
  // metadata snapshot with EBUSY ("Pool metadata snapshot already exists"), and that one is
  // someone else's, left alone.
  auto r = RunTool({"dmsetup", "message", tpool, "0", "reserve_metadata_snap"}, kDmsetupTimeout,
                   "dmsetup");
  if (!r.ok()) return r.status();
  if (r->exit_code != 0 || r->timed_out) {
    bool busy = r->err.find("busy") != std::string::npos;
    if (busy) {
      return Status(Code::kBusy, "thin pool " + pool.full_name() +
                                     " already holds a metadata snapshot (dmsetup message: " +
                                     Describe(*r) + ")" + hint);
    }
    // Not active, or failed: the status says which.
    auto status = PoolStatus(pool);
    if (!status.ok()) return status.status();
    return Status(Code::kSource, "reserving a metadata snapshot of thin pool " + pool.full_name() +
                                     " failed (" + Describe(*r) + ")");
  }
  return ThinMetadataSnapshot(tpool);
}

ThinMetadataSnapshot::ThinMetadataSnapshot(ThinMetadataSnapshot&& other) noexcept
    : tpool_(std::move(other.tpool_)), held_(other.held_) {
  other.held_ = false;
}

ThinMetadataSnapshot& ThinMetadataSnapshot::operator=(ThinMetadataSnapshot&& other) noexcept {
  if (this != &other) {
    if (held_) {
      Status s = Release();
      if (!s.ok()) Error(s.message());
    }
    tpool_ = std::move(other.tpool_);
    held_ = other.held_;
    other.held_ = false;
  }
  return *this;
}

ThinMetadataSnapshot::~ThinMetadataSnapshot() {
  if (!held_) return;
  Status s = Release();
  if (!s.ok()) Error(s.message());
}

Status ThinMetadataSnapshot::Release() {
  if (!held_) return Status::Ok();
  held_ = false;
  auto r = RunTool({"dmsetup", "message", tpool_, "0", "release_metadata_snap"}, kDmsetupTimeout,
                   "dmsetup");
  if (!r.ok()) return r.status();
  if (r->exit_code != 0 || r->timed_out) {
    return Status(Code::kSource, "releasing the metadata snapshot of " + tpool_ + " failed (" +
                                     Describe(*r) + "); release it with: dmsetup message " +
                                     tpool_ + " 0 release_metadata_snap");
  }
  return Status::Ok();
}

Result<std::vector<ByteExtent>> ThinDeltaToByteExtents(const ThinDeltaReport& report,
                                                       uint64_t chunk_bytes) {
  if (chunk_bytes == 0 || report.data_block_sectors > UINT64_MAX / 512 ||
      report.data_block_sectors * 512 != chunk_bytes) {
    return Status(Code::kInternal, "thin_delta reports blocks of " +
                                       std::to_string(report.data_block_sectors) +
                                       " sectors, but the pool's chunk size is " +
                                       std::to_string(chunk_bytes) + " bytes");
  }
  std::vector<ByteExtent> extents;
  extents.reserve(report.changed.size());
  for (const ThinBlockRange& r : report.changed) {
    uint64_t end_blocks = r.begin_blocks + r.length_blocks;  // the parser checked it fits
    if (end_blocks > UINT64_MAX / chunk_bytes) {
      return Status(Code::kInternal, "thin_delta range at block " + std::to_string(r.begin_blocks) +
                                         " lies past 2^64 bytes");
    }
    extents.push_back({r.begin_blocks * chunk_bytes, r.length_blocks * chunk_bytes});
  }
  std::sort(extents.begin(), extents.end(), [](const ByteExtent& a, const ByteExtent& b) {
    return a.offset_bytes < b.offset_bytes;
  });
  std::vector<ByteExtent> merged;
  for (const ByteExtent& e : extents) {
    if (!merged.empty() && e.offset_bytes <= merged.back().end_bytes()) {
      uint64_t end = std::max(merged.back().end_bytes(), e.end_bytes());
      merged.back().length_bytes = end - merged.back().offset_bytes;
    } else {
      merged.push_back(e);
    }
  }
  return merged;
}

Result<std::vector<ByteExtent>> ThinChangedRangesById(const ThinPool& pool, uint64_t old_thin_id,
                                                      uint64_t new_thin_id) {
  auto tmeta = DmDevicePath(pool.tmeta_dm_name());
  if (!tmeta.ok())
    return tmeta.status().Wrap("the metadata device of thin pool " + pool.full_name());
  auto snap = ThinMetadataSnapshot::Reserve(pool);
  if (!snap.ok()) return snap.status();
  auto r = RunTool({"thin_delta", "-m", "--snap1", std::to_string(old_thin_id), "--snap2",
                    std::to_string(new_thin_id), *tmeta},
                   kThinDeltaTimeout, "thin-provisioning-tools");
  Status released = snap->Release();
  if (!r.ok()) return r.status().WithCleanup(released);
  const std::string what = "thin_delta of thin ids " + std::to_string(old_thin_id) + " and " +
                           std::to_string(new_thin_id) + " in pool " + pool.full_name();
  if (r->exit_code != 0 || r->timed_out) {
    return Status(Code::kSource, what + " failed (" + Describe(*r) + ")").WithCleanup(released);
  }
  HOTSNAP_RETURN_IF_ERROR(released);
  auto report = ParseThinDeltaXml(r->out);
  if (!report.ok()) return report.status().Wrap(what);
  if (report->left_id != old_thin_id || report->right_id != new_thin_id) {
    return Status(Code::kInternal, what + " compared thin ids " + std::to_string(report->left_id) +
                                       " and " + std::to_string(report->right_id));
  }
  auto extents = ThinDeltaToByteExtents(*report, pool.chunk_bytes);
  if (!extents.ok()) return extents.status().Wrap(what);
  return extents;
}

Result<std::vector<ByteExtent>> ThinChangedRanges(const std::string& vg, const std::string& old_lv,
                                                  const std::string& new_lv, LvmControl* lvm) {
  auto rows = ListThinLvs(lvm, vg);
  if (!rows.ok())
    return rows.status().Wrap("comparing " + vg + "/" + old_lv + " and " + vg + "/" + new_lv);
  return ThinChangedRangesIn(*rows, vg, old_lv, new_lv);
}

Result<std::vector<ByteExtent>> ThinChangedRangesIn(const std::vector<ThinLvRecord>& rows,
                                                    const std::string& vg, const std::string& old_lv,
                                                    const std::string& new_lv) {
  const ThinLvRecord* lvs[2] = {FindRow(rows, old_lv), FindRow(rows, new_lv)};
  const std::string* names[2] = {&old_lv, &new_lv};
  uint64_t ids[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    const std::string full = vg + "/" + *names[i];
    if (lvs[i] == nullptr)
      return Status(Code::kSource, "logical volume " + full + " not found by lvs");
    if (lvs[i]->segtype != "thin" || lvs[i]->thin_id.empty()) {
      return Status(Code::kSource, full + " is a " + lvs[i]->segtype + " LV, not a thin volume");
    }
    char* end = nullptr;
    ids[i] = std::strtoull(lvs[i]->thin_id.c_str(), &end, 10);
    if (end == lvs[i]->thin_id.c_str() || *end != '\0') {
      return Status(Code::kInternal, "lvs reports thin id '" + lvs[i]->thin_id + "' for " + full);
    }
  }
  if (lvs[0]->pool_lv != lvs[1]->pool_lv) {
    return Status(Code::kSource, vg + "/" + old_lv + " is in thin pool " + lvs[0]->pool_lv + ", " +
                                     vg + "/" + new_lv + " in " + lvs[1]->pool_lv +
                                     ": only volumes of one "
                                     "pool can be compared");
  }
  auto pool = ThinPoolIn(rows, vg, lvs[0]->pool_lv);
  if (!pool.ok()) return pool.status();
  auto extents = ThinChangedRangesById(*pool, ids[0], ids[1]);
  if (!extents.ok()) {
    return extents.status().Wrap("changes from " + vg + "/" + old_lv + " to " + vg + "/" + new_lv);
  }
  // The last chunk may reach past the LV's end (a size that is not a multiple of the chunk).
  const uint64_t size = lvs[1]->size_bytes;
  std::vector<ByteExtent> cut;
  for (const ByteExtent& e : *extents) {
    if (e.offset_bytes >= size) break;
    cut.push_back({e.offset_bytes, std::min(e.end_bytes(), size) - e.offset_bytes});
  }
  return cut;
}

}  // namespace hotsnap
