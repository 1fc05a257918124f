// Tests for io/image_format.h: the encoders produce the bytes the format document and the
// zstd seekable format specify (checked against hand-written expectations and the stock
// xxHash library, not against the decoders), the decoders round-trip them, and the decoders
// reject short, mistagged, mis-hashed and absurd payloads without allocating from the
// declared sizes (checked in a child process with a capped address space).
#include "io/image_format.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace hotsnap {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

uint32_t Le32(const std::string& s, size_t at) {
  return LoadLe32(reinterpret_cast<const uint8_t*>(s.data()) + at);
}

std::string Le32Bytes(uint32_t v) {
  std::string s;
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
  return s;
}
std::string Le64Bytes(uint64_t v) { return Le32Bytes(static_cast<uint32_t>(v)) + Le32Bytes(v >> 32); }

// XXH3-128 from the stock library, in the format's byte order (low 64 bits first).
std::string StockHash(const std::string& data) {
  XXH128_hash_t h = XXH3_128bits(data.data(), data.size());
  return Le64Bytes(h.low64) + Le64Bytes(h.high64);
}

// A plain-layout trailer payload built by hand from the layout in image_format.cc / docs:
// tag, version, chunk bytes, device bytes, chunk count, layout, reserved, hashes, image
// hash, self-hash.
std::string HandTrailerPayload(uint32_t chunk_bytes, uint64_t device_bytes, uint64_t count,
                               size_t hashes_present, uint32_t version = 1, uint32_t layout = 0,
                               uint32_t reserved = 0) {
  std::string p = "HSNPTRLR" + Le32Bytes(version) + Le32Bytes(chunk_bytes) + Le64Bytes(device_bytes) +
                  Le64Bytes(count) + Le32Bytes(layout) + Le32Bytes(reserved);
  for (size_t i = 0; i < hashes_present; ++i) p += StockHash("chunk" + std::to_string(i));
  p += StockHash("image");
  p += StockHash(p);
  return p;
}

// A metadata payload built by hand: tag, version, JSON, self-hash.
std::string HandMetadataPayload(const std::string& json, uint32_t version = 1) {
  std::string p = "HSNPMETA" + Le32Bytes(version) + json;
  return p + StockHash(p);
}

std::string JsonFor(uint64_t device_bytes, uint32_t chunk_bytes, uint32_t sector = 512) {
  nlohmann::json j;
  j["format_version"] = 1;
  j["source_path"] = "/dev/x";
  j["device_bytes"] = device_bytes;
  j["logical_sector_bytes"] = sector;
  j["chunk_bytes"] = chunk_bytes;
  return j.dump();
}

