#include "fsmap/xfs_log.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "fsmap/xfs_ondisk.h"

namespace hotsnap {
namespace {

using xfs_ondisk::Be32;
using xfs_ondisk::Be64;

constexpr uint64_t kBbBytes = 512;  // the log's addressing unit (a "basic block")

// Record header (struct xlog_rec_header), big-endian, at the start of a record.
constexpr uint32_t kHeaderMagic = 0xFEEDBABE;  // XLOG_HEADER_MAGIC_NUM, never a cycle number
constexpr size_t kCycleOff = 4;                // h_cycle
constexpr size_t kVersionOff = 8;              // h_version: 1 or 2
constexpr size_t kLenOff = 12;                 // h_len: bytes of data after the header blocks
constexpr size_t kLsnOff = 16;                 // h_lsn: cycle << 32 | block of this record
constexpr size_t kTailLsnOff = 24;             // h_tail_lsn: oldest record still needed
constexpr size_t kNumOpsOff = 40;              // h_num_logops
constexpr size_t kCycleDataOff = 44;           // h_cycle_data[64]: first word of each data BB
constexpr size_t kCycleDataSlots = 64;
constexpr size_t kUuidOff = 304;                 // h_fs_uuid
constexpr size_t kSizeOff = 320;                 // h_size: in-core log buffer size (v2)
constexpr uint32_t kCycleSizeBytes = 32 * 1024;  // XLOG_HEADER_CYCLE_SIZE

// Operation header (struct xlog_op_header) in front of every region of a record.
constexpr size_t kOpHeaderBytes = 12;
constexpr size_t kOpLenOff = 4;  // be32 oh_len
constexpr size_t kOpFlagsOff = 9;
constexpr uint8_t kOpStart = 0x01;    // XLOG_START_TRANS
constexpr uint8_t kOpCommit = 0x02;   // XLOG_COMMIT_TRANS
constexpr uint8_t kOpSplit = 0x1c;    // XLOG_CONTINUE_TRANS | WAS_CONT_TRANS | END_TRANS
constexpr uint8_t kOpUnmount = 0x20;  // XLOG_UNMOUNT_TRANS

// Region payloads are in the writer's byte order (little-endian on every host we run on).
constexpr uint32_t kTransMagic = 0x5452414e;  // XFS_TRANS_HEADER_MAGIC "TRAN"
constexpr size_t kTransHeaderBytes = 16;
constexpr uint16_t kItemBuf = 0x123c;      // XFS_LI_BUF; struct xfs_buf_log_format follows
constexpr size_t kBufFormatMinBytes = 16;  // blf_type, blf_size, blf_flags, blf_len, blf_blkno
// XFS_LI_INODE; struct xfs_inode_log_format (64-bit layout) follows: ilf_size (2, regions
// including this one), ilf_ino (16), ilf_blkno (40, 512-byte units from the filesystem's
// start: the inode cluster), ilf_boffset (52, the inode's byte offset in that cluster).
constexpr uint16_t kItemInode = 0x123b;
constexpr size_t kInodeFormatBytes = 56;

// The on-disk inode (struct xfs_dinode), big-endian: magic "IN", di_version 3 carries di_lsn,
// the LSN of the last change the inode holds (stamped when it is written back), and di_ino.
constexpr uint16_t kDinodeMagic = 0x494e;
constexpr size_t kDinodeVersionOff = 4;
constexpr size_t kDinodeLsnOff = 112;
constexpr size_t kDinodeInoOff = 152;
constexpr size_t kDinodeHeadBytes = 160;

// Blocks the kernel may write out of order at the head: 8 in-core logs of up to 256 KiB
// (XLOG_MAX_ICLOGS << XLOG_MAX_RECORD_BSHIFT), in basic blocks.
constexpr uint64_t kHeadWindowBb = 8 * 256 * 1024 / kBbBytes;
// How far back from the head the last record header may start (a maximal record and its
// header blocks), and how many records from the tail we are willing to inspect.
constexpr uint64_t kMaxRecordBb = 256 * 1024 / kBbBytes + 8;
constexpr int kMaxTailRecords = 64;

uint32_t Le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint16_t Le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint64_t Le64(const uint8_t* p) { return uint64_t{Le32(p)} | uint64_t{Le32(p + 4)} << 32; }

// One parsed record: where it ends and what it changes.
struct Record {
  uint64_t block = 0;  // log block of the header
  uint64_t end = 0;    // log block just past the record (wrapped)
  uint32_t cycle = 0;
  uint64_t tail_block = 0;
  uint32_t tail_cycle = 0;
  bool unmount = false;  // a lone unmount operation
  std::string change;    // "" if it logs only the superblock and inodes (or nothing)
  // Inodes it logs, where the log format says they are on disk.
  struct LoggedInode {
    uint64_t ino = 0;
    uint64_t cluster_bb = 0;    // ilf_blkno: 512-byte units from the filesystem's start
    uint32_t offset_bytes = 0;  // ilf_boffset: in the cluster
  };
  std::vector<LoggedInode> inodes;
};

class LogReader {
 public:
  LogReader(const PreadSource& source, const std::string& device_name, const XfsLogLocation& loc)
      : source_(source), device_name_(device_name), loc_(loc) {}

