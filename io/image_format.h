// The hotsnap image format: constants and the encoders/decoders of its non-data frames.
//
// An image is a sequence of frames (see docs/image-format.md):
//   0. poison     — tracked layout only: a zstd frame header with a reserved bit set, so
//                   stock zstd refuses the image instead of emitting superseded chunks
//   1. metadata   — skippable frame, magic kMetadataMagic, JSON payload
//   2. chunk 0..N-1 — ordinary zstd frames, one per chunk of the device, content checksum on
//   2b. rounds    — tracked layout only: a round header (skippable, kRoundMagic) listing
//                   chunk indices, then one new frame per listed chunk, superseding older ones
//   3. report     — skippable frame, magic kReportMagic: what the run did (JSON)
//   4. trailer    — skippable frame, magic kTrailerMagic: per-chunk XXH3-128 hashes, image hash
//   5. seek table — skippable frame in the zstd seekable format (magic 0x184D2A5E, footer
//                   magic 0x8F92EAB1), one entry per frame above (skippable ones have a
//                   decompressed size of 0), no per-entry checksums.
// All integers are little-endian. These functions work on buffers only.
#ifndef HOTSNAP_IO_IMAGE_FORMAT_H_
#define HOTSNAP_IO_IMAGE_FORMAT_H_

#include <cstdint>
#include <span>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/image_partitions.h"

