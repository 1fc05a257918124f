// The few XFS on-disk facts the used-block map relies on (xfsprogs 6.1,
// libxfs/xfs_format.h), as byte offsets into big-endian structures. Decoded by hand so no
// XFS headers are needed; kernel-notes/xfs-used-blocks.md explains each one.
#ifndef HOTSNAP_FSMAP_XFS_ONDISK_H_
#define HOTSNAP_FSMAP_XFS_ONDISK_H_

#include <cstddef>
#include <cstdint>

namespace hotsnap::xfs_ondisk {

inline uint16_t Be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t Be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
inline uint64_t Be64(const uint8_t* p) { return uint64_t{Be32(p)} << 32 | Be32(p + 4); }

constexpr uint32_t kNullAgBlock = 0xffffffff;  // NULLAGBLOCK
constexpr size_t kUuidBytes = 16;

// Superblock (struct xfs_dsb), at byte 0 of AG 0 (copies at the start of every AG).
namespace sb {
constexpr uint32_t kMagic = 0x58465342;  // "XFSB"
constexpr size_t kMagicOff = 0;          // __be32 sb_magicnum
constexpr size_t kBlockSizeOff = 4;      // __be32 sb_blocksize (bytes)
constexpr size_t kDataBlocksOff = 8;     // __be64 sb_dblocks (data device size in blocks)
constexpr size_t kUuidOff = 32;          // uuid_t sb_uuid
constexpr size_t kLogStartOff = 48;      // __be64 sb_logstart (fsblock; 0 = external log)
constexpr size_t kAgBlocksOff = 84;      // __be32 sb_agblocks (blocks per AG)
constexpr size_t kAgCountOff = 88;       // __be32 sb_agcount
constexpr size_t kLogBlocksOff = 96;     // __be32 sb_logblocks (log length in blocks)
constexpr size_t kVersionOff = 100;      // __be16 sb_versionnum (low 4 bits: 4 or 5)
constexpr size_t kSectSizeOff = 102;     // __be16 sb_sectsize (bytes)
constexpr size_t kBlockLogOff = 120;     // __u8 sb_blocklog
constexpr size_t kSectLogOff = 121;      // __u8 sb_sectlog
constexpr size_t kAgBlockLogOff = 124;   // __u8 sb_agblklog
constexpr size_t kInProgressOff = 126;   // __u8 sb_inprogress (mkfs not finished)
constexpr size_t kIncompatOff = 216;     // __be32 sb_features_incompat (v5)
constexpr size_t kMetaUuidOff = 248;     // uuid_t sb_meta_uuid (v5, if META_UUID)
constexpr size_t kMinBytes = 264;
constexpr uint16_t kVersionMask = 0x000f;
constexpr uint32_t kIncompatMetaUuid = 1u << 2;     // XFS_SB_FEAT_INCOMPAT_META_UUID
constexpr uint32_t kIncompatNeedsRepair = 1u << 4;  // XFS_SB_FEAT_INCOMPAT_NEEDSREPAIR
}  // namespace sb

// AG free-space header (struct xfs_agf), in the AG's second sector.
namespace agf {
constexpr uint32_t kMagic = 0x58414746;  // "XAGF"
constexpr uint32_t kVersion = 1;
constexpr size_t kMagicOff = 0;
constexpr size_t kVersionOff = 4;
constexpr size_t kSeqNoOff = 8;        // AG number
constexpr size_t kLengthOff = 12;      // AG size in blocks
constexpr size_t kBnoRootOff = 16;     // agf_roots[XFS_BTNUM_BNO]
constexpr size_t kBnoLevelOff = 28;    // agf_levels[XFS_BTNUM_BNO]
constexpr size_t kFlFirstOff = 40;     // first AGFL slot in use
constexpr size_t kFlLastOff = 44;      // last AGFL slot in use
constexpr size_t kFlCountOff = 48;     // AGFL slots in use
constexpr size_t kFreeBlocksOff = 52;  // blocks in the bnobt's free extents
constexpr size_t kUuidOff = 64;        // v5
constexpr size_t kMinBytes = 80;
constexpr uint32_t kSector = 1;
}  // namespace agf

// AG free list (struct xfs_agfl), in the AG's fourth sector: a ring of __be32 AG blocks.
namespace agfl {
constexpr uint32_t kMagic = 0x5841464c;  // "XAFL" (v5 header only)
constexpr size_t kV5HeaderBytes = 36;    // magic, seqno, uuid, lsn, crc
constexpr size_t kSeqNoOff = 4;
constexpr size_t kUuidOff = 8;
constexpr uint32_t kSector = 3;
}  // namespace agfl

// Short-form btree block header (struct xfs_btree_block, bb_u.s), then records, or keys and
// pointers. The bnobt records are struct xfs_alloc_rec {__be32 startblock, blockcount}.
namespace bt {
constexpr uint32_t kBnoMagicV4 = 0x41425442;  // "ABTB" XFS_ABTB_MAGIC
constexpr uint32_t kBnoMagicV5 = 0x41423342;  // "AB3B" XFS_ABTB_CRC_MAGIC
constexpr size_t kMagicOff = 0;
constexpr size_t kLevelOff = 4;    // __be16, 0 = leaf
constexpr size_t kNumRecsOff = 6;  // __be16
constexpr size_t kBlkNoOff = 16;   // v5: __be64 disk address in 512-byte units
constexpr size_t kUuidOff = 32;    // v5
constexpr size_t kOwnerOff = 48;   // v5: __be32 AG number
constexpr size_t kHeaderBytesV4 = 16;
constexpr size_t kHeaderBytesV5 = 56;
constexpr size_t kRecordBytes = 8;  // xfs_alloc_rec_t
constexpr size_t kKeyBytes = 8;     // xfs_alloc_key_t
constexpr size_t kPtrBytes = 4;     // xfs_alloc_ptr_t (AG block)
// Bound on tree height; the real maximum for an AG of 2^31 blocks is far lower.
constexpr uint32_t kMaxLevels = 16;
}  // namespace bt

}  // namespace hotsnap::xfs_ondisk

#endif  // HOTSNAP_FSMAP_XFS_ONDISK_H_
