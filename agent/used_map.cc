#include "agent/used_map.h"

#include <fcntl.h>

#include <cerrno>

#include "base/log.h"
#include "base/unique_fd.h"

namespace hotsnap {

Result<UsedBlockMap> MapUsedBlocks(const SourceDevice& source, bool all_blocks, bool announce) {
  if (all_blocks) return UsedBlockMap::AllBlocks(source.size_bytes);
  // Buffered: the map's small metadata reads need no O_DIRECT alignment.
  UniqueFd fd(::open(source.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(Code::kSource, errno, "opening " + source.path);
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  std::string notice;
  auto map = ComputeUsedBlockMap(fd.get(), source.path, source.size_bytes, &notice);
  if (!map.ok()) {
    return map.status().Wrap("reading the filesystem's free-space records (use --all-blocks to "
                             "read every block instead)");
  }
  if (announce && !notice.empty()) Notice(notice);
  return map;
}

std::string DescribeMap(const UsedBlockMap& map) {
  if (map.all_blocks()) return "all blocks";
  if (map.fs_type() == "xfs") return "xfs bnobt";
  return map.fs_type() + " bitmap";
}

}  // namespace hotsnap
