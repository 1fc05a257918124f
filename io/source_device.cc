#include "io/source_device.h"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cerrno>

#include "io/blkid_probe.h"

namespace hotsnap {
namespace {

const char* KindOf(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a block device or regular file";
}

// A probe of [offset_bytes, offset_bytes + size_bytes) of `fd` with only the superblock chain
// (type, UUID, label); invalid if libblkid cannot set it up.
BlkidProbe NewSuperblockProbe(int fd, uint64_t offset_bytes, uint64_t size_bytes) {
  BlkidProbe pr(blkid_new_probe());
  if (!pr.valid() || blkid_probe_set_device(pr.get(), fd, static_cast<blkid_loff_t>(offset_bytes),
                                            static_cast<blkid_loff_t>(size_bytes)) != 0) {
    return BlkidProbe();
  }
  blkid_probe_enable_superblocks(pr.get(), 1);
  blkid_probe_set_superblocks_flags(pr.get(),
                                    BLKID_SUBLKS_TYPE | BLKID_SUBLKS_UUID | BLKID_SUBLKS_LABEL);
  blkid_probe_enable_partitions(pr.get(), 0);
  return pr;
}

}  // namespace

Status QueryGeometry(int fd, const std::string& path, bool* is_block, uint64_t* size_bytes,
                     uint32_t* logical_sector_bytes) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return Status::FromErrno(Code::kSource, errno, "stat " + path);
  if (S_ISBLK(st.st_mode)) {
    *is_block = true;
    uint64_t bytes = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) != 0) {
      return Status::FromErrno(Code::kSource, errno, "BLKGETSIZE64 on " + path);
    }
    int sector = 0;
    if (::ioctl(fd, BLKSSZGET, &sector) != 0) {
      return Status::FromErrno(Code::kSource, errno, "BLKSSZGET on " + path);
    }
    *size_bytes = bytes;
    *logical_sector_bytes = static_cast<uint32_t>(sector);
    return Status::Ok();
  }
  if (S_ISREG(st.st_mode)) {
    *is_block = false;
    *size_bytes = static_cast<uint64_t>(st.st_size);
    *logical_sector_bytes = 512;
    return Status::Ok();
  }
  return Status(Code::kSource, path + " is " + KindOf(st.st_mode) +
                                   "; a source must be a block device or a regular file");
}

Result<SourceDevice> OpenSource(const std::string& path) {
  SourceDevice src;
  src.path = path;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(Code::kSource, errno, "source " + path);
  if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode)) {
    return Status(Code::kSource, path + " is " + std::string(KindOf(st.st_mode)) +
                                     "; a source must be a block device or a regular file");
  }
  src.fd.Reset(::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC));
  if (src.fd.valid()) {
    src.direct_io = true;
  } else if (errno == EINVAL) {
    // Some filesystems (tmpfs) refuse O_DIRECT; a regular file still reads fine buffered.
    src.fd.Reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  }
  if (!src.fd.valid()) return Status::FromErrno(Code::kSource, errno, "opening source " + path);
  HOTSNAP_RETURN_IF_ERROR(QueryGeometry(src.fd.get(), path, &src.is_block_device, &src.size_bytes,
                                        &src.logical_sector_bytes));
  src.dio_alignment_bytes = src.logical_sector_bytes;
#ifdef STATX_DIOALIGN
  struct statx sx;
  if (src.direct_io && ::statx(src.fd.get(), "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
      (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align > src.dio_alignment_bytes) {
    src.dio_alignment_bytes = sx.stx_dio_offset_align;
  }
#endif
  if (src.size_bytes == 0) return Status(Code::kSource, "source " + path + " is empty (0 bytes)");
  return src;
}

FilesystemProbe ProbeFilesystem(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return FilesystemProbe();
  return ProbeFilesystemAt(fd.get(), 0, 0);
}

FilesystemProbe ProbeFilesystemAt(int fd, uint64_t offset_bytes, uint64_t size_bytes) {
  FilesystemProbe result;
  BlkidProbe pr = NewSuperblockProbe(fd, offset_bytes, size_bytes);
  if (!pr.valid()) return result;
  int rc = blkid_do_safeprobe(pr.get());
  if (rc == 0) {
    const char* value = nullptr;
    if (blkid_probe_lookup_value(pr.get(), "TYPE", &value, nullptr) == 0) result.type = value;
    if (blkid_probe_lookup_value(pr.get(), "UUID", &value, nullptr) == 0) result.uuid = value;
    if (blkid_probe_lookup_value(pr.get(), "LABEL", &value, nullptr) == 0) result.label = value;
  } else if (rc == -2) {
    // Ambiguous. The low-level probe steps through every matching prober in turn (as
    // wipefs does), which names what was found.
    result.ambiguous = true;
    BlkidProbe all = NewSuperblockProbe(fd, offset_bytes, size_bytes);
    while (all.valid() && blkid_do_probe(all.get()) == 0) {
      const char* value = nullptr;
      if (blkid_probe_lookup_value(all.get(), "TYPE", &value, nullptr) == 0) {
        result.candidates.push_back(value);
      }
    }
  }
  return result;
}

std::string DescribeFilesystem(const FilesystemProbe& fs) {
  if (fs.ambiguous) {
    std::string types;
    for (size_t i = 0; i < fs.candidates.size(); ++i) {
      if (i > 0) types += i + 1 == fs.candidates.size() ? " and " : ", ";
      types += fs.candidates[i];
    }
    return "signatures of more than one kind" + (types.empty() ? "" : " (" + types + ")") +
           ", so libblkid cannot tell which is live";
  }
  if (fs.type.empty()) return "";
  return fs.type + (fs.uuid.empty() ? "" : " (UUID " + fs.uuid + ")") +
         (fs.label.empty() ? "" : " labelled '" + fs.label + "'");
}

}  // namespace hotsnap
