#include "agent/change_log.h"

#include <algorithm>

namespace hotsnap {

ChangeSourceChoice ChooseChangeSource(const ChangeLog* log, const Hash128& parent_image_hash,
                                      uint64_t device_bytes, const std::string& boot_id) {
  ChangeSourceChoice c;
  c.source = "hash compare";
  if (log == nullptr) {
    c.reason = "every used block read and hashed against the parent's chunk hashes (no change log for this source)";
    return c;
  }
  const ChangeLogToken& t = log->token;
  auto distrust = [&](const std::string& why) {
    c.reason = "every used block read and hashed against the parent's chunk hashes: the " + log->origin + " " + why;
    return c;
  };
  if (t.boot_id != boot_id) {
    return distrust("was recorded in boot " + t.boot_id + ", this is boot " + boot_id +
                    " (writes made in between are not in it)");
  }
  if (!(t.parent_image_hash == parent_image_hash)) {
    return distrust("starts at image xxh3-128:" + t.parent_image_hash.Hex() + ", not at the parent xxh3-128:" +
                    parent_image_hash.Hex());
  }
  if (t.lost_records != 0) {
    return distrust("lost " + std::to_string(t.lost_records) + " write records");
  }
  if (t.device_bytes != device_bytes) {
    return distrust("is of a device of " + std::to_string(t.device_bytes) + " bytes; the source has " +
                    std::to_string(device_bytes));
  }
  if (log->parent_used == nullptr || log->parent_used->device_bytes() != device_bytes) {
    return distrust("holds no used-block map of the parent's moment");
  }
  c.source = log->origin;
  c.use_log = true;
  c.reason = "changes since the parent, complete (this boot, that parent, none lost): only the chunks they "
             "touched, or whose used blocks changed, were read";
  return c;
}

std::vector<bool> UnchangedChunks(const ChangeLog& log, const UsedBlockMap& now, const ImageMetadata& meta) {
  const uint64_t chunks = meta.chunk_count();
  std::vector<bool> unchanged(chunks, true);
  for (const ByteExtent& e : log.changed) {
    if (e.length_bytes == 0 || e.offset_bytes >= meta.device_bytes) continue;
    uint64_t first = e.offset_bytes / meta.chunk_bytes;
    uint64_t last = std::min(meta.device_bytes, e.offset_bytes + e.length_bytes - 1) / meta.chunk_bytes;
    for (uint64_t c = first; c <= last && c < chunks; ++c) unchanged[c] = false;
  }
  std::vector<ByteExtent> a, b;
  for (uint64_t c = 0; c < chunks; ++c) {
    if (!unchanged[c]) continue;
    a.clear();
    b.clear();
    log.parent_used->UsedIn(c * meta.chunk_bytes, meta.ChunkLength(c), &a);
    now.UsedIn(c * meta.chunk_bytes, meta.ChunkLength(c), &b);
    if (a != b) unchanged[c] = false;
  }
  return unchanged;
}

}  // namespace hotsnap