// Runs `body` in a child whose address space may grow by at most `extra_bytes`; true if the
// body returned true without running out of memory. Proves a decoder does not allocate from
// a declared size.
bool RunWithMemoryCap(uint64_t extra_bytes, const std::function<bool()>& body) {
  pid_t pid = fork();
  if (pid == 0) {
    std::ifstream statm("/proc/self/statm");
    uint64_t pages = 0;
    statm >> pages;
    uint64_t cap = pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) + extra_bytes;
    struct rlimit rl = {cap, cap};
    setrlimit(RLIMIT_AS, &rl);
    try {
      _exit(body() ? 0 : 1);
    } catch (const std::bad_alloc&) {
      _exit(2);
    } catch (...) {
      _exit(3);
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

constexpr uint64_t k64MiB = 64ull << 20;

// ---- Hash -----------------------------------------------------------------------------------

TEST(HashBytesTest, IsStockXxh3_128) {
  std::string data = "hotsnap hashes chunks with XXH3-128";
  XXH128_hash_t want = XXH3_128bits(data.data(), data.size());
  Hash128 got = HashBytes(data.data(), data.size());
  EXPECT_EQ(got.low, want.low64);
  EXPECT_EQ(got.high, want.high64);
  // Hex is high then low, 32 lower-case digits (what `xxhsum -H2` prints).
  char hex[33];
  std::snprintf(hex, sizeof(hex), "%016llx%016llx", static_cast<unsigned long long>(want.high64),
                static_cast<unsigned long long>(want.low64));
  EXPECT_EQ(got.Hex(), hex);
}

// ---- Metadata -------------------------------------------------------------------------------

ImageMetadata SampleMetadata() {
  ImageMetadata m;
  m.source_path = "/dev/loop7";
  m.device_bytes = (37ull << 20) + 3584;
  m.logical_sector_bytes = 512;
  m.chunk_bytes = kDefaultChunkBytes;
  m.fs_type = "ext4";
  m.fs_uuid = "0b1d6c39-bd6e-4f3c-9b4b-9f1f0f0c0a01";
  m.fs_label = "lab\"el";
  m.host = "host-1";
  m.created_utc = "2024-05-01T12:00:00Z";
  m.snapshot_mode = "none";
  m.tool_version = "0.1.0";
  m.level = 7;
  return m;
}

TEST(MetadataFrameTest, EncodesTheDocumentedLayout) {
  ImageMetadata m = SampleMetadata();
  std::string frame = EncodeMetadataFrame(m);
  ASSERT_GE(frame.size(), 8u + 8 + 4 + 16);
  EXPECT_EQ(frame.substr(0, 4), std::string("\x50\x2A\x4D\x18", 4));  // skippable magic 0x184D2A50
  EXPECT_EQ(Le32(frame, 4), frame.size() - 8);
  std::string payload = frame.substr(8);
  EXPECT_EQ(payload.substr(0, 8), "HSNPMETA");
  EXPECT_EQ(Le32(payload, 8), 1u);
  std::string body = payload.substr(0, payload.size() - 16);
  EXPECT_EQ(payload.substr(payload.size() - 16), StockHash(body));
  auto j = nlohmann::json::parse(body.substr(12));
  EXPECT_EQ(j.at("device_bytes").get<uint64_t>(), m.device_bytes);
  EXPECT_EQ(j.at("chunk_bytes").get<uint32_t>(), m.chunk_bytes);
  EXPECT_EQ(j.at("logical_sector_bytes").get<uint32_t>(), 512u);
  EXPECT_EQ(j.at("source_path").get<std::string>(), "/dev/loop7");
  EXPECT_EQ(j.at("fs_label").get<std::string>(), "lab\"el");
}

TEST(MetadataFrameTest, RoundTrips) {
  ImageMetadata m = SampleMetadata();
  std::string frame = EncodeMetadataFrame(m);
  auto decoded = DecodeMetadataPayload(Bytes(frame).subspan(8));
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_EQ(decoded->source_path, m.source_path);
  EXPECT_EQ(decoded->device_bytes, m.device_bytes);
  EXPECT_EQ(decoded->logical_sector_bytes, m.logical_sector_bytes);
  EXPECT_EQ(decoded->chunk_bytes, m.chunk_bytes);
  EXPECT_EQ(decoded->fs_type, m.fs_type);
  EXPECT_EQ(decoded->fs_uuid, m.fs_uuid);
  EXPECT_EQ(decoded->fs_label, m.fs_label);
  EXPECT_EQ(decoded->host, m.host);
  EXPECT_EQ(decoded->created_utc, m.created_utc);
  EXPECT_EQ(decoded->snapshot_mode, m.snapshot_mode);
  EXPECT_EQ(decoded->tool_version, m.tool_version);
  EXPECT_EQ(decoded->level, 7);
  EXPECT_EQ(decoded->chunk_count(), 10u);  // 37 MiB + 3584 B in 4 MiB chunks
  EXPECT_EQ(decoded->ChunkLength(9), (1u << 20) + 3584);
  EXPECT_EQ(decoded->ChunkLength(0), 4u << 20);
}

TEST(MetadataFrameTest, DecodesAHandBuiltPayload) {
  auto decoded = DecodeMetadataPayload(Bytes(HandMetadataPayload(JsonFor(12345 * 512, 1u << 20, 4096))));
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_EQ(decoded->device_bytes, 12345u * 512);
  EXPECT_EQ(decoded->chunk_bytes, 1u << 20);
  EXPECT_EQ(decoded->logical_sector_bytes, 4096u);
}

TEST(MetadataFrameTest, InvalidUtf8InLabelDoesNotBreakEncoding) {
  ImageMetadata m = SampleMetadata();
  m.fs_label = std::string("bad\xff\xfe", 5);
  std::string frame = EncodeMetadataFrame(m);
  auto decoded = DecodeMetadataPayload(Bytes(frame).subspan(8));
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_EQ(decoded->device_bytes, m.device_bytes);
}

TEST(MetadataFrameTest, RejectsEveryTooShortPayload) {
  std::string payload = EncodeMetadataFrame(SampleMetadata()).substr(8);
  for (size_t n = 0; n < payload.size(); ++n) {
    auto r = DecodeMetadataPayload(Bytes(payload).first(n));
    ASSERT_FALSE(r.ok()) << "accepted a payload cut to " << n << " bytes";
    EXPECT_EQ(r.status().code(), Code::kIntegrity) << n;
  }
}

TEST(MetadataFrameTest, RejectsWrongTag) {
  std::string good = HandMetadataPayload(JsonFor(1 << 20, 1 << 20));
  std::string p = good.substr(0, good.size() - 16);
  p[4] = 'X';  // HSNPXETA, re-hashed so only the tag is wrong
  auto r = DecodeMetadataPayload(Bytes(p + StockHash(p)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kIntegrity);
  EXPECT_NE(r.status().message().find("tag"), std::string::npos) << r.status().message();
}

TEST(MetadataFrameTest, RejectsHashMismatchOnAnyFlippedByte) {
  std::string payload = EncodeMetadataFrame(SampleMetadata()).substr(8);
  for (size_t i = 0; i < payload.size(); ++i) {
    std::string p = payload;
    p[i] ^= 0x01;
    auto r = DecodeMetadataPayload(Bytes(p));
    ASSERT_FALSE(r.ok()) << "accepted a flip at payload byte " << i;
    EXPECT_EQ(r.status().code(), Code::kIntegrity) << i << ": " << r.status().message();
  }
}

TEST(MetadataFrameTest, RejectsOtherVersionAsUnsupported) {
  auto r = DecodeMetadataPayload(Bytes(HandMetadataPayload(JsonFor(1 << 20, 1 << 20), 2)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnsupported);
}

TEST(MetadataFrameTest, RejectsAbsurdGeometry) {
  struct Case {
    uint64_t device;
    uint32_t chunk;
    uint32_t sector;
    const char* what;
  } cases[] = {
      {1ull << 60, 4u << 20, 512, "device of 1 EiB"},
      {(1ull << 50) + 4096, 64u << 20, 512, "device just over 1 PiB"},
      {1ull << 50, 64u << 10, 512, "2^34 chunks, more than the seek table holds"},
      {1 << 20, 3u << 20, 512, "chunk not a power of two"},
      {1 << 20, 32u << 10, 512, "chunk below 64 KiB"},
      {1 << 20, 128u << 20, 512, "chunk above 64 MiB"},
      {1 << 20, 0, 512, "chunk of 0"},
      {1 << 20, 1 << 20, 256, "sector of 256"},
      {1 << 20, 1 << 20, 1000, "sector not a power of two"},
  };
  for (const Case& c : cases) {
    std::string payload = HandMetadataPayload(JsonFor(c.device, c.chunk, c.sector));
    bool rejected = RunWithMemoryCap(k64MiB, [&] {
      auto r = DecodeMetadataPayload(Bytes(payload));
      return !r.ok() && r.status().code() == Code::kIntegrity;
    });
    EXPECT_TRUE(rejected) << c.what;
  }
}

TEST(MetadataFrameTest, RejectsBadJson) {
  for (std::string json : {std::string("{"), std::string("[]"), std::string("{\"device_bytes\":1}"),
                           std::string("{\"format_version\":1,\"source_path\":1,\"device_bytes\":1,"
                                       "\"logical_sector_bytes\":512,\"chunk_bytes\":65536}")}) {
    auto r = DecodeMetadataPayload(Bytes(HandMetadataPayload(json)));
    ASSERT_FALSE(r.ok()) << json;
    EXPECT_EQ(r.status().code(), Code::kIntegrity) << json;
  }
}

TEST(MetadataFrameTest, RejectsPayloadOverOneMiB) {
  std::string json = JsonFor(1 << 20, 1 << 20);
  json.insert(1, "\"pad\":\"" + std::string(kMaxMetadataPayloadBytes, 'p') + "\",");
  auto r = DecodeMetadataPayload(Bytes(HandMetadataPayload(json)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kIntegrity);
}

// ---- Trailer --------------------------------------------------------------------------------

Trailer SampleTrailer() {
  Trailer t;
  t.chunk_bytes = 1u << 20;
  t.device_bytes = (3u << 20) + 512;  // 4 chunks, the last one short
  for (int i = 0; i < 4; ++i) {
    std::string s = "chunk" + std::to_string(i);
    t.chunk_hashes.push_back(HashBytes(s.data(), s.size()));
  }
  t.image_hash = HashBytes("image", 5);
  return t;
}

TEST(TrailerTest, EncodesTheDocumentedLayout) {
  std::string frame = EncodeTrailerFrame(SampleTrailer());
  EXPECT_EQ(frame.substr(0, 4), std::string("\x51\x2A\x4D\x18", 4));
  EXPECT_EQ(Le32(frame, 4), frame.size() - 8);
  std::string want = HandTrailerPayload(1u << 20, (3u << 20) + 512, 4, 4);
  std::string got = frame.substr(8);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "first difference at payload byte " << i;
}

TEST(TrailerTest, RoundTrips) {
  Trailer t = SampleTrailer();
  auto r = DecodeTrailerPayload(Bytes(EncodeTrailerFrame(t)).subspan(8));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->chunk_bytes, t.chunk_bytes);
  EXPECT_EQ(r->device_bytes, t.device_bytes);
  EXPECT_EQ(r->chunk_hashes, t.chunk_hashes);
  EXPECT_EQ(r->image_hash, t.image_hash);
}

TEST(TrailerTest, RejectsEveryTooShortPayload) {
  std::string payload = EncodeTrailerFrame(SampleTrailer()).substr(8);
  for (size_t n = 0; n < payload.size(); ++n) {
    auto r = DecodeTrailerPayload(Bytes(payload).first(n));
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.status().code(), Code::kIntegrity) << n;
  }
}

TEST(TrailerTest, RejectsAnyFlippedByte) {
  std::string payload = EncodeTrailerFrame(SampleTrailer()).substr(8);
  for (size_t i = 0; i < payload.size(); ++i) {
    std::string p = payload;
    p[i] ^= 0x80;
    auto r = DecodeTrailerPayload(Bytes(p));
    ASSERT_FALSE(r.ok()) << "accepted a flip at byte " << i;
    EXPECT_EQ(r.status().code(), Code::kIntegrity) << i;
  }
}

TEST(TrailerTest, RejectsWrongTag) {
  std::string p = HandTrailerPayload(1u << 20, 1u << 20, 1, 1);
  p = p.substr(0, p.size() - 16);
  p[0] = 'h';
  auto r = DecodeTrailerPayload(Bytes(p + StockHash(p)));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("tag"), std::string::npos) << r.status().message();
}

TEST(TrailerTest, RejectsChunkCountNotMatchingDevice) {
  // 3 MiB + 512 in 1 MiB chunks is 4 chunks; claim 3 and 5 (with that many hashes present).
  for (uint64_t count : {3u, 5u}) {
    auto r = DecodeTrailerPayload(Bytes(HandTrailerPayload(1u << 20, (3u << 20) + 512, count, count)));
    ASSERT_FALSE(r.ok()) << count;
    EXPECT_EQ(r.status().code(), Code::kIntegrity);
    EXPECT_NE(r.status().message().find("chunk_count"), std::string::npos) << r.status().message();
  }
  // Count right, but fewer / more hashes than it says.
  for (size_t present : {3u, 5u}) {
    auto r = DecodeTrailerPayload(Bytes(HandTrailerPayload(1u << 20, (3u << 20) + 512, 4, present)));
    ASSERT_FALSE(r.ok()) << present;
    EXPECT_EQ(r.status().code(), Code::kIntegrity);
  }
}

TEST(TrailerTest, RejectsAbsurdSizesWithoutAllocating) {
  struct Case {
    uint32_t chunk;
    uint64_t device;
    uint64_t count;
    const char* what;
  } cases[] = {
      {4u << 20, 1ull << 60, (1ull << 60) / (4u << 20), "device of 1 EiB"},
      // Within every bound (4 TiB in 64 KiB chunks = 2^26 chunks), but the payload holds no
      // hashes: must fail on the payload size, not reserve 1 GiB for 2^26 hashes first.
      {64u << 10, 1ull << 42, 1ull << 26, "2^26 declared chunks, none present"},
      {64u << 10, 1ull << 42, ~0ull, "chunk count 2^64-1"},
      {4u << 20, 8u << 20, 1ull << 40, "chunk count 2^40 for a 2-chunk device"},
  };
  for (const Case& c : cases) {
    std::string payload = HandTrailerPayload(c.chunk, c.device, c.count, 1);
    bool rejected = RunWithMemoryCap(k64MiB, [&] {
      auto r = DecodeTrailerPayload(Bytes(payload));
      return !r.ok() && r.status().code() == Code::kIntegrity;
    });
    EXPECT_TRUE(rejected) << c.what;
  }
}

TEST(TrailerTest, RejectsUnknownLayoutAndReservedBits) {
  auto r = DecodeTrailerPayload(Bytes(HandTrailerPayload(1u << 20, 1u << 20, 1, 1, 1, 2)));
  EXPECT_FALSE(r.ok());
  r = DecodeTrailerPayload(Bytes(HandTrailerPayload(1u << 20, 1u << 20, 1, 1, 1, 0, 1)));
  EXPECT_FALSE(r.ok());
  // Tracked layout with no final-frame indices present is refused on size.
  r = DecodeTrailerPayload(Bytes(HandTrailerPayload(1u << 20, 1u << 20, 1, 1, 1, 1)));
  EXPECT_FALSE(r.ok());
}

TEST(TrailerTest, RejectsOtherVersion) {
  auto r = DecodeTrailerPayload(Bytes(HandTrailerPayload(1u << 20, 1u << 20, 1, 1, 9)));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().code(), Code::kOk);
}

// ---- Seek table -----------------------------------------------------------------------------

TEST(SeekTableTest, EncodesTheZstdSeekableFormat) {
  std::vector<SeekEntry> entries = {{100, 0}, {5000, 4u << 20}, {0x01020304, 0x0A0B0C0D}, {64, 0}};
  std::string frame = EncodeSeekTableFrame(entries);
  std::string want = std::string("\x5E\x2A\x4D\x18", 4) + Le32Bytes(4 * 8 + 9);
  for (const SeekEntry& e : entries) want += Le32Bytes(e.compressed_bytes) + Le32Bytes(e.decompressed_bytes);
  want += Le32Bytes(4) + std::string(1, '\0') + std::string("\xB1\xEA\x92\x8F", 4);
  EXPECT_EQ(frame, want);
}

TEST(SeekTableTest, RoundTrips) {
  std::vector<SeekEntry> entries;
  for (uint32_t i = 0; i < 1000; ++i) entries.push_back({i * 7 + 1, i % 3 == 0 ? 0 : (4u << 20)});
  std::string frame = EncodeSeekTableFrame(entries);
  auto size = SeekTableFrameBytes(Bytes(frame).last(kSeekFooterBytes));
  ASSERT_TRUE(size.ok()) << size.status().message();
  EXPECT_EQ(*size, frame.size());
  auto decoded = DecodeSeekTableFrame(Bytes(frame));
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_EQ(*decoded, entries);
}

TEST(SeekTableTest, EmptyTableRoundTrips) {
  std::string frame = EncodeSeekTableFrame({});
  EXPECT_EQ(frame.size(), 8u + 9);
  auto decoded = DecodeSeekTableFrame(Bytes(frame));
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->empty());
}

