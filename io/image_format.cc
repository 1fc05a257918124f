#include "io/image_format.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cctype>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>
#include <nlohmann/json.hpp>

namespace hotsnap {
namespace {

constexpr char kMetadataTag[8] = {'H', 'S', 'N', 'P', 'M', 'E', 'T', 'A'};
constexpr char kTrailerTag[8] = {'H', 'S', 'N', 'P', 'T', 'R', 'L', 'R'};
constexpr char kReportTag[8] = {'H', 'S', 'N', 'P', 'R', 'P', 'R', 'T'};
constexpr char kRoundTag[8] = {'H', 'S', 'N', 'P', 'R', 'O', 'N', 'D'};
constexpr size_t kHashBytes = 16;
// Trailer payload: tag, version, chunk bytes, device bytes, chunk count, layout, reserved,
// hashes..., [final frames...], image hash, trailer hash.
constexpr size_t kTrailerFixedBytes = 8 + 4 + 4 + 8 + 8 + 4 + 4 + kHashBytes + kHashBytes;

void AppendHash(std::string* out, const Hash128& h) {
  AppendLe64(out, h.low);
  AppendLe64(out, h.high);
}

Hash128 LoadHash(const uint8_t* p) { return Hash128{LoadLe64(p), LoadLe64(p + 8)}; }

std::string SkippableFrame(uint32_t magic, const std::string& payload) {
  std::string frame;
  frame.reserve(kSkippableHeaderBytes + payload.size());
  AppendLe32(&frame, magic);
  AppendLe32(&frame, static_cast<uint32_t>(payload.size()));
  frame += payload;
  return frame;
}

Status Corrupt(const std::string& what) { return Status(Code::kIntegrity, what); }

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// An integer JSON value that fits T. nlohmann's get<T>() converts a JSON float with a plain
// cast, which is undefined behaviour out of range ("device_bytes": 1e300; found by
// tests/fuzz/fuzz_metadata), so integer fields must be JSON integers. Throws, like get<T>().
template <typename T>
T IntegerValue(const nlohmann::json& v, const char* key) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (std::in_range<T>(u)) return static_cast<T>(u);
  } else if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    if (std::in_range<T>(i)) return static_cast<T>(i);
  }
  throw std::invalid_argument(std::string(key) + " is not an integer in range");
}

// Field `key` of object `j` as IntegerValue; `fallback` when absent (nullopt: required).
template <typename T>
T IntegerField(const nlohmann::json& j, const char* key, std::optional<T> fallback = std::nullopt) {
  auto it = j.find(key);
  if (it == j.end()) {
    if (!fallback) throw std::invalid_argument(std::string("missing field ") + key);
    return *fallback;
  }
  return IntegerValue<T>(*it, key);
}

Status CheckGeometry(uint64_t device_bytes, uint32_t chunk_bytes, const char* where) {
  if (chunk_bytes < kMinChunkBytes || chunk_bytes > kMaxChunkBytes || !IsPowerOfTwo(chunk_bytes)) {
    return Corrupt(std::string(where) + ": chunk size " + std::to_string(chunk_bytes) +
                   " bytes is not a power of two between 64 KiB and 64 MiB");
  }
  if (device_bytes > kMaxDeviceBytes) {
    return Corrupt(std::string(where) + ": device size " + std::to_string(device_bytes) +
                   " bytes exceeds the 1 PiB limit");
  }
  if ((device_bytes + chunk_bytes - 1) / chunk_bytes + 2 > kMaxSeekFrames) {
    return Corrupt(std::string(where) + ": too many chunks for the seek table");
  }
  return Status::Ok();
}

}  // namespace

std::string Hash128::Hex() const {
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(high),
                static_cast<unsigned long long>(low));
  return buf;
}

std::optional<Hash128> ParseHashHex(const std::string& text) {
  if (text.size() != 32) return std::nullopt;
  for (char c : text) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  Hash128 h;
  h.high = std::stoull(text.substr(0, 16), nullptr, 16);
  h.low = std::stoull(text.substr(16), nullptr, 16);
  return h;
}