namespace hotsnap {

constexpr uint32_t kFormatVersion = 1;
constexpr uint32_t kDefaultChunkBytes = 4u << 20;  // 4 MiB of device data per zstd frame
constexpr uint32_t kMinChunkBytes = 64u << 10;
constexpr uint32_t kMaxChunkBytes = 64u << 20;

constexpr uint32_t kSkippableMagicMask = 0xFFFFFFF0u;
constexpr uint32_t kSkippableMagicBase = 0x184D2A50u;
constexpr uint32_t kZstdFrameMagic = 0xFD2FB528u;
constexpr uint32_t kMetadataMagic = 0x184D2A50u;
constexpr uint32_t kTrailerMagic = 0x184D2A51u;
constexpr uint32_t kRoundMagic = 0x184D2A52u;
constexpr uint32_t kReportMagic = 0x184D2A53u;
// Seek table descriptor: 0 for a plain image; the tracked layout sets a reserved bit so
// generic seekable-format readers reject it rather than map offsets to superseded frames.
constexpr uint8_t kSeekDescriptorPlain = 0x00;
constexpr uint8_t kSeekDescriptorTracked = 0x04;
// The poison frame: a 13-byte zstd frame whose header has the reserved bit (0x08 of the
// frame header descriptor) set. Every zstd decoder fails on it before emitting a byte.
constexpr uint8_t kPoisonFrame[13] = {0x28, 0xb5, 0x2f, 0xfd, 0x2c, 0x00, 0x01,
                                      0x00, 0x00, 0x99, 0xe9, 0xd8, 0x51};

enum class Layout : uint32_t {
  kPlain = 0,    // every chunk exactly once, in order: `zstd -dc` restores the device
  kTracked = 1,  // chunks re-copied in rounds; restore with hotsnap (or `hotsnap compact`)
  kDelta = 2,    // only the chunks that differ from a parent image (metadata `base`); every
                 // frame is announced by a round header; restore with hotsnap and the parents
};
// "plain", "tracked", "delta".
const char* LayoutName(Layout layout);
// Whether the layout starts with the guard frame, keeps a frame map in its trailer and marks
// its seek table (tracked and delta).
inline bool HasFrameMap(Layout layout) { return layout != Layout::kPlain; }
// In a delta image's frame map: the chunk has no frame here; it is the parent's.
constexpr uint32_t kFrameInBase = 0xFFFFFFFFu;
constexpr uint32_t kSeekTableMagic = 0x184D2A5Eu;
constexpr uint32_t kSeekFooterMagic = 0x8F92EAB1u;
constexpr size_t kSkippableHeaderBytes = 8;  // magic + payload size
constexpr size_t kSeekFooterBytes = 9;       // frame count, descriptor, magic

// Bounds checked before anything is allocated from an image's declarations.
constexpr uint32_t kMaxMetadataPayloadBytes = 1u << 20;
constexpr uint64_t kMaxSeekFrames = 1ull << 27;  // the seekable format's own limit
constexpr uint64_t kMaxDeviceBytes = 1ull << 50;  // 1 PiB

// The largest payload, in bytes (the bytes after the 8-byte skippable header), that each
// kind of skippable frame may declare. A stream reader refuses a larger declaration from the
// header alone; below the bound it still buffers only the bytes that actually arrive.
struct SkippableBounds {
  uint64_t metadata = kMaxMetadataPayloadBytes;
  uint64_t report = kMaxMetadataPayloadBytes;
  uint64_t round = kMaxMetadataPayloadBytes;
  uint64_t trailer = kMaxMetadataPayloadBytes;
  uint64_t seek_table = kMaxMetadataPayloadBytes;
  uint64_t other = kMaxMetadataPayloadBytes;  // a skippable magic no hotsnap frame uses
  // Every kind bounded by `bytes` (what a reader uses before it knows the geometry).
  static SkippableBounds All(uint64_t bytes);
  uint64_t ForMagic(uint32_t magic) const;
};
// "metadata", "trailer", ... for a skippable magic; "skippable" for another one.
const char* SkippableFrameName(uint32_t magic);
// Exact payload bytes of a trailer for `chunk_count` chunks in `layout`.
uint64_t TrailerPayloadBytes(uint64_t chunk_count, Layout layout);
// Exact payload bytes of a seek table listing `frames` frames.
uint64_t SeekTablePayloadBytes(uint64_t frames);

// A 128-bit XXH3 hash.
struct Hash128 {
  uint64_t low = 0;
  uint64_t high = 0;
  bool operator==(const Hash128&) const = default;
  std::string Hex() const;
};
Hash128 HashBytes(const void* data, size_t bytes);
// The inverse of Hex(): 32 hex digits, high half first; nullopt for anything else.
std::optional<Hash128> ParseHashHex(const std::string& text);
// HashBytes of `bytes` zero bytes, without a buffer of that size.
Hash128 HashZeros(uint64_t bytes);

// A delta image's parent: the image whose chunks it does not repeat.
struct BaseReference {
  std::string image;       // the parent's file name (no directory), where it was when used
  Hash128 image_hash;      // the parent's image hash (from its trailer)
  std::string created_utc;  // the parent's created_utc
  bool operator==(const BaseReference&) const = default;
};

// An LVM thin snapshot kept after the backup as the parent of the next delta
// (--keep-snapshot): where it is and the run that took it.
struct KeptSnapshotRef {
  std::string vg;
  std::string lv;      // hotsnap-keep-<origin>
  std::string run_id;  // the snapshot's own run id (its tags say it)
  bool operator==(const KeptSnapshotRef&) const = default;
};

// What the metadata frame records about the source and the run.
struct ImageMetadata {
  uint32_t format_version = kFormatVersion;
  std::string source_path;
  uint64_t device_bytes = 0;
  uint32_t logical_sector_bytes = 512;
  uint32_t chunk_bytes = kDefaultChunkBytes;
  std::string fs_type;   // from libblkid, "" if none found
  std::string fs_uuid;
  std::string fs_label;
  std::string host;
  std::string created_utc;  // ISO 8601
  std::string snapshot_mode;
  std::string tool_version;
  int level = 3;
  uint64_t used_bytes = 0;  // bytes the filesystem uses (= device_bytes when all are read)
  std::string used_map;     // how used blocks were found: "all blocks", "ext4 bitmap", ...
  Layout layout = Layout::kPlain;
  // The partition table of a whole-disk image; empty() for the image of one filesystem (and
  // for every image written before whole disks were mapped: the field is then absent).
  ImagePartitionTable partition_table;
  // The run that wrote this image, shared by every image of a backup of several sources at
  // one moment (its manifest lists the set); empty for a backup of one source.
  std::string run_id;
  // Delta layout: the parent this image holds only the changes against.
  std::optional<BaseReference> base;
  // Image hashes of delta images this image stands in for: `hotsnap merge` folds a delta into
  // its parent and writes an image with the delta's content, which the delta's children may
  // use as their parent (their chunk hashes still check every byte). Empty otherwise.
  std::vector<Hash128> stands_for;
  // --snapshot lvm-thin --keep-snapshot: the snapshot this image was read from, kept.
  std::optional<KeptSnapshotRef> kept_snapshot;
  // Number of chunks the device divides into.
  uint64_t chunk_count() const { return (device_bytes + chunk_bytes - 1) / chunk_bytes; }
  // Uncompressed size of chunk `index` in bytes (the last one may be short).
  uint32_t ChunkLength(uint64_t index) const;
};

// What an image of this geometry and layout can need: metadata and report 1 MiB (their
// decoders' limit); a round header at most chunk_count indices; the trailer exactly its size;
// the seek table exactly chunk_count + 3 entries (plain) or up to 2^27 (tracked: the rounds
// are not bounded by the geometry; a stream reader tightens it to the frames it has seen);
// nothing for other magics. A 1 TiB device in 4 MiB chunks: trailer 4 MiB, seek table 2 MiB.
SkippableBounds BoundsFor(const ImageMetadata& meta);

struct Trailer {
  uint32_t chunk_bytes = 0;
  uint64_t device_bytes = 0;
  Layout layout = Layout::kPlain;
  std::vector<Hash128> chunk_hashes;  // XXH3-128 of each chunk's final uncompressed bytes
  // Tracked and delta layouts: the seek-table entry index of each chunk's final frame
  // (delta: kFrameInBase for a chunk that is the parent's).
  std::vector<uint32_t> final_frames;
  Hash128 image_hash;                 // XXH3-128 of every image byte before the trailer frame
};

struct SeekEntry {
  uint32_t compressed_bytes = 0;
  uint32_t decompressed_bytes = 0;
  bool operator==(const SeekEntry&) const = default;
};

// What the run did, recorded after the last chunk (JSON in a skippable frame).
struct RunReport {
  std::vector<int64_t> freeze_ms;  // each freeze window, milliseconds
  uint32_t rounds = 0;             // tracked mode: re-copy rounds
  uint64_t recopied_bytes = 0;     // tracked mode: device bytes copied again
  uint64_t final_capture_bytes = 0;  // tracked mode: device bytes read under the final freeze
  uint64_t used_bytes = 0;         // bytes in use at the consistency point
  // How the map at the consistency point was made, when it differs from the metadata's
  // used_map (made before the copy; tracked mode maps again at each freeze, and a partition
  // can fall back to all blocks there). "" otherwise.
  std::string used_map;
  uint64_t lost_events = 0;        // tracked mode: write records the kernel dropped
  // Filesystems mounted read-write from the source that were left out of the consistency
  // group on request (--allow-crash-consistent): "DEVICE at MOUNTPOINT" each. Their contents
  // are only crash-consistent.
  std::vector<std::string> crash_consistent;
  double seconds = 0;
  // Delta layout: how the changes since the parent were found ("hash compare", "thin_delta",
  // "change log"), why that one (a fallback says what was wrong with the better one), and
  // how many chunks are stored here and how many are the parent's.
  std::string change_source;
  std::string change_reason;
  uint64_t changed_chunks = 0;
  uint64_t unchanged_chunks = 0;
};

// A tracked-layout round: the chunks whose new frames follow, in that order.
struct RoundHeader {
  uint32_t round = 0;
  std::vector<uint32_t> chunks;
};

// Frame encoders: each returns a complete frame (header included).
std::string EncodeMetadataFrame(const ImageMetadata& meta);
std::string EncodeTrailerFrame(const Trailer& trailer);
std::string EncodeReportFrame(const RunReport& report);
std::string EncodeRoundFrame(const RoundHeader& round);
std::string EncodeSeekTableFrame(const std::vector<SeekEntry>& entries,
                                 uint8_t descriptor = kSeekDescriptorPlain);

// Payload decoders (the bytes after the 8-byte skippable header). All sizes are checked
// against the payload length and the bounds above; errors have code kIntegrity and name
// the field.
Result<ImageMetadata> DecodeMetadataPayload(std::span<const uint8_t> payload);
Result<Trailer> DecodeTrailerPayload(std::span<const uint8_t> payload);
Result<RunReport> DecodeReportPayload(std::span<const uint8_t> payload);
// `chunk_count` bounds the indices.
Result<RoundHeader> DecodeRoundPayload(std::span<const uint8_t> payload, uint64_t chunk_count);
// `frame` is the whole seek table frame, header to footer. *descriptor gets its descriptor.
Result<std::vector<SeekEntry>> DecodeSeekTableFrame(std::span<const uint8_t> frame,
                                                    uint8_t* descriptor = nullptr);
// From the last kSeekFooterBytes of an image: the size of the whole seek table frame.
Result<uint64_t> SeekTableFrameBytes(std::span<const uint8_t> footer);
bool IsPoisonFrame(std::span<const uint8_t> bytes);

// Little-endian helpers.
inline uint32_t LoadLe32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}
inline uint64_t LoadLe64(const uint8_t* p) { return LoadLe32(p) | uint64_t(LoadLe32(p + 4)) << 32; }
void AppendLe32(std::string* out, uint32_t v);
void AppendLe64(std::string* out, uint64_t v);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_IMAGE_FORMAT_H_