TEST(SeekTableTest, FooterRejectsMoreThan2To27Frames) {
  std::string footer = Le32Bytes((1u << 27) + 1) + std::string(1, '\0') + std::string("\xB1\xEA\x92\x8F", 4);
  auto r = SeekTableFrameBytes(Bytes(footer));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kIntegrity);
  footer = Le32Bytes(0xFFFFFFFFu) + std::string(1, '\0') + std::string("\xB1\xEA\x92\x8F", 4);
  EXPECT_FALSE(SeekTableFrameBytes(Bytes(footer)).ok());
  // Exactly 2^27 is the format's own limit and allowed.
  footer = Le32Bytes(1u << 27) + std::string(1, '\0') + std::string("\xB1\xEA\x92\x8F", 4);
  auto ok = SeekTableFrameBytes(Bytes(footer));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, 8 + (1ull << 27) * 8 + 9);
}

TEST(SeekTableTest, FooterRejectsBadMagicDescriptorAndSize) {
  std::string good = EncodeSeekTableFrame({{1, 2}}).substr(8 + 8);
  ASSERT_EQ(good.size(), kSeekFooterBytes);
  for (size_t i = 4; i < good.size(); ++i) {  // descriptor and magic bytes
    std::string f = good;
    f[i] ^= 0x01;
    EXPECT_FALSE(SeekTableFrameBytes(Bytes(f)).ok()) << i;
  }
  EXPECT_FALSE(SeekTableFrameBytes(Bytes(good).first(8)).ok());
  EXPECT_FALSE(SeekTableFrameBytes(Bytes(good + "x")).ok());
}