const char* LayoutName(Layout layout) {
  switch (layout) {
    case Layout::kPlain: return "plain";
    case Layout::kTracked: return "tracked";
    case Layout::kDelta: return "delta";
  }
  return "?";
}

Hash128 HashBytes(const void* data, size_t bytes) {
  XXH128_hash_t h = XXH3_128bits(data, bytes);
  return Hash128{h.low64, h.high64};
}

Hash128 HashZeros(uint64_t bytes) {
  static const uint8_t kZeros[64 << 10] = {};
  // XXH3's streaming and one-shot forms give the same hash.
  XXH3_state_t state;
  XXH3_128bits_reset(&state);
  for (uint64_t left = bytes; left > 0;) {
    size_t n = left < sizeof(kZeros) ? static_cast<size_t>(left) : sizeof(kZeros);
    XXH3_128bits_update(&state, kZeros, n);
    left -= n;
  }
  XXH128_hash_t h = XXH3_128bits_digest(&state);
  return Hash128{h.low64, h.high64};
}

SkippableBounds SkippableBounds::All(uint64_t bytes) {
  return SkippableBounds{bytes, bytes, bytes, bytes, bytes, bytes};
}

uint64_t SkippableBounds::ForMagic(uint32_t magic) const {
  switch (magic) {
    case kMetadataMagic:
      return metadata;
    case kReportMagic:
      return report;
    case kRoundMagic:
      return round;
    case kTrailerMagic:
      return trailer;
    case kSeekTableMagic:
      return seek_table;
    default:
      return other;
  }
}

const char* SkippableFrameName(uint32_t magic) {
  switch (magic) {
    case kMetadataMagic:
      return "metadata";
    case kReportMagic:
      return "report";
    case kRoundMagic:
      return "round header";
    case kTrailerMagic:
      return "trailer";
    case kSeekTableMagic:
      return "seek table";
    default:
      return "skippable";
  }
}

uint64_t TrailerPayloadBytes(uint64_t chunk_count, Layout layout) {
  return kTrailerFixedBytes + chunk_count * (kHashBytes + (HasFrameMap(layout) ? 4 : 0));
}

uint64_t SeekTablePayloadBytes(uint64_t frames) { return frames * 8 + kSeekFooterBytes; }

SkippableBounds BoundsFor(const ImageMetadata& meta) {
  uint64_t chunks = meta.chunk_count();
  SkippableBounds b;
  b.metadata = kMaxMetadataPayloadBytes;
  b.report = kMaxMetadataPayloadBytes;
  b.round = sizeof(kRoundTag) + 8 + chunks * 4 + kHashBytes;
  b.trailer = TrailerPayloadBytes(chunks, meta.layout);
  // Plain: metadata, the chunks, report, trailer.
  b.seek_table =
      SeekTablePayloadBytes(HasFrameMap(meta.layout) ? kMaxSeekFrames : chunks + 3);
  b.other = 0;
  return b;
}

uint32_t ImageMetadata::ChunkLength(uint64_t index) const {
  uint64_t start = index * chunk_bytes;
  if (start >= device_bytes) return 0;
  uint64_t left = device_bytes - start;
  return static_cast<uint32_t>(left < chunk_bytes ? left : chunk_bytes);
}

void AppendLe32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void AppendLe64(std::string* out, uint64_t v) {
  AppendLe32(out, static_cast<uint32_t>(v));
  AppendLe32(out, static_cast<uint32_t>(v >> 32));
}

