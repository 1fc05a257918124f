// ThinChangedRanges: which byte ranges of a thin volume differ between two thin volumes of one
// thin pool (typically two thin snapshots of one origin, taken at two moments), read from the
// pool's own metadata instead of from the data: the building block of incremental backups.
//
// How (each step's tool and the versions it was checked on: kernel-notes/thin-delta.md):
//   1. `lvs --reportformat json` names the pool of both LVs, their thin device ids and the
//      pool's chunk size (its data block).
//   2. A metadata snapshot is reserved on the live pool
//      (`dmsetup message VG-POOL-tpool 0 reserve_metadata_snap`; ThinMetadataSnapshot owns it;
//      the kernel refuses it, EBUSY, while another one is held).
//      The kernel commits the pool's metadata first, so every write completed before it is in
//      the snapshot.
//   3. `thin_delta -m --snap1 OLD_ID --snap2 NEW_ID /dev/mapper/VG-POOL_tmeta` compares the two
//      devices' mapping trees in that snapshot (thin_delta_xml.h parses what it prints).
//   4. The metadata snapshot is released, whatever happened in between.
//
// What counts as changed: every block (pool chunk) that is mapped to another pool block in NEW
// than in OLD, or mapped on one side only (a block discarded in NEW reads as zeros there now).
// A block rewritten with the bytes it held still counts: the answer is a superset of the bytes
// that differ, at chunk granularity, never a subset, as long as neither LV is written while it
// is compared (snapshots that are read-only or inactive).
//
// Needs root, device-mapper, `dmsetup` (lvm2) and `thin_delta` (thin-provisioning-tools), and
// the pool active (any thin LV of it active). Only one metadata snapshot can exist per pool;
// when someone else holds one the call fails (kBusy) and leaves it alone. Not safe to run
// concurrently on one pool (the second fails kBusy, no harm done).
#ifndef HOTSNAP_SNAPSHOT_THIN_DELTA_H_
#define HOTSNAP_SNAPSHOT_THIN_DELTA_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "fsmap/used_block_map.h"
#include "snapshot/lvm_control.h"
#include "snapshot/thin_delta_xml.h"

namespace hotsnap {

inline constexpr std::chrono::milliseconds kDmsetupTimeout{30000};
// thin_delta walks both mapping trees; on a large pool that takes a while.
inline constexpr std::chrono::milliseconds kThinDeltaTimeout{600000};
// The most of thin_delta's output read (bytes); more fails the call.
inline constexpr size_t kThinDeltaMaxOutputBytes = size_t{256} << 20;

struct ThinPool {
  std::string vg_name;
  std::string pool_lv;
  uint64_t chunk_bytes = 0;  // the pool's data block size, in bytes

  std::string full_name() const { return vg_name + "/" + pool_lv; }
  // Device-mapper names LVM gives the pool's layers: VG-POOL-tpool (the pool target, which
  // takes messages) and VG-POOL_tmeta (the metadata device); '-' inside names doubled.
  std::string tpool_dm_name() const;
  std::string tmeta_dm_name() const;
};

// One row of `lvs -a` with the thin fields LvRecord (lvm_control.h) lacks. Sizes in bytes.
struct ThinLvRecord {
  std::string vg_name;
  std::string lv_name;
  std::string segtype;  // "thin", "thin-pool", ...
  std::string pool_lv;  // thin LVs: their pool
  std::string origin;   // snapshots: what they were taken of
  std::string thin_id;  // thin LVs: the pool's device id (decimal), else empty
  std::string lv_attr;
  std::vector<std::string> tags;
  uint64_t chunk_bytes = 0;  // thin pools: the data block size
  uint64_t size_bytes = 0;

