// BlkidProbe: the one owner of a libblkid probe. Move-only; blkid_free_probe on destruction.
// A probe set up with blkid_probe_set_device() does not own that descriptor: the caller keeps
// it open for the probe's lifetime.
#ifndef HOTSNAP_IO_BLKID_PROBE_H_
#define HOTSNAP_IO_BLKID_PROBE_H_

#include <blkid/blkid.h>

namespace hotsnap {

class BlkidProbe {
 public:
  BlkidProbe() = default;
  explicit BlkidProbe(blkid_probe probe) : probe_(probe) {}
  ~BlkidProbe() { Reset(); }
  BlkidProbe(BlkidProbe&& other) noexcept : probe_(other.probe_) { other.probe_ = nullptr; }
  BlkidProbe& operator=(BlkidProbe&& other) noexcept {
    if (this != &other) {
      Reset();
      probe_ = other.probe_;
      other.probe_ = nullptr;
    }
    return *this;
  }
  BlkidProbe(const BlkidProbe&) = delete;
  BlkidProbe& operator=(const BlkidProbe&) = delete;

  blkid_probe get() const { return probe_; }
  bool valid() const { return probe_ != nullptr; }

 private:
  void Reset() {
    if (probe_ != nullptr) blkid_free_probe(probe_);
    probe_ = nullptr;
  }
  blkid_probe probe_ = nullptr;
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_BLKID_PROBE_H_
