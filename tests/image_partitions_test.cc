// The metadata's "partition_table" (io/image_partitions.h): round trip, images without it,
// and every bad field refused with a message naming it. Payloads are built by hand with the
// stock xxhash library, from the layout in docs/image-format.md.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "io/image_format.h"

namespace hotsnap {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

std::span<const uint8_t> Bytes(const std::string& s) {
  return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::string Le64Bytes(uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>(v >> (8 * i)));
  return s;
}

std::string HandMetadataPayload(const nlohmann::json& j) {
  std::string p = std::string("HSNPMETA") + std::string("\x01\x00\x00\x00", 4) + j.dump();
  XXH128_hash_t h = XXH3_128bits(p.data(), p.size());
  return p + Le64Bytes(h.low64) + Le64Bytes(h.high64);
}

nlohmann::json BaseJson() {
  nlohmann::json j;
  j["format_version"] = 1;
  j["source_path"] = "/dev/sda";
  j["device_bytes"] = 64 * kMiB;
  j["logical_sector_bytes"] = 512;
  j["chunk_bytes"] = 4 * kMiB;
  return j;
}

nlohmann::json PartitionJson() {
  nlohmann::json p;
  p["number"] = 2;
  p["start_bytes"] = 1 * kMiB;
  p["size_bytes"] = 32 * kMiB;
  p["type"] = "0fc63daf-8483-4772-8e79-3d69d8477de4";
  p["fs_type"] = "ext4";
  p["used_bytes"] = 3 * kMiB;
  p["used_map"] = "ext4 bitmap";
  return p;
}

Result<ImageMetadata> DecodeWithPartition(const nlohmann::json& partition) {
  nlohmann::json j = BaseJson();
  j["partition_table"] = {{"type", "gpt"}, {"uuid", "u"}, {"partitions", {partition}}};
  return DecodeMetadataPayload(Bytes(HandMetadataPayload(j)));
}

TEST(ImagePartitionsTest, RoundTripsThroughTheMetadataFrame) {
  ImageMetadata m;
  m.device_bytes = 64 * kMiB;
  m.partition_table.type = "dos";
  m.partition_table.uuid = "1234abcd";
  ImagePartition p;
  p.number = 5;
  p.start_bytes = 2 * kMiB;
  p.size_bytes = 16 * kMiB;
  p.type = "0x83";
  p.uuid = "1234abcd-05";
  p.fs_type = "xfs";
  p.fs_uuid = "f";
  p.fs_label = "data";
  p.used_bytes = 5 * kMiB;
  p.used_map = "xfs bnobt";
  m.partition_table.partitions.push_back(p);
  ImagePartition ext = p;
  ext.number = 2;
  ext.extended = true;
  ext.fs_type = ext.fs_uuid = ext.fs_label = ext.used_map = "";
  ext.used_bytes = 512;
  m.partition_table.partitions.push_back(ext);
  std::string frame = EncodeMetadataFrame(m);
  auto decoded = DecodeMetadataPayload(Bytes(frame).subspan(8));
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_EQ(decoded->partition_table, m.partition_table);
}

TEST(ImagePartitionsTest, AnImageWithoutTheFieldHasNoPartitions) {
  auto decoded = DecodeMetadataPayload(Bytes(HandMetadataPayload(BaseJson())));
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_TRUE(decoded->partition_table.empty());
  EXPECT_TRUE(decoded->partition_table.partitions.empty());
  // And an image of one filesystem writes no such field.
  ImageMetadata m;
  m.device_bytes = 64 * kMiB;
  EXPECT_EQ(EncodeMetadataFrame(m).find("partition_table"), std::string::npos);
}

TEST(ImagePartitionsTest, BadFieldsAreRefusedByName) {
  struct Case {
    const char* key;
    nlohmann::json value;
    const char* expect;
  };
  const Case cases[] = {
      {"start_bytes", 60 * kMiB,
       "partition_table.partitions[0] (bytes 62914560 + 33554432) runs past"},
      {"size_bytes", 1.5e7, "partition_table.partitions[0].size_bytes"},
      {"used_bytes", 33 * kMiB, "partition_table.partitions[0].used_bytes 34603008 exceeds"},
      {"number", 0, "partition_table.partitions[0].number 0"},
      {"number", -1, "partition_table.partitions[0].number"},
      {"fs_type", 7, "partition_table.partitions[0].fs_type is not a string"},
      {"extended", "yes", "partition_table.partitions[0].extended is not a boolean"},
  };
  for (const Case& c : cases) {
    nlohmann::json p = PartitionJson();
    p[c.key] = c.value;
    auto decoded = DecodeWithPartition(p);
    ASSERT_FALSE(decoded.ok()) << c.key;
    EXPECT_EQ(decoded.status().code(), Code::kIntegrity) << c.key;
    EXPECT_NE(decoded.status().message().find(c.expect), std::string::npos)
        << c.key << ": " << decoded.status().message();
  }
  nlohmann::json no_start = PartitionJson();
  no_start.erase("start_bytes");
  auto decoded = DecodeWithPartition(no_start);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("partition_table.partitions[0].start_bytes is missing"),
            std::string::npos)
      << decoded.status().message();
}

}  // namespace
}  // namespace hotsnap
