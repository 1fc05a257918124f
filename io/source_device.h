// SourceDevice: an open, read-only source (block device or regular file) and its geometry.
#ifndef HOTSNAP_IO_SOURCE_DEVICE_H_
#define HOTSNAP_IO_SOURCE_DEVICE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/status.h"
#include "base/unique_fd.h"

namespace hotsnap {

struct SourceDevice {
  UniqueFd fd;
  std::string path;
  bool is_block_device = false;
  bool direct_io = false;            // opened with O_DIRECT
  uint64_t size_bytes = 0;
  uint32_t logical_sector_bytes = 512;
  uint32_t dio_alignment_bytes = 512;  // memory and offset alignment O_DIRECT needs
};

// Opens `path` read-only, with O_DIRECT when the filesystem/device supports it. Refuses
// (kSource) a directory, a character device, a FIFO, or anything that is not a block
// device or regular file, naming the path and what it is.
Result<SourceDevice> OpenSource(const std::string& path);

struct FilesystemProbe {
  std::string type;   // "ext4", "xfs", ... or "" when libblkid finds nothing
  std::string uuid;
  std::string label;
};
// Asks libblkid what is on the source. Opens its own buffered descriptor (libblkid's
// reads are not O_DIRECT-aligned). Never fails: an unreadable probe is "".
FilesystemProbe ProbeFilesystem(const std::string& path);

// The logical sector size and size of a block device, or a regular file's size.
Status QueryGeometry(int fd, const std::string& path, bool* is_block, uint64_t* size_bytes,
                     uint32_t* logical_sector_bytes);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_SOURCE_DEVICE_H_