TEST(SeekTableTest, FrameRejectsMismatchesWithoutAllocating) {
  std::string frame = EncodeSeekTableFrame({{10, 0}, {20, 4u << 20}, {30, 0}});
  // Any single flipped byte of the frame.
  for (size_t i = 0; i < frame.size(); ++i) {
    if (i >= 8 && i < 8 + 3 * 8) continue;  // entry values: any value is well-formed
    std::string f = frame;
    f[i] ^= 0x01;
    EXPECT_FALSE(DecodeSeekTableFrame(Bytes(f)).ok()) << "flip at " << i;
  }
  // Too short, cut anywhere.
  for (size_t n = 0; n < frame.size(); ++n) {
    EXPECT_FALSE(DecodeSeekTableFrame(Bytes(frame).first(n)).ok()) << n;
  }
  // A footer declaring 2^27 frames in a 17-byte frame.
  std::string tiny = EncodeSeekTableFrame({});
  tiny.replace(tiny.size() - 9, 4, Le32Bytes(1u << 27));
  bool rejected = RunWithMemoryCap(k64MiB, [&] { return !DecodeSeekTableFrame(Bytes(tiny)).ok(); });
  EXPECT_TRUE(rejected);
}

}  // namespace
}  // namespace hotsnap

namespace hotsnap {
namespace {

// The report's used_map (the map at the consistency point, when it was made otherwise than
// the metadata says) is written only when set, and read back as written.
TEST(ReportFrameTest, UsedMapIsWrittenOnlyWhenSetAndRoundTrips) {
  RunReport plain;
  plain.used_bytes = 4096;
  std::string frame = EncodeReportFrame(plain);
  EXPECT_EQ(frame.find("used_map"), std::string::npos);
  auto decoded = DecodeReportPayload(std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(frame.data()) + kSkippableHeaderBytes,
      frame.size() - kSkippableHeaderBytes));
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_EQ(decoded->used_map, "");

  RunReport changed = plain;
  changed.used_map = "gpt partitions: p2 ext4 bitmap 9.1 MiB, p3 xfs all blocks 1.0 GiB";
  frame = EncodeReportFrame(changed);
  decoded = DecodeReportPayload(std::span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(frame.data()) + kSkippableHeaderBytes,
      frame.size() - kSkippableHeaderBytes));
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_EQ(decoded->used_map, changed.used_map);
  EXPECT_EQ(decoded->used_bytes, 4096u);
}

}  // namespace
}  // namespace hotsnap