std::string EncodeMetadataFrame(const ImageMetadata& meta) {
  nlohmann::ordered_json j;
  j["format_version"] = meta.format_version;
  j["source_path"] = meta.source_path;
  j["device_bytes"] = meta.device_bytes;
  j["logical_sector_bytes"] = meta.logical_sector_bytes;
  j["chunk_bytes"] = meta.chunk_bytes;
  j["fs_type"] = meta.fs_type;
  j["fs_uuid"] = meta.fs_uuid;
  j["fs_label"] = meta.fs_label;
  j["host"] = meta.host;
  j["created_utc"] = meta.created_utc;
  j["snapshot_mode"] = meta.snapshot_mode;
  j["tool_version"] = meta.tool_version;
  j["zstd_level"] = meta.level;
  j["used_bytes"] = meta.used_bytes;
  j["used_map"] = meta.used_map;
  j["layout"] = LayoutName(meta.layout);
  if (meta.base) {
    j["base"] = {{"image", meta.base->image},
                 {"image_hash", meta.base->image_hash.Hex()},
                 {"created_utc", meta.base->created_utc}};
  }
  if (meta.kept_snapshot) {
    j["kept_snapshot"] = {{"vg", meta.kept_snapshot->vg},
                          {"lv", meta.kept_snapshot->lv},
                          {"run_id", meta.kept_snapshot->run_id}};
  }
  if (!meta.stands_for.empty()) {
    auto& list = j["stands_for"] = nlohmann::ordered_json::array();
    for (const Hash128& h : meta.stands_for) list.push_back(h.Hex());
  }
  if (!meta.partition_table.empty())
    j["partition_table"] = EncodePartitionTable(meta.partition_table);
  if (!meta.run_id.empty()) j["run_id"] = meta.run_id;
  // Invalid UTF-8 in a label or path must not abort the backup: replace it.
  std::string text = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string payload(kMetadataTag, sizeof(kMetadataTag));
  AppendLe32(&payload, kFormatVersion);
  payload += text;
  AppendHash(&payload, HashBytes(payload.data(), payload.size()));
  return SkippableFrame(kMetadataMagic, payload);
}

