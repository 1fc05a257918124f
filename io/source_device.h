// SourceDevice: an open, read-only source (block device or regular file) and its geometry.
#ifndef HOTSNAP_IO_SOURCE_DEVICE_H_
#define HOTSNAP_IO_SOURCE_DEVICE_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

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
  std::string type;  // "ext4", "xfs", ... or "" when libblkid finds nothing (or is unsure)
  std::string uuid;
  std::string label;
  // libblkid found more than one signature it cannot rank (e.g. an ext4 superblock and a FAT
  // boot sector): which one is live is unknown, so type/uuid/label stay "". `candidates`
  // lists every signature type found, in probe order.
  bool ambiguous = false;
  std::vector<std::string> candidates;
};
// Asks libblkid's superblock chain what is on the source. Opens its own buffered descriptor
// (libblkid's reads are not O_DIRECT-aligned). Never fails: an unreadable probe is "".
FilesystemProbe ProbeFilesystem(const std::string& path);
// The same for bytes [offset_bytes, offset_bytes + size_bytes) of the open `fd` (a
// partition's range; size_bytes 0 means to the end). `fd` is only read, never closed.
FilesystemProbe ProbeFilesystemAt(int fd, uint64_t offset_bytes, uint64_t size_bytes);
// "ext4 (UUID ...) labelled 'x'", "signatures of ext4 and vfat (ambiguous)", or "" for
// nothing: the words a message uses to say what a device or partition holds.
std::string DescribeFilesystem(const FilesystemProbe& fs);

// The logical sector size and size of a block device, or a regular file's size.
Status QueryGeometry(int fd, const std::string& path, bool* is_block, uint64_t* size_bytes,
                     uint32_t* logical_sector_bytes);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_SOURCE_DEVICE_H_