  uint64_t length() const { return loc_.length_bb; }
  uint64_t Wrap(uint64_t block) const { return block % loc_.length_bb; }

  // Reads `count` basic blocks from log block `block` on, wrapping at the log end.
  Status Read(uint64_t block, uint64_t count, std::vector<uint8_t>* out) const {
    out->resize(count * kBbBytes);
    uint64_t done = 0;
    while (done < count) {
      uint64_t at = Wrap(block + done);
      uint64_t run = std::min(count - done, loc_.length_bb - at);
      HOTSNAP_RETURN_IF_ERROR(
          PreadAll(loc_.start_byte + at * kBbBytes, run * kBbBytes, out->data() + done * kBbBytes));
      done += run;
    }
    return Status::Ok();
  }

  // The cycle number stamped in a basic block (a header block carries it in h_cycle).
  static uint32_t CycleOf(const uint8_t* bb) {
    return Be32(bb) == kHeaderMagic ? Be32(bb + kCycleOff) : Be32(bb);
  }
  Result<uint32_t> Cycle(uint64_t block) const {
    std::vector<uint8_t> bb;
    HOTSNAP_RETURN_IF_ERROR(Read(block, 1, &bb));
    return CycleOf(bb.data());
  }

  Result<std::string> FindHead(uint64_t* head, uint32_t* head_cycle) const;
  Result<std::string> ParseRecord(uint64_t block, Record* rec) const;

  // "" if every inode `rec` logs is on disk with a v3 di_lsn at or past the record's LSN
  // (written back with this change or a later one: replay changes nothing, as the kernel's
  // LSN check in xlog_recover_inode_commit_pass2 knows), else which one is not.
  Result<std::string> InodesWrittenBack(const Record& rec) const {
    const uint64_t lsn = uint64_t{rec.cycle} << 32 | rec.block;
    for (const Record::LoggedInode& inode : rec.inodes) {
      const std::string what = "the record at log block " + std::to_string(rec.block) +
                               " logs inode " + std::to_string(inode.ino);
      if (inode.cluster_bb >= loc_.fs_bytes / kBbBytes ||
          loc_.fs_bytes - inode.cluster_bb * kBbBytes <
              uint64_t{inode.offset_bytes} + kDinodeHeadBytes) {
        return what + ", which lies outside the filesystem";
      }
      const uint64_t offset = inode.cluster_bb * kBbBytes + inode.offset_bytes;
      uint8_t dinode[kDinodeHeadBytes];
      HOTSNAP_RETURN_IF_ERROR(PreadAll(loc_.fs_start_byte + offset, sizeof(dinode), dinode));
      if (xfs_ondisk::Be16(dinode) != kDinodeMagic || dinode[kDinodeVersionOff] != 3 ||
          Be64(dinode + kDinodeInoOff) != inode.ino) {
        return what + ", not that v3 inode on disk";
      }
      uint64_t on_disk = Be64(dinode + kDinodeLsnOff);
      if (on_disk == UINT64_MAX || on_disk < lsn) return what + ", not yet written in place";
    }
    return std::string();
  }