Result<ImageMetadata> DecodeMetadataPayload(std::span<const uint8_t> payload) {
  if (payload.size() < sizeof(kMetadataTag) + 4 + kHashBytes) {
    return Corrupt("metadata frame: payload of " + std::to_string(payload.size()) +
                   " bytes is too short");
  }
  if (payload.size() > kMaxMetadataPayloadBytes) {
    return Corrupt("metadata frame: payload of " + std::to_string(payload.size()) +
                   " bytes exceeds 1 MiB");
  }
  if (std::memcmp(payload.data(), kMetadataTag, sizeof(kMetadataTag)) != 0) {
    return Corrupt("metadata frame: tag is not HSNPMETA");
  }
  size_t body = payload.size() - kHashBytes;
  if (HashBytes(payload.data(), body) != LoadHash(payload.data() + body)) {
    return Corrupt("metadata frame: hash mismatch");
  }
  uint32_t version = LoadLe32(payload.data() + 8);
  if (version != kFormatVersion) {
    return Status(Code::kUnsupported, "metadata frame: format version " + std::to_string(version) +
                                          " is not supported (this build reads version " +
                                          std::to_string(kFormatVersion) + ")");
  }
  ImageMetadata meta;
  try {
    auto j = nlohmann::json::parse(payload.begin() + 12, payload.begin() + body);
    meta.format_version = IntegerField<uint32_t>(j, "format_version");
    meta.source_path = j.at("source_path").get<std::string>();
    meta.device_bytes = IntegerField<uint64_t>(j, "device_bytes");
    meta.logical_sector_bytes = IntegerField<uint32_t>(j, "logical_sector_bytes");
    meta.chunk_bytes = IntegerField<uint32_t>(j, "chunk_bytes");
    meta.fs_type = j.value("fs_type", "");
    meta.fs_uuid = j.value("fs_uuid", "");
    meta.fs_label = j.value("fs_label", "");
    meta.host = j.value("host", "");
    meta.created_utc = j.value("created_utc", "");
    meta.snapshot_mode = j.value("snapshot_mode", "");
    meta.tool_version = j.value("tool_version", "");
    meta.level = IntegerField<int>(j, "zstd_level", 0);
    meta.used_bytes = IntegerField<uint64_t>(j, "used_bytes", meta.device_bytes);
    meta.used_map = j.value("used_map", "all blocks");
    meta.run_id = j.value("run_id", "");
    std::string layout = j.value("layout", "plain");
    if (layout == "tracked") {
      meta.layout = Layout::kTracked;
    } else if (layout == "delta") {
      meta.layout = Layout::kDelta;
    } else if (layout != "plain") {
      return Status(Code::kUnsupported, "metadata frame: unknown layout '" + layout + "'");
    }
    if (auto b = j.find("base"); b != j.end()) {
      BaseReference base;
      base.image = b->at("image").get<std::string>();
      auto hash = ParseHashHex(b->at("image_hash").get<std::string>());
      if (!hash) return Corrupt("metadata frame: base.image_hash is not 32 hex digits");
      base.image_hash = *hash;
      base.created_utc = b->value("created_utc", "");
      if (base.image.empty() || base.image.find('/') != std::string::npos || base.image == "." ||
          base.image == "..") {
        return Corrupt("metadata frame: base.image '" + base.image + "' is not a file name");
      }
      meta.base = std::move(base);
    }
    if ((meta.layout == Layout::kDelta) != meta.base.has_value()) {
      return Corrupt(meta.base ? "metadata frame: a base, but the layout is not delta"
                               : "metadata frame: delta layout without a base");
    }
    if (auto k = j.find("kept_snapshot"); k != j.end()) {
      meta.kept_snapshot = KeptSnapshotRef{k->at("vg").get<std::string>(), k->at("lv").get<std::string>(),
                                           k->at("run_id").get<std::string>()};
    }
    if (auto sf = j.find("stands_for"); sf != j.end()) {
      for (const auto& h : *sf) {
        auto hash = h.is_string() ? ParseHashHex(h.get<std::string>()) : std::nullopt;
        if (!hash) return Corrupt("metadata frame: stands_for holds something not 32 hex digits");
        meta.stands_for.push_back(*hash);
      }
    }
    if (auto pt = j.find("partition_table"); pt != j.end()) {
      auto table = DecodePartitionTable(*pt, meta.device_bytes);
      if (!table.ok()) return table.status();
      meta.partition_table = std::move(table.value());
    }
  } catch (const std::exception& e) {
    return Corrupt(std::string("metadata frame: JSON: ") + e.what());
  }
  HOTSNAP_RETURN_IF_ERROR(CheckGeometry(meta.device_bytes, meta.chunk_bytes, "metadata frame"));
  uint32_t sector = meta.logical_sector_bytes;
  if (sector < 512 || sector > 65536 || !IsPowerOfTwo(sector)) {
    return Corrupt("metadata frame: logical_sector_bytes " + std::to_string(sector) +
                   " is not a power of two between 512 and 65536");
  }
  return meta;
}

std::string EncodeTrailerFrame(const Trailer& trailer) {
  std::string payload(kTrailerTag, sizeof(kTrailerTag));
  payload.reserve(kTrailerFixedBytes + trailer.chunk_hashes.size() * kHashBytes);
  AppendLe32(&payload, kFormatVersion);
  AppendLe32(&payload, trailer.chunk_bytes);
  AppendLe64(&payload, trailer.device_bytes);
  AppendLe64(&payload, trailer.chunk_hashes.size());
  AppendLe32(&payload, static_cast<uint32_t>(trailer.layout));
  AppendLe32(&payload, 0);
  for (const Hash128& h : trailer.chunk_hashes) AppendHash(&payload, h);
  if (HasFrameMap(trailer.layout)) {
    for (uint32_t f : trailer.final_frames) AppendLe32(&payload, f);
  }
  AppendHash(&payload, trailer.image_hash);
  AppendHash(&payload, HashBytes(payload.data(), payload.size()));
  return SkippableFrame(kTrailerMagic, payload);
}

