#include "io/gpt_backup.h"

#include <libfdisk/libfdisk.h>

#include <memory>

namespace hotsnap {
namespace {

struct FdiskContextDeleter {
  void operator()(fdisk_context* cxt) const { fdisk_unref_context(cxt); }
};
using FdiskContext = std::unique_ptr<fdisk_context, FdiskContextDeleter>;

}  // namespace

Result<bool> MoveGptBackupToEnd(const std::string& path) {
  FdiskContext cxt(fdisk_new_context());
  if (cxt == nullptr) return Status(Code::kInternal, "libfdisk: cannot allocate a context");
  int rc = fdisk_assign_device(cxt.get(), path.c_str(), /*readonly=*/0);
  if (rc != 0) {
    return Status::FromErrno(Code::kTarget, -rc, "libfdisk cannot open " + path);
  }
  // Reading the table is what relocates a misplaced backup (in memory) and marks it changed.
  fdisk_label* gpt = fdisk_get_label(cxt.get(), "gpt");
  bool changed = fdisk_is_label(cxt.get(), GPT) && gpt != nullptr && fdisk_label_is_changed(gpt);
  if (changed) {
    rc = fdisk_write_disklabel(cxt.get());
    if (rc != 0) {
      (void)fdisk_deassign_device(cxt.get(), /*nosync=*/1);
      return Status::FromErrno(Code::kTarget, -rc,
                               "writing the relocated GPT backup header of " + path);
    }
  }
  // Closes with fsync (and asks the kernel to re-read a block device's table).
  rc = fdisk_deassign_device(cxt.get(), /*nosync=*/changed ? 0 : 1);
  if (rc != 0 && changed) {
    return Status::FromErrno(Code::kTarget, -rc, "flushing the GPT of " + path);
  }
  return changed;
}

}  // namespace hotsnap
