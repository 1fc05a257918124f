// ConsistentView: a point-in-time view of a source device that the backup reads.
//
// Each snapshot mode (none, lvm, lvm-thin, freeze, tracked) provides one. The backup job
// opens the view, reads `device_path()` (the source itself, or a snapshot device), calls
// Check() between chunks (a view can fail while it is read: an LVM snapshot whose
// copy-on-write area fills up, a freeze past its deadline), and finally Release()s it.
// Release() returns what went wrong while cleaning up; the destructor is the backstop
// that releases silently if Release() was never called. Move-only owners only.
#ifndef HOTSNAP_SNAPSHOT_VIEW_H_
#define HOTSNAP_SNAPSHOT_VIEW_H_

#include <string>

#include "base/status.h"

namespace hotsnap {

class ConsistentView {
 public:
  virtual ~ConsistentView() = default;
  // The block device (or file) to read: the point-in-time view.
  virtual const std::string& device_path() const = 0;
  // The mode name recorded in the image metadata ("none", "lvm", ...).
  virtual std::string mode() const = 0;
  // Called periodically while reading; a non-OK status aborts the backup (e.g. a
  // snapshot that was invalidated). Must be cheap or rate-limit itself.
  virtual Status Check() { return Status::Ok(); }
  // Ends the view (removes the snapshot, thaws, ...). Idempotent.
  virtual Status Release() = 0;
};

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_VIEW_H_
