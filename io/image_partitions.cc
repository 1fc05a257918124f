#include "io/image_partitions.h"

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <utility>

namespace hotsnap {
namespace {

// An unsigned JSON integer; throws naming `field` otherwise (a float must not be cast).
uint64_t Unsigned(const nlohmann::json& j, const char* key, const std::string& field) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_unsigned()) {
    if (it != j.end() && it->is_number_integer() && it->get<int64_t>() >= 0) {
      return it->get<uint64_t>();
    }
    throw std::invalid_argument(field + "." + key + " is missing or not a non-negative integer");
  }
  return it->get<uint64_t>();
}

std::string Text(const nlohmann::json& j, const char* key, const std::string& field) {
  auto it = j.find(key);
  if (it == j.end()) return "";
  if (!it->is_string()) throw std::invalid_argument(field + "." + key + " is not a string");
  return it->get<std::string>();
}

}  // namespace

nlohmann::ordered_json EncodePartitionTable(const ImagePartitionTable& table) {
  nlohmann::ordered_json j;
  j["type"] = table.type;
  j["uuid"] = table.uuid;
  nlohmann::ordered_json parts = nlohmann::ordered_json::array();
  for (const ImagePartition& p : table.partitions) {
    nlohmann::ordered_json e;
    e["number"] = p.number;
    e["start_bytes"] = p.start_bytes;
    e["size_bytes"] = p.size_bytes;
    e["type"] = p.type;
    e["uuid"] = p.uuid;
    e["name"] = p.name;
    e["extended"] = p.extended;
    e["fs_type"] = p.fs_type;
    e["fs_uuid"] = p.fs_uuid;
    e["fs_label"] = p.fs_label;
    e["used_bytes"] = p.used_bytes;
    e["used_map"] = p.used_map;
    parts.push_back(std::move(e));
  }
  j["partitions"] = std::move(parts);
  return j;
}

Result<ImagePartitionTable> DecodePartitionTable(const nlohmann::json& j, uint64_t device_bytes) {
  ImagePartitionTable table;
  try {
    if (!j.is_object()) throw std::invalid_argument("partition_table is not an object");
    table.type = Text(j, "type", "partition_table");
    if (table.type.empty()) throw std::invalid_argument("partition_table.type is empty");
    table.uuid = Text(j, "uuid", "partition_table");
    auto parts = j.find("partitions");
    if (parts == j.end() || !parts->is_array()) {
      throw std::invalid_argument("partition_table.partitions is missing or not an array");
    }
    for (size_t i = 0; i < parts->size(); ++i) {
      const nlohmann::json& e = (*parts)[i];
      std::string field = "partition_table.partitions[" + std::to_string(i) + "]";
      if (!e.is_object()) throw std::invalid_argument(field + " is not an object");
      ImagePartition p;
      uint64_t number = Unsigned(e, "number", field);
      if (number == 0 || number > 4096) {
        throw std::invalid_argument(field + ".number " + std::to_string(number) +
                                    " is not between 1 and 4096");
      }
      p.number = static_cast<int>(number);
      p.start_bytes = Unsigned(e, "start_bytes", field);
      p.size_bytes = Unsigned(e, "size_bytes", field);
      if (p.start_bytes > device_bytes || device_bytes - p.start_bytes < p.size_bytes) {
        throw std::invalid_argument(field + " (bytes " + std::to_string(p.start_bytes) + " + " +
                                    std::to_string(p.size_bytes) + ") runs past the " +
                                    std::to_string(device_bytes) + "-byte device");
      }
      p.type = Text(e, "type", field);
      p.uuid = Text(e, "uuid", field);
      p.name = Text(e, "name", field);
      auto ext = e.find("extended");
      if (ext != e.end() && !ext->is_boolean()) {
        throw std::invalid_argument(field + ".extended is not a boolean");
      }
      p.extended = ext != e.end() && ext->get<bool>();
      p.fs_type = Text(e, "fs_type", field);
      p.fs_uuid = Text(e, "fs_uuid", field);
      p.fs_label = Text(e, "fs_label", field);
      p.used_bytes = Unsigned(e, "used_bytes", field);
      if (p.used_bytes > p.size_bytes) {
        throw std::invalid_argument(field + ".used_bytes " + std::to_string(p.used_bytes) +
                                    " exceeds its size " + std::to_string(p.size_bytes));
      }
      p.used_map = Text(e, "used_map", field);
      table.partitions.push_back(std::move(p));
    }
  } catch (const std::exception& e) {
    return Status(Code::kIntegrity, std::string("metadata frame: ") + e.what());
  }
  return table;
}

}  // namespace hotsnap