Result<Trailer> DecodeTrailerPayload(std::span<const uint8_t> payload) {
  if (payload.size() < kTrailerFixedBytes) {
    return Corrupt("trailer: payload of " + std::to_string(payload.size()) + " bytes is too short");
  }
  if (std::memcmp(payload.data(), kTrailerTag, sizeof(kTrailerTag)) != 0) {
    return Corrupt("trailer: tag is not HSNPTRLR");
  }
  size_t body = payload.size() - kHashBytes;
  if (HashBytes(payload.data(), body) != LoadHash(payload.data() + body)) {
    return Corrupt("trailer: hash mismatch");
  }
  const uint8_t* p = payload.data() + 8;
  uint32_t version = LoadLe32(p);
  if (version != kFormatVersion) {
    return Status(Code::kUnsupported, "trailer: format version " + std::to_string(version) +
                                          " is not supported");
  }
  Trailer t;
  t.chunk_bytes = LoadLe32(p + 4);
  t.device_bytes = LoadLe64(p + 8);
  uint64_t count = LoadLe64(p + 16);
  HOTSNAP_RETURN_IF_ERROR(CheckGeometry(t.device_bytes, t.chunk_bytes, "trailer"));
  uint64_t expected = (t.device_bytes + t.chunk_bytes - 1) / t.chunk_bytes;
  if (count != expected) {
    return Corrupt("trailer: chunk_count " + std::to_string(count) + " does not match device_bytes " +
                   std::to_string(t.device_bytes) + " (expected " + std::to_string(expected) + ")");
  }
  uint32_t layout = LoadLe32(p + 24);
  if (layout > static_cast<uint32_t>(Layout::kDelta) || LoadLe32(p + 28) != 0) {
    return Corrupt("trailer: unknown layout " + std::to_string(layout));
  }
  t.layout = static_cast<Layout>(layout);
  uint64_t per_chunk = kHashBytes + (HasFrameMap(t.layout) ? 4 : 0);
  if (payload.size() != kTrailerFixedBytes + count * per_chunk) {
    return Corrupt("trailer: payload of " + std::to_string(payload.size()) +
                   " bytes does not hold " + std::to_string(count) + " chunk entries");
  }
  const uint8_t* hashes = p + 32;
  t.chunk_hashes.reserve(count);
  for (uint64_t i = 0; i < count; ++i) t.chunk_hashes.push_back(LoadHash(hashes + i * kHashBytes));
  const uint8_t* rest = hashes + count * kHashBytes;
  if (HasFrameMap(t.layout)) {
    t.final_frames.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      uint32_t f = LoadLe32(rest + i * 4);
      if (f == kFrameInBase && t.layout != Layout::kDelta) {
        return Corrupt("trailer: chunk " + std::to_string(i) + " has no frame, but the layout is not delta");
      }
      t.final_frames.push_back(f);
    }
    rest += count * 4;
  }
  t.image_hash = LoadHash(rest);
  return t;
}

std::string EncodeSeekTableFrame(const std::vector<SeekEntry>& entries, uint8_t descriptor) {
  std::string payload;
  payload.reserve(entries.size() * 8 + kSeekFooterBytes);
  for (const SeekEntry& e : entries) {
    AppendLe32(&payload, e.compressed_bytes);
    AppendLe32(&payload, e.decompressed_bytes);
  }
  AppendLe32(&payload, static_cast<uint32_t>(entries.size()));
  payload.push_back(static_cast<char>(descriptor));  // no per-entry checksums
  AppendLe32(&payload, kSeekFooterMagic);
  return SkippableFrame(kSeekTableMagic, payload);
}

