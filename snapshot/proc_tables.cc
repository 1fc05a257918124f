#include "snapshot/proc_tables.h"

#include <charconv>

namespace hotsnap {
namespace {

// Splits on runs of spaces/tabs. The kernel escapes whitespace inside fields, so a plain
// split is exact.
std::vector<std::string_view> SplitFields(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

template <typename Int>
bool ParseInt(std::string_view text, Int* out) {
  if (text.empty()) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && ptr == text.data() + text.size();
}

bool IsOctal(char c) { return c >= '0' && c <= '7'; }

// Calls `fn` for every line of `text`, without the newline.
template <typename Fn>
void ForEachLine(std::string_view text, Fn fn) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    fn(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
}

bool ParseMountInfoLine(std::string_view line, MountInfoEntry* entry) {
  std::vector<std::string_view> fields = SplitFields(line);
  // Six fixed fields, zero or more optional fields, "-", then fs type, source, super options.
  if (fields.size() < 9) return false;
  size_t separator = 6;
  while (separator < fields.size() && fields[separator] != "-") ++separator;
  if (separator >= fields.size()) return false;

  if (!ParseInt(fields[0], &entry->mount_id) || !ParseInt(fields[1], &entry->parent_id)) {
    return false;
  }
  std::string_view dev = fields[2];
  size_t colon = dev.find(':');
  if (colon == std::string_view::npos || !ParseInt(dev.substr(0, colon), &entry->major) ||
      !ParseInt(dev.substr(colon + 1), &entry->minor)) {
    return false;
  }
  entry->root = UnescapeOctal(fields[3]);
  entry->mount_point = UnescapeOctal(fields[4]);
  entry->mount_options = std::string(fields[5]);
  entry->optional_fields.clear();
  for (size_t i = 6; i < separator; ++i) entry->optional_fields.emplace_back(fields[i]);

  // After the separator: fs type, source, super options. A filesystem without a source
  // (some pseudo filesystems) prints an empty field, which the split collapses; then only
  // two fields follow and the last one is the super options.
  size_t rest = fields.size() - separator - 1;
  if (rest < 2) return false;
  entry->fs_type = std::string(fields[separator + 1]);
  if (rest >= 3) {
    entry->source = UnescapeOctal(fields[separator + 2]);
    entry->super_options = std::string(fields[separator + 3]);
  } else {
    entry->source.clear();
    entry->super_options = std::string(fields[separator + 2]);
  }
  return true;
}

}  // namespace

bool HasOption(std::string_view options, std::string_view name) {
  while (true) {
    size_t comma = options.find(',');
    if (options.substr(0, comma) == name) return true;
    if (comma == std::string_view::npos) return false;
    options.remove_prefix(comma + 1);
  }
}

bool MountInfoEntry::read_write() const {
  return HasOption(mount_options, "rw") && !HasOption(super_options, "ro");
}

std::string UnescapeOctal(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() && IsOctal(text[i + 1]) && IsOctal(text[i + 2]) &&
        IsOctal(text[i + 3])) {
      int value = (text[i + 1] - '0') * 64 + (text[i + 2] - '0') * 8 + (text[i + 3] - '0');
      if (value <= 0xff) {
        out.push_back(static_cast<char>(value));
        i += 3;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

std::vector<MountInfoEntry> ParseMountInfo(std::string_view text) {
  std::vector<MountInfoEntry> entries;
  ForEachLine(text, [&](std::string_view line) {
    MountInfoEntry entry;
    if (ParseMountInfoLine(line, &entry)) entries.push_back(std::move(entry));
  });
  return entries;
}

std::vector<SwapEntry> ParseSwaps(std::string_view text) {
  std::vector<SwapEntry> entries;
  ForEachLine(text, [&](std::string_view line) {
    std::vector<std::string_view> fields = SplitFields(line);
    // A removed swap file shows as "/path (deleted)": the suffix is its own field.
    bool deleted = fields.size() == 6 && fields[1] == "(deleted)";
    if (deleted) fields.erase(fields.begin() + 1);
    if (fields.size() != 5) return;
    SwapEntry entry;
    entry.path = UnescapeOctal(fields[0]);
    if (deleted) entry.path += " (deleted)";
    entry.type = std::string(fields[1]);
    if (!ParseInt(fields[2], &entry.size_kib) || !ParseInt(fields[3], &entry.used_kib) ||
        !ParseInt(fields[4], &entry.priority)) {
      return;  // also skips the header line
    }
    entries.push_back(std::move(entry));
  });
  return entries;
}

}  // namespace hotsnap
