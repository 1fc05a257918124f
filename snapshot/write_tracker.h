// WriteTracker: records every write queued to a block device, through the kernel's
// block:block_bio_queue tracepoint read with perf_event_open — an interface of every stock
// kernel (no module; blktrace needs debugfs relay files, which kernel lockdown refuses).
//
// One perf event per CPU online at the start, each with a kernel-side filter on the whole disk's
// device number (the tracepoint reports the disk and absolute sectors, after partition remapping),
// sampled on every event (PERF_SAMPLE_RAW) into a 2 MiB ring per CPU. Drain() reads the
// rings and reports every write (any request that is not a read and moves data: writes,
// discards, write-zeroes) that overlaps the tracked device, in bytes relative to it.
// Records the kernel could not store (ring full) are counted: after a loss the caller must
// treat the whole device as written. The ring's PERF_RECORD_LOST marker arrives only with
// the next record that fits — never, if nothing writes while frozen — so the count is read
// from each event (read_format PERF_FORMAT_LOST, Linux 6.0+); on older kernels a ring found
// more than half full is taken as a possible loss.
// The kernel has no event on a CPU brought online later (perf refuses events on offline
// CPUs), so Drain() fails (kSource) once the online CPUs differ from those at the start.
// I/O that bypasses the block layer's bio submission (SG_IO and NVMe passthrough, DAX) is
// never seen: see kernel-notes/block-bio-queue.md.
// Needs root (CAP_PERFMON/CAP_SYS_ADMIN) and tracefs (mounted at /sys/kernel/tracing if
// it is not). See kernel-notes/block-bio-queue.md.
#ifndef HOTSNAP_SNAPSHOT_WRITE_TRACKER_H_
#define HOTSNAP_SNAPSHOT_WRITE_TRACKER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "snapshot/cpu_list.h"

namespace hotsnap {

class WriteTracker {
 public:
  // Starts tracking writes to `device` (a whole disk or a partition) of `device_bytes`.
  // `cpu_info` (not owned, outlives the tracker) says which CPUs are online.
  static Result<std::unique_ptr<WriteTracker>> Start(const std::string& device,
                                                     uint64_t device_bytes,
                                                     CpuInfo* cpu_info = RealCpuInfo());
  ~WriteTracker();
  WriteTracker(const WriteTracker&) = delete;
  WriteTracker& operator=(const WriteTracker&) = delete;

  // Calls on_write(offset_bytes, length_bytes) for each write recorded since the last
  // Drain(), clipped to the device. Returns the number of records lost since then. Fails
  // (kSource) if the online CPUs are no longer those tracked since Start().
  Result<uint64_t> Drain(const std::function<void(uint64_t, uint64_t)>& on_write);

 private:
  struct Ring {
    UniqueFd fd;
    void* base = nullptr;
    size_t bytes = 0;  // mapping size: 1 metadata page + data pages
    uint64_t lost_seen = 0;  // PERF_FORMAT_LOST count at the last drain
  };
  struct Layout {
    uint32_t dev_offset = 8, sector_offset = 16, nr_sector_offset = 24, rwbs_offset = 28;
    uint32_t rwbs_size = 8;
  };
  WriteTracker() = default;
  void DrainRing(Ring* ring, const std::function<void(uint64_t, uint64_t)>& on_write, uint64_t* lost);
  void OnSample(const uint8_t* raw, uint32_t size, const std::function<void(uint64_t, uint64_t)>& on_write);

  std::vector<Ring> rings_;
  std::vector<int> cpus_;  // the CPU of each ring, ascending
  CpuInfo* cpu_info_ = nullptr;
  bool count_lost_ = false;  // events opened with PERF_FORMAT_LOST (Linux 6.0+)
  Layout layout_;
  uint32_t disk_dev_ = 0;        // kernel encoding: major << 20 | minor
  uint64_t start_bytes_ = 0;     // the device's first byte on the disk (partitions)
  uint64_t device_bytes_ = 0;
  std::vector<uint8_t> scratch_;  // a record that wraps around the ring's end
};

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_WRITE_TRACKER_H_