 private:
  Status PreadAll(uint64_t offset, uint64_t length, uint8_t* buf) const {
    uint64_t done = 0;
    while (done < length) {
      ssize_t n = source_(buf + done, length - done, offset + done);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        return Status::FromErrno(
            Code::kSource, errno,
            "reading the xfs log of " + device_name_ + " at byte " + std::to_string(offset + done));
      }
      if (n == 0) {
        return Status(Code::kSource, "reading the xfs log of " + device_name_ +
                                         ": unexpected end at byte " +
                                         std::to_string(offset + done));
      }
      done += static_cast<uint64_t>(n);
    }
    return Status::Ok();
  }

  const PreadSource& source_;
  const std::string& device_name_;
  XfsLogLocation loc_;
};

// The head is where the cycle number stamped in each block drops: blocks before it were
// written in the current pass, blocks after it in the previous one. A binary search finds the
// drop; up to kHeadWindowBb blocks before it may still hold the previous cycle (log buffers
// complete out of order), and the earliest such block is the real head, as in the kernel's
// xlog_find_head. Sets *head_cycle to the cycle of the block before the head.
Result<std::string> LogReader::FindHead(uint64_t* head, uint32_t* head_cycle) const {
  const uint64_t n = length();
  auto first = Cycle(0);
  if (!first.ok()) return first.status();
  auto last = Cycle(n - 1);
  if (!last.ok()) return last.status();
  if (*first == 0) {
    if (*last == 0) return std::string("zeroed");
    return "log block 0 was never written but block " + std::to_string(n - 1) + " was";
  }
  uint64_t h = n;
  if (*first != *last) {
    if (*first != *last + 1) {
      return "cycle numbers " + std::to_string(*first) + " at log block 0 and " +
             std::to_string(*last) + " at the last block do not follow each other";
    }
    uint64_t lo = 0, hi = n - 1;  // Cycle(lo) == first, Cycle(hi) == last
    while (hi - lo > 1) {
      uint64_t mid = lo + (hi - lo) / 2;
      auto c = Cycle(mid);
      if (!c.ok()) return c.status();
      (*c == *last ? hi : lo) = mid;
    }
    h = hi;
  }
  uint64_t window = std::min(kHeadWindowBb, n);
  uint64_t begin = h >= window ? h - window : 0;
  std::vector<uint8_t> blocks;
  HOTSNAP_RETURN_IF_ERROR(Read(begin, h - begin, &blocks));
  bool found = false;
  for (uint64_t i = 0; i < h - begin; ++i) {
    if (CycleOf(blocks.data() + i * kBbBytes) == *first - 1) {
      h = begin + i;
      found = true;
      break;
    }
  }
  *head_cycle = *first;
  if (!found && h < window && *first != *last) {
    // The window reaches back past block 0 into the end of the previous pass.
    uint64_t rest = window - h;
    HOTSNAP_RETURN_IF_ERROR(Read(n - rest, rest, &blocks));
    for (uint64_t i = 0; i < rest; ++i) {
      if (CycleOf(blocks.data() + i * kBbBytes) == *last - 1) {
        h = n - rest + i;
        *head_cycle = *last;
        break;
      }
    }
  }
  *head = Wrap(h);
  return std::string();
}

// Parses the record whose header is at `block`; "" if it is whole and understood, else why
// not. Only records of up to 64 data blocks (one header's worth of cycle data) are decoded:
// larger ones are never a superblock-only or unmount record, so they count as changes.
Result<std::string> LogReader::ParseRecord(uint64_t block, Record* rec) const {
  const std::string where = "log block " + std::to_string(block);
  std::vector<uint8_t> header;
  HOTSNAP_RETURN_IF_ERROR(Read(block, 1, &header));
  const uint8_t* h = header.data();
  if (Be32(h) != kHeaderMagic) return where + " holds no record header";
  uint32_t version = Be32(h + kVersionOff);
  uint32_t len = Be32(h + kLenOff);
  uint64_t lsn = Be64(h + kLsnOff);
  uint64_t tail = Be64(h + kTailLsnOff);
  rec->block = block;
  rec->cycle = Be32(h + kCycleOff);
  rec->tail_cycle = static_cast<uint32_t>(tail >> 32);
  rec->tail_block = static_cast<uint32_t>(tail);
  if (version != 1 && version != 2) return where + ": record version " + std::to_string(version);
  if (lsn >> 32 != rec->cycle || static_cast<uint32_t>(lsn) != block) {
    return where + ": record header names another place in the log";
  }
  if (std::memcmp(h + kUuidOff, loc_.fs_uuid.data(), loc_.fs_uuid.size()) != 0) {
    return where + ": record of another filesystem (UUID differs)";
  }
  if (rec->tail_block >= length() || len > 2 * kMaxRecordBb * kBbBytes) {
    return where + ": record length or tail out of range";
  }
  uint32_t size = Be32(h + kSizeOff);
  uint64_t header_bb =
      version == 2 && size > kCycleSizeBytes ? (size + kCycleSizeBytes - 1) / kCycleSizeBytes : 1;
  uint64_t data_bb = (len + kBbBytes - 1) / kBbBytes;
  rec->end = Wrap(block + header_bb + data_bb);
  if (header_bb != 1 || data_bb > kCycleDataSlots) {
    rec->change = "a large transaction";
    return std::string();
  }
  std::vector<uint8_t> data;
  HOTSNAP_RETURN_IF_ERROR(Read(block + 1, data_bb, &data));
  for (uint64_t i = 0; i < data_bb; ++i) {
    uint8_t* bb = data.data() + i * kBbBytes;
    if (Be32(bb) != rec->cycle)
      return where + ": record is torn (block " + std::to_string(i) +
             " of its data has another cycle number)";
    std::memcpy(bb, h + kCycleDataOff + i * 4, 4);  // the word the cycle stamp replaced
  }

  uint32_t ops = Be32(h + kNumOpsOff);
  size_t at = 0;
  uint32_t regions_left = 0;  // regions still owed to the last buffer item
  for (uint32_t i = 0; i < ops; ++i) {
    if (at + kOpHeaderBytes > len)
      return where + ": operation " + std::to_string(i) + " runs past the record";
    const uint8_t* op = data.data() + at;
    uint32_t op_len = Be32(op + kOpLenOff);
    uint8_t flags = op[kOpFlagsOff];
    at += kOpHeaderBytes;
    if (op_len > len - at)
      return where + ": operation " + std::to_string(i) + " runs past the record";
    const uint8_t* payload = data.data() + at;
    at += op_len;
    if (flags & kOpUnmount) {
      rec->unmount = ops == 1;
      continue;
    }
    if (flags & kOpSplit) {
      rec->change = "a transaction split across records";
      continue;
    }
    if (flags & (kOpStart | kOpCommit) || op_len == 0) continue;
    if (regions_left > 0) {
      --regions_left;
      continue;
    }
    if (op_len == kTransHeaderBytes && Le32(payload) == kTransMagic) continue;
    uint16_t type = op_len >= 2 ? Le16(payload) : 0;
    if (type == kItemBuf && op_len >= kBufFormatMinBytes && Le64(payload + 8) == 0) {
      uint16_t regions = Le16(payload + 2);  // blf_size: the format plus its data regions
      regions_left = regions > 0 ? regions - 1u : 0u;
      continue;
    }
    if (type == kItemInode && op_len == kInodeFormatBytes) {
      // The core and forks follow as regions; whether the inode was written back since is
      // for the caller to check (it needs the inode itself).
      uint16_t regions = Le16(payload + 2);
      regions_left = regions > 0 ? regions - 1u : 0u;
      rec->inodes.push_back({Le64(payload + 16), Le64(payload + 40), Le32(payload + 52)});
      continue;
    }
    char text[64];
    snprintf(text, sizeof text, "a change of log item type 0x%04x", type);
    rec->change = text;
  }
  return std::string();
}

}  // namespace

