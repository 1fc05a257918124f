#include "fsmap/xfs_used_blocks.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "fsmap/pread_source.h"
#include "fsmap/used_block_map_builder.h"
#include "fsmap/xfs_log.h"
#include "fsmap/xfs_ondisk.h"

namespace hotsnap {
namespace {

using namespace xfs_ondisk;  // NOLINT: the on-disk constants read best unqualified here

using Uuid = std::array<uint8_t, kUuidBytes>;

std::string Hex32(uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

struct Superblock {
  uint32_t block_bytes = 0;
  uint32_t sect_bytes = 0;
  uint64_t data_blocks = 0;
  uint32_t ag_blocks = 0;
  uint32_t ag_count = 0;
  uint32_t ag_block_log = 0;
  uint64_t log_start = 0;   // fsblock (AG number << ag_block_log | AG block); 0 = external
  uint32_t log_blocks = 0;  // filesystem blocks
  bool v5 = false;
  bool in_progress = false;
  bool needs_repair = false;
  Uuid meta_uuid{};  // the UUID stamped in v5 metadata blocks
  Uuid uuid{};       // sb_uuid, stamped in log records
};

// Decodes and checks the superblock; the returned text is empty if it is sane, else why not.
std::string ParseSuperblock(const uint8_t* p, Superblock* sb) {
  uint16_t version = Be16(p + sb::kVersionOff) & sb::kVersionMask;
  if (version != 4 && version != 5) return "unsupported version " + std::to_string(version);
  sb->v5 = version == 5;
  sb->block_bytes = Be32(p + sb::kBlockSizeOff);
  sb->sect_bytes = Be16(p + sb::kSectSizeOff);
  sb->data_blocks = Be64(p + sb::kDataBlocksOff);
  sb->ag_blocks = Be32(p + sb::kAgBlocksOff);
  sb->ag_count = Be32(p + sb::kAgCountOff);
  sb->ag_block_log = p[sb::kAgBlockLogOff];
  sb->log_start = Be64(p + sb::kLogStartOff);
  sb->log_blocks = Be32(p + sb::kLogBlocksOff);
  std::memcpy(sb->uuid.data(), p + sb::kUuidOff, kUuidBytes);
  sb->in_progress = p[sb::kInProgressOff] != 0;
  uint32_t incompat = sb->v5 ? Be32(p + sb::kIncompatOff) : 0;
  sb->needs_repair = (incompat & sb::kIncompatNeedsRepair) != 0;
  size_t uuid_off = (incompat & sb::kIncompatMetaUuid) ? sb::kMetaUuidOff : sb::kUuidOff;
  std::memcpy(sb->meta_uuid.data(), p + uuid_off, kUuidBytes);

  if (!IsPowerOfTwo(sb->block_bytes) || sb->block_bytes < 512 || sb->block_bytes > 65536 ||
      sb->block_bytes != 1u << p[sb::kBlockLogOff]) {
    return "bad block size " + std::to_string(sb->block_bytes);
  }
  if (!IsPowerOfTwo(sb->sect_bytes) || sb->sect_bytes < 512 || sb->sect_bytes > 32768 ||
      sb->sect_bytes > sb->block_bytes || sb->sect_bytes != 1u << p[sb::kSectLogOff]) {
    return "bad sector size " + std::to_string(sb->sect_bytes);
  }
  // The AG headers (four sectors) must fit in the AG; agblklog is log2 rounded up.
  uint32_t ag_log = p[sb::kAgBlockLogOff];
  if (sb->ag_blocks < 4 || ag_log > 31 || (uint64_t{1} << ag_log) < sb->ag_blocks ||
      (ag_log > 0 && (uint64_t{1} << (ag_log - 1)) >= sb->ag_blocks)) {
    return "bad AG size " + std::to_string(sb->ag_blocks) + " blocks";
  }
  if (sb->ag_count == 0 || sb->data_blocks == 0 ||
      sb->data_blocks > uint64_t{sb->ag_count} * sb->ag_blocks ||
      sb->data_blocks <= uint64_t{sb->ag_count - 1} * sb->ag_blocks) {
    return "AG count " + std::to_string(sb->ag_count) + " does not match " +
           std::to_string(sb->data_blocks) + " data blocks";
  }
  return "";
}

struct Agf {
  uint32_t length = 0;
  uint32_t bno_root = 0;
  uint32_t bno_levels = 0;
  uint32_t fl_first = 0;
  uint32_t fl_last = 0;
  uint32_t fl_count = 0;
  uint32_t free_blocks = 0;
};

// Turns one AG's free extents, arriving in ascending order, into used ranges for the
// builder. The AGFL blocks (a short sorted list) are merged in as one-block free extents.
class AgFreeMerger {
 public:
  AgFreeMerger(uint64_t ag_first_block, uint32_t ag_length, std::vector<uint32_t> agfl,
               UsedBlockMapBuilder* builder)
      : ag_first_block_(ag_first_block),
        ag_length_(ag_length),
        agfl_(std::move(agfl)),
        builder_(builder) {}

  uint64_t bnobt_free_blocks() const { return bnobt_free_; }

  // One bnobt record.
  Status Record(uint32_t start, uint32_t count) {
    if (count == 0 || uint64_t{start} + count > ag_length_) {
      return Status(Code::kSource, "free extent [" + std::to_string(start) + ", +" +
                                       std::to_string(count) + ") is empty or past the AG end " +
                                       std::to_string(ag_length_));
    }
    while (next_agfl_ < agfl_.size() && agfl_[next_agfl_] < start) {
      HOTSNAP_RETURN_IF_ERROR(Free(agfl_[next_agfl_++], 1, "AGFL block"));
    }
    if (next_agfl_ < agfl_.size() && agfl_[next_agfl_] < uint64_t{start} + count) {
      return Status(Code::kSource, "AGFL block " + std::to_string(agfl_[next_agfl_]) +
                                       " lies inside free extent at " + std::to_string(start));
    }
    bnobt_free_ += count;
    return Free(start, count, "free extent");
  }

  // After the last record: the rest of the AG is used.
  Status Finish() {
    while (next_agfl_ < agfl_.size()) {
      HOTSNAP_RETURN_IF_ERROR(Free(agfl_[next_agfl_++], 1, "AGFL block"));
    }
    return builder_->AddUsedBlocks(ag_first_block_ + cursor_, ag_length_ - cursor_);
  }

 private:
  Status Free(uint32_t start, uint32_t count, const char* what) {
    if (start < cursor_) {
      return Status(Code::kSource, std::string(what) + " at " + std::to_string(start) +
                                       " overlaps or precedes the previous free extent (ending " +
                                       std::to_string(cursor_) + ")");
    }
    HOTSNAP_RETURN_IF_ERROR(builder_->AddUsedBlocks(ag_first_block_ + cursor_, start - cursor_));
    cursor_ = start + count;
    return Status::Ok();
  }

  uint64_t ag_first_block_;
  uint32_t ag_length_;
  std::vector<uint32_t> agfl_;
  size_t next_agfl_ = 0;
  uint32_t cursor_ = 0;  // AG blocks below this are classified
  uint64_t bnobt_free_ = 0;
  UsedBlockMapBuilder* builder_;
};

class XfsReader {
 public:
  XfsReader(const PreadSource& source, const std::string& device_name, uint64_t base_bytes,
            uint64_t device_bytes, const Superblock& sb)
      : source_(source),
        device_name_(device_name),
        base_bytes_(base_bytes),
        device_bytes_(device_bytes),
        sb_(sb) {}

  Status MapAg(uint32_t agno, UsedBlockMapBuilder* builder);

 private:
  uint64_t AgByte(uint32_t agno, uint64_t agbno) const {
    return (uint64_t{agno} * sb_.ag_blocks + agbno) * sb_.block_bytes;
  }
  Status Corrupt(uint32_t agno, const std::string& where, const std::string& what) const {
    return Status(Code::kSource, "xfs on " + device_name_ + ": AG " + std::to_string(agno) + " " +
                                     where + ": " + what);
  }
  Status Read(uint64_t offset, size_t length, uint8_t* buf, uint32_t agno,
              const std::string& where) const;
  Status ReadAgf(uint32_t agno, uint32_t expected_length, Agf* agf) const;
  std::vector<uint32_t> ReadAgfl(uint32_t agno, const Agf& agf) const;
  Status WalkBnobt(uint32_t agno, const Agf& agf, uint32_t agbno, uint32_t level, bool is_root,
                   AgFreeMerger* merger, uint64_t* budget) const;

  const PreadSource& source_;
  const std::string& device_name_;
  uint64_t base_bytes_;  // where the filesystem starts in source_
  uint64_t device_bytes_;
  Superblock sb_;
};

Status XfsReader::Read(uint64_t offset, size_t length, uint8_t* buf, uint32_t agno,
                       const std::string& where) const {
  if (offset > device_bytes_ || device_bytes_ - offset < length) {
    return Corrupt(agno, where,
                   "byte " + std::to_string(offset) + " is past the end of the " +
                       std::to_string(device_bytes_) + "-byte device");
  }
  size_t done = 0;
  while (done < length) {
    ssize_t n = source_(buf + done, length - done, base_bytes_ + offset + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Status::FromErrno(Code::kSource, errno,
                               "reading xfs AG " + std::to_string(agno) + " " + where +
                                   " at byte " + std::to_string(offset) + " of " + device_name_);
    }
    if (n == 0) {
      return Status(Code::kSource, "reading xfs AG " + std::to_string(agno) + " " + where +
                                       ": unexpected end of " + device_name_);
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status XfsReader::ReadAgf(uint32_t agno, uint32_t expected_length, Agf* agf) const {
  uint64_t offset = AgByte(agno, 0) + uint64_t{agf::kSector} * sb_.sect_bytes;
  std::string where = "AGF (byte " + std::to_string(offset) + ")";
  std::vector<uint8_t> buf(sb_.sect_bytes);
  HOTSNAP_RETURN_IF_ERROR(Read(offset, buf.size(), buf.data(), agno, where));
  const uint8_t* p = buf.data();
  uint32_t magic = Be32(p + agf::kMagicOff);
  if (magic != agf::kMagic) {
    return Corrupt(agno, where,
                   "bad magic " + Hex32(magic) + ", expected " + Hex32(agf::kMagic) + " (XAGF)");
  }
  if (Be32(p + agf::kVersionOff) != agf::kVersion) return Corrupt(agno, where, "bad version");
  if (Be32(p + agf::kSeqNoOff) != agno) {
    return Corrupt(agno, where, "sequence number " + std::to_string(Be32(p + agf::kSeqNoOff)));
  }
  if (sb_.v5 && std::memcmp(p + agf::kUuidOff, sb_.meta_uuid.data(), kUuidBytes) != 0) {
    return Corrupt(agno, where, "UUID does not match the superblock");
  }
  agf->length = Be32(p + agf::kLengthOff);
  agf->bno_root = Be32(p + agf::kBnoRootOff);
  agf->bno_levels = Be32(p + agf::kBnoLevelOff);
  agf->fl_first = Be32(p + agf::kFlFirstOff);
  agf->fl_last = Be32(p + agf::kFlLastOff);
  agf->fl_count = Be32(p + agf::kFlCountOff);
  agf->free_blocks = Be32(p + agf::kFreeBlocksOff);
  if (agf->length != expected_length) {
    return Corrupt(agno, where,
                   "length " + std::to_string(agf->length) + " blocks, expected " +
                       std::to_string(expected_length));
  }
  if (agf->bno_levels == 0 || agf->bno_levels > bt::kMaxLevels) {
    return Corrupt(agno, where, "bnobt height " + std::to_string(agf->bno_levels));
  }
  if (agf->bno_root == 0 || agf->bno_root >= agf->length) {
    return Corrupt(agno, where,
                   "bnobt root block " + std::to_string(agf->bno_root) + " outside the AG");
  }
  if (agf->free_blocks > agf->length) {
    return Corrupt(agno, where, "free block count " + std::to_string(agf->free_blocks));
  }
  return Status::Ok();
}

// The AGFL's blocks, sorted. They are free space set aside for btree growth; their contents
// are stale. When the free list looks inconsistent (as after the historic kernel mismatch in
// its size, see the kernel note) it returns nothing, and the blocks simply stay "used": that
// costs a few blocks of reading, never correctness.
std::vector<uint32_t> XfsReader::ReadAgfl(uint32_t agno, const Agf& agf) const {
  if (agf.fl_count == 0) return {};
  uint64_t offset = AgByte(agno, 0) + uint64_t{agfl::kSector} * sb_.sect_bytes;
  std::vector<uint8_t> buf(sb_.sect_bytes);
  if (!Read(offset, buf.size(), buf.data(), agno, "AGFL").ok()) return {};
  size_t header = 0;
  if (sb_.v5) {
    header = agfl::kV5HeaderBytes;
    if (Be32(buf.data()) != agfl::kMagic || Be32(buf.data() + agfl::kSeqNoOff) != agno ||
        std::memcmp(buf.data() + agfl::kUuidOff, sb_.meta_uuid.data(), kUuidBytes) != 0) {
      return {};
    }
  }
  uint32_t slots = static_cast<uint32_t>((buf.size() - header) / 4);
  if (agf.fl_first >= slots || agf.fl_last >= slots || agf.fl_count > slots) return {};
  uint32_t span = (agf.fl_last + slots - agf.fl_first) % slots + 1;
  if (span != agf.fl_count) return {};
  std::vector<uint32_t> blocks;
  for (uint32_t i = 0, slot = agf.fl_first; i < agf.fl_count; ++i, slot = (slot + 1) % slots) {
    uint32_t bno = Be32(buf.data() + header + size_t{slot} * 4);
    if (bno == kNullAgBlock || bno == 0 || bno >= agf.length) return {};
    blocks.push_back(bno);
  }
  std::sort(blocks.begin(), blocks.end());
  if (std::adjacent_find(blocks.begin(), blocks.end()) != blocks.end()) return {};
  return blocks;
}

// Depth-first, left to right, so leaf records arrive in ascending block order; the merger
// rejects any record that does not, which also stops cycles. `budget` bounds the number of
// blocks visited by the AG's size.
Status XfsReader::WalkBnobt(uint32_t agno, const Agf& agf, uint32_t agbno, uint32_t level,
                            bool is_root, AgFreeMerger* merger, uint64_t* budget) const {
  uint64_t offset = AgByte(agno, agbno);
  std::string where =
      "bnobt block " + std::to_string(agbno) + " (byte " + std::to_string(offset) + ")";
  if (*budget == 0) return Corrupt(agno, where, "bnobt has more blocks than the AG");
  --*budget;
  std::vector<uint8_t> buf(sb_.block_bytes);
  HOTSNAP_RETURN_IF_ERROR(Read(offset, buf.size(), buf.data(), agno, where));
  const uint8_t* p = buf.data();

  uint32_t want_magic = sb_.v5 ? bt::kBnoMagicV5 : bt::kBnoMagicV4;
  uint32_t magic = Be32(p + bt::kMagicOff);
  if (magic != want_magic) {
    return Corrupt(agno, where, "bad magic " + Hex32(magic) + ", expected " + Hex32(want_magic));
  }
  if (Be16(p + bt::kLevelOff) != level) {
    return Corrupt(
        agno, where,
        "level " + std::to_string(Be16(p + bt::kLevelOff)) + ", expected " + std::to_string(level));
  }
  size_t header = sb_.v5 ? bt::kHeaderBytesV5 : bt::kHeaderBytesV4;
  if (sb_.v5) {
    uint64_t daddr = offset / 512;
    if (Be64(p + bt::kBlkNoOff) != daddr || Be32(p + bt::kOwnerOff) != agno ||
        std::memcmp(p + bt::kUuidOff, sb_.meta_uuid.data(), kUuidBytes) != 0) {
      return Corrupt(agno, where, "block header does not belong here (address, AG or UUID)");
    }
  }
  uint32_t records = Be16(p + bt::kNumRecsOff);
  if (level == 0) {
    size_t max_records = (buf.size() - header) / bt::kRecordBytes;
    if (records > max_records || (records == 0 && !is_root)) {
      return Corrupt(
          agno, where,
          std::to_string(records) + " records (max " + std::to_string(max_records) + ")");
    }
    for (uint32_t i = 0; i < records; ++i) {
      const uint8_t* rec = p + header + size_t{i} * bt::kRecordBytes;
      Status s = merger->Record(Be32(rec), Be32(rec + 4));
      if (!s.ok()) return Corrupt(agno, where, "record " + std::to_string(i) + ": " + s.message());
    }
    return Status::Ok();
  }
  size_t max_keys = (buf.size() - header) / (bt::kKeyBytes + bt::kPtrBytes);
  if (records == 0 || records > max_keys) {
    return Corrupt(agno, where,
                   std::to_string(records) + " keys (max " + std::to_string(max_keys) + ")");
  }
  const uint8_t* ptrs = p + header + max_keys * bt::kKeyBytes;
  for (uint32_t i = 0; i < records; ++i) {
    uint32_t child = Be32(ptrs + size_t{i} * bt::kPtrBytes);
    if (child == 0 || child >= agf.length) {
      return Corrupt(agno, where,
                     "pointer " + std::to_string(i) + " to block " + std::to_string(child) +
                         " outside the AG");
    }
    HOTSNAP_RETURN_IF_ERROR(WalkBnobt(agno, agf, child, level - 1, false, merger, budget));
  }
  return Status::Ok();
}

Status XfsReader::MapAg(uint32_t agno, UsedBlockMapBuilder* builder) {
  uint64_t ag_start = uint64_t{agno} * sb_.ag_blocks;
  uint32_t ag_length =
      static_cast<uint32_t>(std::min<uint64_t>(sb_.ag_blocks, sb_.data_blocks - ag_start));
  Agf agf;
  HOTSNAP_RETURN_IF_ERROR(ReadAgf(agno, ag_length, &agf));
  AgFreeMerger merger(ag_start, ag_length, ReadAgfl(agno, agf), builder);
  uint64_t budget = ag_length;
  HOTSNAP_RETURN_IF_ERROR(
      WalkBnobt(agno, agf, agf.bno_root, agf.bno_levels - 1, true, &merger, &budget));
  if (merger.bnobt_free_blocks() != agf.free_blocks) {
    return Corrupt(agno, "AGF",
                   "free block count " + std::to_string(agf.free_blocks) +
                       " does not match the bnobt's " + std::to_string(merger.bnobt_free_blocks()));
  }
  return merger.Finish();
}

// Why the log may hold changes the AGFs lack ("" if it does not). An external log is on
// another device hotsnap does not read, so it cannot be judged.
Result<std::string> LogDirtyReason(const PreadSource& source, const std::string& device_name, uint64_t base_bytes,
                                   uint64_t device_bytes, const Superblock& sb) {
  if (sb.log_start == 0) return std::string("external log, not inspected");
  uint64_t agno = sb.log_start >> sb.ag_block_log;
  uint64_t agbno = sb.log_start & ((uint64_t{1} << sb.ag_block_log) - 1);
  if (agno >= sb.ag_count || agbno >= sb.ag_blocks) {
    return "log start block " + std::to_string(sb.log_start) + " lies outside the AGs";
  }
  XfsLogLocation log;
  log.start_byte = base_bytes + (agno * sb.ag_blocks + agbno) * sb.block_bytes;
  log.length_bb = uint64_t{sb.log_blocks} * sb.block_bytes / 512;
  log.fs_uuid = sb.uuid;
  log.fs_start_byte = base_bytes;
  log.fs_bytes = device_bytes;
  return XfsLogDirtyReason(source, device_name, base_bytes + device_bytes, log);
}

// XfsUsedBlockMap's work, reading through `source`.
Result<UsedBlockMap> MapXfs(const PreadSource& source, const std::string& device_name, uint64_t base_bytes,
                            uint64_t device_bytes, std::string* notice) {
  std::array<uint8_t, 512> raw{};
  if (device_bytes < raw.size()) {
    return Status(Code::kSource, "xfs on " + device_name + ": device too small for a superblock");
  }
  ssize_t n;
  do {
    n = source(raw.data(), raw.size(), base_bytes);
  } while (n < 0 && errno == EINTR);
  if (n < 0)
    return Status::FromErrno(Code::kSource, errno, "reading xfs superblock of " + device_name);
  if (static_cast<size_t>(n) != raw.size()) {
    return Status(Code::kSource, "reading xfs superblock of " + device_name + ": short read");
  }
  if (Be32(raw.data() + sb::kMagicOff) != sb::kMagic) {
    return Status(Code::kSource, "xfs on " + device_name + ": superblock has bad magic " +
                                     Hex32(Be32(raw.data())));
  }
  Superblock sb;
  std::string problem = ParseSuperblock(raw.data(), &sb);
  if (problem.rfind("unsupported version", 0) == 0) {
    *notice = "xfs on " + device_name + " has an " + problem + "; reading every block";
    return UsedBlockMap::AllBlocks(device_bytes);
  }
  if (!problem.empty()) {
    return Status(Code::kSource, "xfs on " + device_name + ": corrupt superblock: " + problem);
  }
  if (sb.in_progress || sb.needs_repair) {
    *notice =
        "xfs on " + device_name +
        (sb.in_progress ? " was never finished by mkfs" : " is flagged as needing xfs_repair") +
        "; reading every block";
    return UsedBlockMap::AllBlocks(device_bytes);
  }

  // The AGFs are current only if nothing in the log awaits replay (see the kernel note).
  auto log_dirty = LogDirtyReason(source, device_name, base_bytes, device_bytes, sb);
  if (!log_dirty.ok()) return log_dirty.status();
  if (!log_dirty->empty()) {
    *notice =
        "xfs on " + device_name + ": log needs recovery (" + *log_dirty + "); reading every block";
    return UsedBlockMap::AllBlocks(device_bytes);
  }

  UsedBlockMapBuilder builder("xfs", device_bytes, sb.block_bytes);
  XfsReader reader(source, device_name, base_bytes, device_bytes, sb);
  for (uint32_t agno = 0; agno < sb.ag_count; ++agno) {
    HOTSNAP_RETURN_IF_ERROR(reader.MapAg(agno, &builder));
  }
  // Space past the data section belongs to no filesystem: keep it (see used_block_map.h).
  if (sb.data_blocks < builder.device_blocks()) {
    HOTSNAP_RETURN_IF_ERROR(
        builder.AddUsedBlocks(sb.data_blocks, builder.device_blocks() - sb.data_blocks));
  }
  return std::move(builder).Build();
}

}  // namespace

Result<UsedBlockMap> XfsUsedBlockMap(int fd, const std::string& device_name, uint64_t base_bytes,
                                     uint64_t device_bytes, std::string* notice) {
  return MapXfs(FdPreadSource(fd), device_name, base_bytes, device_bytes, notice);
}

Result<UsedBlockMap> XfsUsedBlockMapOf(RangedReader& source, const std::string& device_name,
                                       std::string* notice) {
  return MapXfs(RangedPreadSource(&source), device_name, 0, source.size_bytes(), notice);
}

}  // namespace hotsnap
