// A libext2fs I/O manager that reads a filesystem through a RangedReader (io/ranged_reader.h)
// instead of a file name, so the ext bitmaps inside an image can be read through the image's
// decoder (agent/image_used_map.h) without writing the filesystem anywhere.
//
// Read-only: opening for writing fails with EROFS, and so does every write. Byte offsets are
// the reader's (offset 0 is the filesystem's first byte).
#ifndef HOTSNAP_FSMAP_EXT_RANGED_IO_H_
#define HOTSNAP_FSMAP_EXT_RANGED_IO_H_

#include <string>

#include "io/ranged_reader.h"

struct struct_io_manager;  // <ext2fs/ext2_io.h>: io_manager is a pointer to it

namespace hotsnap {

// The manager (an io_manager); the same object on every call.
struct_io_manager* RangedIoManager();
// The name to pass to ext2fs_open2 with RangedIoManager() so that it reads `source`, which
// must outlive the filesystem handle.
std::string RangedIoName(RangedReader* source);

}  // namespace hotsnap

#endif  // HOTSNAP_FSMAP_EXT_RANGED_IO_H_