Result<uint64_t> SeekTableFrameBytes(std::span<const uint8_t> footer) {
  if (footer.size() != kSeekFooterBytes) return Corrupt("seek table footer: wrong size");
  if (LoadLe32(footer.data() + 5) != kSeekFooterMagic) {
    return Corrupt("seek table footer: magic is not 0x8F92EAB1 (truncated or not a hotsnap image)");
  }
  uint8_t descriptor = footer[4];
  if (descriptor != kSeekDescriptorPlain && descriptor != kSeekDescriptorTracked) {
    return Corrupt("seek table footer: descriptor byte " + std::to_string(descriptor) +
                   " is neither 0 (plain) nor 4 (tracked and delta layouts)");
  }
  uint64_t frames = LoadLe32(footer.data());
  if (frames > kMaxSeekFrames) {
    return Corrupt("seek table footer: frame count " + std::to_string(frames) + " exceeds 2^27");
  }
  return kSkippableHeaderBytes + frames * 8 + kSeekFooterBytes;
}

Result<std::vector<SeekEntry>> DecodeSeekTableFrame(std::span<const uint8_t> frame,
                                                    uint8_t* descriptor) {
  if (frame.size() < kSkippableHeaderBytes + kSeekFooterBytes) {
    return Corrupt("seek table: frame too short");
  }
  auto size = SeekTableFrameBytes(frame.subspan(frame.size() - kSeekFooterBytes));
  if (!size.ok()) return size.status();
  if (*size != frame.size()) return Corrupt("seek table: frame size does not match its footer");
  if (LoadLe32(frame.data()) != kSeekTableMagic) {
    return Corrupt("seek table: skippable frame magic is not 0x184D2A5E");
  }
  if (LoadLe32(frame.data() + 4) != frame.size() - kSkippableHeaderBytes) {
    return Corrupt("seek table: frame header size does not match its footer");
  }
  if (descriptor != nullptr) *descriptor = frame[frame.size() - 5];
  uint64_t count = (frame.size() - kSkippableHeaderBytes - kSeekFooterBytes) / 8;
  std::vector<SeekEntry> entries;
  entries.reserve(count);
  const uint8_t* p = frame.data() + kSkippableHeaderBytes;
  for (uint64_t i = 0; i < count; ++i) {
    entries.push_back(SeekEntry{LoadLe32(p + i * 8), LoadLe32(p + i * 8 + 4)});
  }
  return entries;
}

bool IsPoisonFrame(std::span<const uint8_t> bytes) {
  return bytes.size() == sizeof(kPoisonFrame) &&
         std::memcmp(bytes.data(), kPoisonFrame, sizeof(kPoisonFrame)) == 0;
}

std::string EncodeReportFrame(const RunReport& r) {
  nlohmann::ordered_json j;
  j["freeze_ms"] = r.freeze_ms;
  j["rounds"] = r.rounds;
  j["recopied_bytes"] = r.recopied_bytes;
  j["final_capture_bytes"] = r.final_capture_bytes;
  j["used_bytes"] = r.used_bytes;
  if (!r.used_map.empty()) j["used_map"] = r.used_map;
  j["lost_events"] = r.lost_events;
  if (!r.crash_consistent.empty()) j["crash_consistent"] = r.crash_consistent;
  j["seconds"] = r.seconds;
  if (!r.change_source.empty()) {
    j["change_source"] = r.change_source;
    j["change_reason"] = r.change_reason;
    j["changed_chunks"] = r.changed_chunks;
    j["unchanged_chunks"] = r.unchanged_chunks;
  }
  std::string payload(kReportTag, sizeof(kReportTag));
  AppendLe32(&payload, kFormatVersion);
  payload += j.dump();
  AppendHash(&payload, HashBytes(payload.data(), payload.size()));
  return SkippableFrame(kReportMagic, payload);
}

