// Pure parsers for the kernel's mount and swap tables (/proc/self/mountinfo, /proc/swaps).
//
// They take the file's text and do no I/O, so tests feed them literal text. Paths in both
// tables are returned unescaped: the kernel writes space, tab, newline and backslash as
// three-digit octal escapes ("\040"), which are decoded here.
#ifndef HOTSNAP_SNAPSHOT_PROC_TABLES_H_
#define HOTSNAP_SNAPSHOT_PROC_TABLES_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hotsnap {

// One line of /proc/<pid>/mountinfo (see proc(5)):
//   36 35 98:0 /mnt1 /mnt/parent rw,noatime master:1 - ext3 /dev/root rw,errors=continue
struct MountInfoEntry {
  int mount_id = 0;
  int parent_id = 0;
  unsigned major = 0;  // st_dev of the mounted filesystem's superblock
  unsigned minor = 0;
  std::string root;                          // path of the mount's root inside the filesystem
  std::string mount_point;                   // unescaped
  std::string mount_options;                 // per-mount options, e.g. "rw,relatime"
  std::vector<std::string> optional_fields;  // e.g. "shared:1", "master:2"; may be empty
  std::string fs_type;                       // e.g. "ext4"; "fuse.sshfs" keeps its subtype
  std::string source;                        // unescaped; "none" or "" when the fs has none
  std::string super_options;                 // superblock options, e.g. "rw,errors=remount-ro"

  // True only when the per-mount options say "rw" and the superblock is not read-only: a
  // read-only bind of a writable superblock cannot be written through this mount, and a
  // superblock that went read-only (errors=remount-ro) cannot be written through any.
  bool read_write() const;
};

// One line of /proc/swaps:  "/dev/loop3  partition  1048572  0  -2"
struct SwapEntry {
  std::string path;  // unescaped; may end in " (deleted)" for a removed swap file
  std::string type;  // "partition" or "file"
  uint64_t size_kib = 0;
  uint64_t used_kib = 0;
  int priority = 0;
};

// Decodes the kernel's "\ooo" octal escapes; any other backslash is kept as is.
std::string UnescapeOctal(std::string_view text);

// True when `options` (comma-separated) contains exactly the option `name`.
bool HasOption(std::string_view options, std::string_view name);

// Lines that do not parse (too few fields, no " - " separator, bad numbers) are skipped:
// the kernel's format is stable, and one odd line must not hide the others.
std::vector<MountInfoEntry> ParseMountInfo(std::string_view text);

// The header line ("Filename Type Size Used Priority") and malformed lines are skipped.
std::vector<SwapEntry> ParseSwaps(std::string_view text);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_PROC_TABLES_H_
