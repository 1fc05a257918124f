// LvmControl: the one door to LVM. Every LVM action hotsnap takes is an `lvm` command
// (lvs, vgs, lvcreate, lvchange, lvremove) run with a timeout; reports are requested with
// `--reportformat json --units b --nosuffix` and parsed here, never human-formatted output.
//
// The interface exists so tests can replace the real commands (canned reports, a
// command that fails "in use", a timeout). The real implementation is stateless and
// thread-compatible; RealLvmControl() returns a process-wide instance.
#ifndef HOTSNAP_SNAPSHOT_LVM_CONTROL_H_
#define HOTSNAP_SNAPSHOT_LVM_CONTROL_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/status.h"
#include "base/subprocess.h"

namespace hotsnap {

class LvmControl {
 public:
  virtual ~LvmControl() = default;
  // Runs `lvm ARGS...`. Fails only when the command could not be started; a non-zero
  // exit or a timeout is in the result.
  virtual Result<SubprocessResult> Run(const std::vector<std::string>& args,
                                       std::chrono::milliseconds timeout) = 0;
};

LvmControl* RealLvmControl();

// Timeouts for LVM commands. lvcreate/lvremove suspend the origin (which flushes and
// freezes its filesystem), which can take long under heavy write load.
inline constexpr std::chrono::milliseconds kLvmReportTimeout{30000};
inline constexpr std::chrono::milliseconds kLvmChangeTimeout{120000};

// One row of `lvs`. Sizes in bytes; percentages 0-100, or nullopt when LVM reports none.
struct LvRecord {
  std::string vg_name;
  std::string lv_name;
  std::string lv_path;      // /dev/VG/LV (empty for hidden LVs)
  std::string lv_attr;      // e.g. "swi-a-s---"; [0] volume type, [4] state
  std::string segtype;      // "linear", "thin", "snapshot", "thin-pool", ...
  std::string pool_lv;      // thin LVs: the pool's name
  std::string origin;       // snapshots: the origin's name
  std::vector<std::string> tags;
  uint64_t size_bytes = 0;
  int kernel_major = -1;    // -1 when not active
  int kernel_minor = -1;
  std::optional<double> data_percent;
  std::optional<double> metadata_percent;

  std::string full_name() const { return vg_name + "/" + lv_name; }
  bool has_tag(const std::string& tag) const;
  bool is_thin() const { return segtype == "thin"; }
  // A classic snapshot the kernel invalidated (COW area full).
  bool is_invalid_snapshot() const { return lv_attr.size() > 4 && lv_attr[4] == 'I'; }
};

struct VgRecord {
  std::string vg_name;
  uint64_t free_bytes = 0;
  uint64_t extent_bytes = 0;
};

// The fields ListLvs asks for (`-o`).
extern const char kLvFields[];

// Parses the JSON of `lvs --reportformat json --units b --nosuffix -o kLvFields`.
Result<std::vector<LvRecord>> ParseLvsReport(const std::string& json);
// Parses the JSON of `vgs --reportformat json --units b --nosuffix -o vg_name,vg_free,vg_extent_size`.
Result<std::vector<VgRecord>> ParseVgsReport(const std::string& json);

// `lvs -a` for `names` (VG or VG/LV; empty: every LV in every VG).
Result<std::vector<LvRecord>> ListLvs(LvmControl* lvm, const std::vector<std::string>& names = {});
Result<VgRecord> GetVg(LvmControl* lvm, const std::string& vg_name);

// Runs an LVM command that changes something; a non-zero exit or a timeout becomes an
// error (kSource) quoting lvm's stderr, prefixed with `what`.
Status RunLvmChange(LvmControl* lvm, const std::vector<std::string>& args, const std::string& what,
                    std::chrono::milliseconds timeout = kLvmChangeTimeout);

// Removes VG/LV (lvremove -f). An LV still "in use" (open, e.g. by a reader that is just
// closing it, or udev probing it) is retried for up to `retry_for`. An LV that does not
// exist (any more) counts as removed.
Status RemoveLv(LvmControl* lvm, const std::string& full_name,
                std::chrono::milliseconds retry_for = std::chrono::milliseconds(10000));

// Whether LVM can work here at all: the `lvm` command exists and the kernel has
// device-mapper (/dev/mapper/control).
bool LvmAvailable();

// The LV whose active device is the block device at `path` (any alias: /dev/VG/LV,
// /dev/mapper/..., /dev/dm-N). nullopt when `path` is not an LVM logical volume; asks
// LVM only when sysfs says the device is an LVM one. `listed` (may be null) gets the whole
// `lvs -a` report it read (left empty when it did not ask), so a caller that needs other LVs
// too (the pool, leftovers) does not run lvs again: under emulation each lvs costs a second.
Result<std::optional<LvRecord>> FindLogicalVolume(LvmControl* lvm, const std::string& path,
                                                  std::vector<LvRecord>* listed = nullptr);

// The row of VG/LV in `lvs`, or null.
const LvRecord* FindLvRow(const std::vector<LvRecord>& lvs, const std::string& vg,
                          const std::string& lv);

// "4.00 MiB": sizes in messages.
std::string FormatMiB(uint64_t bytes);

// Reading lvm2's JSON reports (`--reportformat json`): the rows of the first table named
// `table` ("lv", "vg"; kInternal if `text` is not a report), a row's field as a string ("" if
// absent), as an unsigned number (0 if absent), and an lv_tags value split at its commas.
Result<nlohmann::json> LvmReportRows(const std::string& text, const char* table);
std::string LvmReportField(const nlohmann::json& row, const char* name);
uint64_t LvmReportUnsigned(const nlohmann::json& row, const char* name);
std::vector<std::string> SplitLvmTags(const std::string& s);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_LVM_CONTROL_H_