Result<RunReport> DecodeReportPayload(std::span<const uint8_t> payload) {
  if (payload.size() < sizeof(kReportTag) + 4 + kHashBytes || payload.size() > kMaxMetadataPayloadBytes) {
    return Corrupt("report frame: payload of " + std::to_string(payload.size()) + " bytes is out of range");
  }
  if (std::memcmp(payload.data(), kReportTag, sizeof(kReportTag)) != 0) {
    return Corrupt("report frame: tag is not HSNPRPRT");
  }
  size_t body = payload.size() - kHashBytes;
  if (HashBytes(payload.data(), body) != LoadHash(payload.data() + body)) {
    return Corrupt("report frame: hash mismatch");
  }
  RunReport r;
  try {
    auto j = nlohmann::json::parse(payload.begin() + 12, payload.begin() + body);
    if (j.contains("freeze_ms")) {
      for (const auto& ms : j.at("freeze_ms")) r.freeze_ms.push_back(IntegerValue<int64_t>(ms, "freeze_ms"));
    }
    r.rounds = IntegerField<uint32_t>(j, "rounds", 0u);
    r.recopied_bytes = IntegerField<uint64_t>(j, "recopied_bytes", 0);
    r.final_capture_bytes = IntegerField<uint64_t>(j, "final_capture_bytes", 0);
    r.used_bytes = IntegerField<uint64_t>(j, "used_bytes", 0);
    if (j.contains("used_map")) {
      if (!j.at("used_map").is_string()) return Corrupt("report frame: used_map is not a string");
      r.used_map = j.at("used_map").get<std::string>();
    }
    r.lost_events = IntegerField<uint64_t>(j, "lost_events", 0);
    if (j.contains("crash_consistent")) {
      for (const auto& member : j.at("crash_consistent")) {
        if (!member.is_string()) return Corrupt("report frame: crash_consistent holds a non-string");
        r.crash_consistent.push_back(member.get<std::string>());
      }
    }
    r.seconds = j.value("seconds", 0.0);
    r.change_source = j.value("change_source", "");
    r.change_reason = j.value("change_reason", "");
    r.changed_chunks = IntegerField<uint64_t>(j, "changed_chunks", 0);
    r.unchanged_chunks = IntegerField<uint64_t>(j, "unchanged_chunks", 0);
  } catch (const std::exception& e) {
    return Corrupt(std::string("report frame: JSON: ") + e.what());
  }
  return r;
}

std::string EncodeRoundFrame(const RoundHeader& round) {
  std::string payload(kRoundTag, sizeof(kRoundTag));
  AppendLe32(&payload, round.round);
  AppendLe32(&payload, static_cast<uint32_t>(round.chunks.size()));
  for (uint32_t c : round.chunks) AppendLe32(&payload, c);
  AppendHash(&payload, HashBytes(payload.data(), payload.size()));
  return SkippableFrame(kRoundMagic, payload);
}

Result<RoundHeader> DecodeRoundPayload(std::span<const uint8_t> payload, uint64_t chunk_count) {
  if (payload.size() < sizeof(kRoundTag) + 8 + kHashBytes) return Corrupt("round header: too short");
  if (std::memcmp(payload.data(), kRoundTag, sizeof(kRoundTag)) != 0) {
    return Corrupt("round header: tag is not HSNPROND");
  }
  size_t body = payload.size() - kHashBytes;
  if (HashBytes(payload.data(), body) != LoadHash(payload.data() + body)) {
    return Corrupt("round header: hash mismatch");
  }
  RoundHeader r;
  r.round = LoadLe32(payload.data() + 8);
  uint64_t count = LoadLe32(payload.data() + 12);
  if (body != sizeof(kRoundTag) + 8 + count * 4 || count > chunk_count) {
    return Corrupt("round header: chunk count " + std::to_string(count) + " does not fit");
  }
  r.chunks.reserve(count);
  for (uint64_t i = 0; i < count; ++i) {
    uint32_t c = LoadLe32(payload.data() + 16 + i * 4);
    if (c >= chunk_count) {
      return Corrupt("round header: chunk index " + std::to_string(c) + " is past the device");
    }
    r.chunks.push_back(c);
  }
  return r;
}

}  // namespace hotsnap