Result<std::string> XfsLogDirtyReason(int fd, const std::string& device_name, uint64_t device_bytes,
                                      const XfsLogLocation& location) {
  return XfsLogDirtyReason(FdPreadSource(fd), device_name, device_bytes, location);
}

Result<std::string> XfsLogDirtyReason(const PreadSource& source, const std::string& device_name,
                                      uint64_t device_bytes, const XfsLogLocation& location) {
  if (location.length_bb < 2 || location.start_byte > device_bytes ||
      (device_bytes - location.start_byte) / kBbBytes < location.length_bb) {
    return std::string("the log lies outside the device");
  }
  LogReader log(source, device_name, location);
  uint64_t head = 0;
  uint32_t head_cycle = 0;
  auto problem = log.FindHead(&head, &head_cycle);
  if (!problem.ok()) return problem.status();
  if (*problem == "zeroed") return std::string();  // never written since mkfs: nothing to replay
  if (!problem->empty()) return problem;

  // The last record header: the nearest header block before the head.
  uint64_t back = std::min(kMaxRecordBb, log.length());
  std::vector<uint8_t> blocks;
  HOTSNAP_RETURN_IF_ERROR(log.Read(head + log.length() - back, back, &blocks));
  uint64_t last = log.length();
  for (uint64_t i = back; i-- > 0;) {
    if (Be32(blocks.data() + i * kBbBytes) == kHeaderMagic) {
      last = log.Wrap(head + log.length() - back + i);
      break;
    }
  }
  std::string head_text = "log head at block " + std::to_string(head);
  if (last == log.length()) return head_text + " follows no record header";
  Record rec;
  problem = log.ParseRecord(last, &rec);
  if (!problem.ok() || !problem->empty()) return problem;
  if (rec.end != head) return "the last record (log block " + std::to_string(last) + ") is torn";
  if (rec.unmount) return std::string();  // cleanly unmounted or remounted read-only

  // Replay would start at the tail: every record from there to the head must change nothing
  // but the superblock, which the free-space records do not depend on, and inodes already
  // written in place. A freeze that follows another one soon covers the log with a single
  // superblock record whose tail is the last record of real changes (6.18), all of them
  // written back by then.
  uint64_t pos = rec.tail_block;
  uint64_t distance = (head + log.length() - pos) % log.length();
  uint64_t walked = 0;
  for (int i = 0; pos != head; ++i) {
    if (i == kMaxTailRecords) {
      return head_text + ": more than " + std::to_string(kMaxTailRecords) +
             " records to replay from the tail at block " + std::to_string(rec.tail_block);
    }
    Record r;
    problem = log.ParseRecord(pos, &r);
    if (!problem.ok() || !problem->empty()) return problem;
    if (!r.change.empty()) {
      return "the record at log block " + std::to_string(pos) + " holds " + r.change +
             " not yet written in place";
    }
    problem = log.InodesWrittenBack(r);
    if (!problem.ok() || !problem->empty()) return problem;
    walked += (r.end + log.length() - pos) % log.length();
    if (walked > distance || r.end == pos) {
      return "records from the tail at block " + std::to_string(rec.tail_block) +
             " do not end at the " + head_text;
    }
    pos = r.end;
  }
  return std::string();
}

}  // namespace hotsnap
