// LoopAttachment: a file attached to a loop device read-only, detached on destruction.
//
// The device is configured atomically (LOOP_CONFIGURE, Linux 5.8+; LOOP_SET_FD +
// LOOP_SET_STATUS64 before that) with LO_FLAGS_READ_ONLY, so nothing mounted on it can
// write, and LO_FLAGS_AUTOCLEAR, so the kernel detaches it by itself when the last user
// (our descriptor, a filesystem mounted on it) lets go — a crashed server then leaves no
// loop device behind once its filesystem is unmounted.
//
// Direct I/O (LoopTuning::direct_io): the device reads its backing file with O_DIRECT,
// asynchronously. For a file served through FUSE that matters twice over: the bytes are
// not cached a second time in the FUSE file's page cache (the filesystem on the device
// caches them already), and one device request becomes a few large FUSE reads sent at
// once instead of a chain of page-cache readaheads of 128 KiB each. Kernels that cannot
// do it on the file get a buffered device (direct_io() then says false).
//
// Move-only. Detach() reports failure; the destructor is the backstop.
#ifndef HOTSNAP_MOUNT_LOOP_ATTACHMENT_H_
#define HOTSNAP_MOUNT_LOOP_ATTACHMENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

namespace hotsnap {

struct LoopTuning {
  bool direct_io = true;  // see above; falls back to buffered
  // The device's readahead in bytes (BLKRASET; 0 keeps the kernel's 128 KiB), which the
  // filesystem on it uses for its files. 16 MiB keeps four 4 MiB chunks in flight during a
  // sequential read, so their decoding overlaps; random reads do not trigger it.
  uint64_t readahead_bytes = 16ull << 20;
  // The window of the file the device shows, in bytes (lo_offset, lo_sizelimit): one
  // partition of a whole-disk image. 0 and 0: the whole file.
  uint64_t offset_bytes = 0;
  uint64_t size_limit_bytes = 0;
};

class LoopAttachment {
 public:
  // Attaches `file` to a free loop device with logical block size `block_bytes`
  // (the image's logical sector size; 0 keeps the default of 512).
  static Result<LoopAttachment> Attach(const std::string& file, uint32_t block_bytes,
                                       const LoopTuning& tuning = {});

  LoopAttachment() = default;
  ~LoopAttachment();
  LoopAttachment(LoopAttachment&& other) noexcept;
  LoopAttachment& operator=(LoopAttachment&& other) noexcept;
  LoopAttachment(const LoopAttachment&) = delete;
  LoopAttachment& operator=(const LoopAttachment&) = delete;

  const std::string& device() const { return device_; }
  bool attached() const { return fd_.valid(); }
  // Whether the kernel reads the backing file with direct I/O (from sysfs).
  bool direct_io() const;

  // Asks the kernel to detach (at once if nothing else uses the device, else when the last
  // user closes it), closes our descriptor, and waits up to `wait_seconds` for the device
  // to let go of its backing file. kTarget if it is still attached after that.
  Status Detach(int wait_seconds = 10);

 private:
  std::string device_;
  std::string backing_file_;
  UniqueFd fd_;
};

// The backing file of loop device `device` (e.g. "/dev/loop3"), or "" if it has none.
std::string LoopBackingFile(const std::string& device);

// Detaches loop device `device` if it is still backed by `expected_backing_file`
// (never touches a device someone else has reused). OK if it is already free.
Status DetachLoopIfBackedBy(const std::string& device, const std::string& expected_backing_file,
                            int wait_seconds);

// Every attached loop device whose backing file path starts with `prefix`.
std::vector<std::string> LoopDevicesBackedUnder(const std::string& prefix);

}  // namespace hotsnap

#endif  // HOTSNAP_MOUNT_LOOP_ATTACHMENT_H_