  std::string full_name() const { return vg_name + "/" + lv_name; }
  bool has_tag(const std::string& tag) const;
  bool active() const { return lv_attr.size() > 4 && lv_attr[4] == 'a'; }
};

// Every LV of `vg` (lvs -a, hidden ones included).
Result<std::vector<ThinLvRecord>> ListThinLvs(LvmControl* lvm, const std::string& vg);

// The device-mapper name LVM gives VG/LV (with `layer`, e.g. "tpool", appended as "-tpool").
std::string LvmDmName(const std::string& vg, const std::string& lv, const std::string& layer = "");

// The thin pool VG/POOL in `rows` (ListThinLvs of VG). kSource when it is missing or not a
// thin pool.
Result<ThinPool> ThinPoolIn(const std::vector<ThinLvRecord>& rows, const std::string& vg,
                            const std::string& pool_lv);

// The node of the device-mapper device `name`: /dev/mapper/NAME, or (without udev, where LVM
// may not have made that node) /dev/dm-N found through sysfs. kSource when there is none.
Result<std::string> DmDevicePath(const std::string& name);

// The thin pool VG/POOL as lvs reports it. kSource when it is missing or not a thin pool.
Result<ThinPool> FindThinPool(const std::string& vg, const std::string& pool_lv,
                              LvmControl* lvm = RealLvmControl());

// A reserved metadata snapshot of a live thin pool. Move-only. Release() (or the destructor,
// which logs a failure) sends release_metadata_snap; it is idempotent.
class ThinMetadataSnapshot {
 public:
  // kBusy when the pool already holds a metadata snapshot (someone else's: it is left alone;
  // the message says how to release it by hand), kSource when the pool is not active or the
  // message fails, kUnsupported without dmsetup.
  static Result<ThinMetadataSnapshot> Reserve(const ThinPool& pool);
  ThinMetadataSnapshot(ThinMetadataSnapshot&& other) noexcept;
  ThinMetadataSnapshot& operator=(ThinMetadataSnapshot&& other) noexcept;
  ThinMetadataSnapshot(const ThinMetadataSnapshot&) = delete;
  ThinMetadataSnapshot& operator=(const ThinMetadataSnapshot&) = delete;
  ~ThinMetadataSnapshot();

  Status Release();
  bool held() const { return held_; }

 private:
  explicit ThinMetadataSnapshot(std::string tpool) : tpool_(std::move(tpool)), held_(true) {}
  std::string tpool_;
  bool held_ = false;
};

// How full a live pool is, from its device-mapper status (one dmsetup, no lvs): what lvs
// reports as data_percent and metadata_percent. kSource when the pool is not active or failed.
struct ThinPoolUse {
  double data_percent = 0;
  double metadata_percent = 0;
};
Result<ThinPoolUse> ThinPoolUsage(const ThinPool& pool);

// Whether the pool holds a metadata snapshot now (the thin-pool status's held root), for
// checks and tests. kSource when the pool is not active.
Result<bool> ThinPoolHoldsMetadataSnapshot(const ThinPool& pool);

// The changed blocks of a report as sorted, merged byte ranges of the thin devices
// (begin * chunk_bytes, ...). kInternal when the report's block size is not chunk_bytes or a
// range does not fit in 64 bits of bytes.
Result<std::vector<ByteExtent>> ThinDeltaToByteExtents(const ThinDeltaReport& report,
                                                       uint64_t chunk_bytes);

// Steps 2-4 above for two thin device ids of `pool`: sorted, merged, in bytes, not clamped to
// any LV's size. Errors name the pool and quote the failing command's stderr; the metadata
// snapshot is released on every path (a failure to release is reported too).
Result<std::vector<ByteExtent>> ThinChangedRangesById(const ThinPool& pool, uint64_t old_thin_id,
                                                      uint64_t new_thin_id);

// The whole thing for two thin LVs VG/OLD_LV and VG/NEW_LV of one pool: the byte ranges of
// NEW_LV that may differ from OLD_LV, sorted and merged, cut at NEW_LV's size (the last chunk
// may reach past it). kSource when an LV is missing, not thin, or they are in different pools.
Result<std::vector<ByteExtent>> ThinChangedRanges(const std::string& vg, const std::string& old_lv,
                                                  const std::string& new_lv,
                                                  LvmControl* lvm = RealLvmControl());
// The same from `rows` (ListThinLvs of VG, just read), for a caller that needed the report
// anyway: no lvs of its own.
Result<std::vector<ByteExtent>> ThinChangedRangesIn(const std::vector<ThinLvRecord>& rows,
                                                    const std::string& vg, const std::string& old_lv,
                                                    const std::string& new_lv);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_THIN_DELTA_H_
