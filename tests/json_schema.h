// A small JSON Schema validator for the subset docs/events.schema.json uses: type (incl.
// "integer"), const, enum, minimum, pattern, properties, required, additionalProperties
// (false or a schema), items, oneOf and local $ref ("#/$defs/NAME"). Any other keyword that
// constrains values is reported as unsupported, so the schema cannot silently outgrow the
// validator. Header-only: the test binary builds from *_test.cc files plus test_util.cc.
#ifndef HOTSNAP_TESTS_JSON_SCHEMA_H_
#define HOTSNAP_TESTS_JSON_SCHEMA_H_

#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>

namespace hotsnap::testing {

class JsonSchema {
 public:
  explicit JsonSchema(nlohmann::json root) : root_(std::move(root)) {}

  // Empty when `value` conforms; else the first reason it does not, with a JSON pointer.
  std::string Validate(const nlohmann::json& value) const { return Check(root_, value, ""); }

 private:
  const nlohmann::json& Resolve(const nlohmann::json& schema) const {
    const std::string ref = schema.at("$ref").get<std::string>();
    const std::string prefix = "#/$defs/";
    if (ref.rfind(prefix, 0) != 0) throw std::runtime_error("unsupported $ref " + ref);
    return root_.at("$defs").at(ref.substr(prefix.size()));
  }

  static bool HasType(const nlohmann::json& v, const std::string& type) {
    if (type == "object") return v.is_object();
    if (type == "array") return v.is_array();
    if (type == "string") return v.is_string();
    if (type == "boolean") return v.is_boolean();
    if (type == "null") return v.is_null();
    if (type == "number") return v.is_number();
    if (type == "integer") {
      if (v.is_number_integer()) return true;
      return v.is_number_float() && v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>()));
    }
    throw std::runtime_error("unsupported type " + type);
  }

  std::string Check(const nlohmann::json& schema, const nlohmann::json& v, const std::string& at) const {
    static const std::set<std::string> kAnnotations = {"$schema", "$id", "title", "description",
                                                       "$comment", "$defs"};
    static const std::set<std::string> kSupported = {
        "$ref", "type", "const", "enum", "minimum", "pattern", "properties", "required",
        "additionalProperties", "items", "oneOf"};
    if (schema.is_boolean()) return schema.get<bool>() ? "" : at + ": not allowed";
    for (auto it = schema.begin(); it != schema.end(); ++it) {
      if (!kAnnotations.count(it.key()) && !kSupported.count(it.key())) {
        throw std::runtime_error("unsupported keyword " + it.key());
      }
    }
    if (schema.contains("$ref")) {
      std::string r = Check(Resolve(schema), v, at);
      if (!r.empty()) return r;
    }
    if (schema.contains("type")) {
      const auto& t = schema["type"];
      bool ok = false;
      if (t.is_string()) ok = HasType(v, t.get<std::string>());
      for (const auto& one : t.is_array() ? t : nlohmann::json::array()) ok = ok || HasType(v, one.get<std::string>());
      if (!ok) return at + ": expected type " + t.dump() + ", got " + v.dump();
    }
    if (schema.contains("const") && v != schema["const"]) {
      return at + ": expected " + schema["const"].dump() + ", got " + v.dump();
    }
    if (schema.contains("enum")) {
      bool found = false;
      for (const auto& e : schema["enum"]) found = found || e == v;
      if (!found) return at + ": " + v.dump() + " is not one of " + schema["enum"].dump();
    }
    if (schema.contains("minimum") && v.is_number() && v.get<double>() < schema["minimum"].get<double>()) {
      return at + ": " + v.dump() + " is below the minimum " + schema["minimum"].dump();
    }
    if (schema.contains("pattern") && v.is_string() &&
        !std::regex_search(v.get<std::string>(), std::regex(schema["pattern"].get<std::string>()))) {
      return at + ": " + v.dump() + " does not match " + schema["pattern"].get<std::string>();
    }
    if (v.is_object()) {
      for (const auto& name : schema.value("required", nlohmann::json::array())) {
        if (!v.contains(name.get<std::string>())) return at + ": missing required " + name.dump();
      }
      const nlohmann::json props = schema.value("properties", nlohmann::json::object());
      for (auto it = v.begin(); it != v.end(); ++it) {
        std::string where = at + "/" + it.key();
        if (props.contains(it.key())) {
          std::string r = Check(props[it.key()], it.value(), where);
          if (!r.empty()) return r;
        } else if (schema.contains("additionalProperties")) {
          std::string r = Check(schema["additionalProperties"], it.value(), where);
          if (!r.empty()) return r + " (additional property)";
        }
      }
    }
    if (v.is_array() && schema.contains("items")) {
      for (size_t i = 0; i < v.size(); ++i) {
        std::string r = Check(schema["items"], v[i], at + "/" + std::to_string(i));
        if (!r.empty()) return r;
      }
    }
    if (schema.contains("oneOf")) {
      int matches = 0;
      std::string reasons;
      for (const auto& option : schema["oneOf"]) {
        std::string r = Check(option, v, at);
        if (r.empty()) ++matches;
        else reasons += "\n  - " + r;
      }
      if (matches != 1) {
        return at + ": matches " + std::to_string(matches) + " of the oneOf alternatives" +
               (matches == 0 ? ":" + reasons : "");
      }
    }
    return "";
  }

  nlohmann::json root_;
};

}  // namespace hotsnap::testing

#endif  // HOTSNAP_TESTS_JSON_SCHEMA_H_
