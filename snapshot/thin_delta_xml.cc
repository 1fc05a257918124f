#include "snapshot/thin_delta_xml.h"

#include <cctype>
#include <map>

namespace hotsnap {
namespace {

// One start tag: its name, attributes, and whether it closed itself (<x/>).
struct Tag {
  std::string name;
  std::map<std::string, std::string> attrs;
  bool empty = false;
  size_t offset = 0;
};

bool IsNameChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == ':' ||
         c == '.';
}
bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

Status Bad(const std::string& what, size_t offset) {
  return Status(Code::kInternal,
                "unexpected thin_delta output at byte " + std::to_string(offset) + ": " + what);
}

// A small reader for the subset of XML thin_delta prints: elements with quoted attributes,
// whitespace between them, an optional <?xml ...?> declaration and comments.
class Reader {
 public:
  explicit Reader(const std::string& text) : s_(text) {}

  // The next markup item. Sets *tag for a start tag, *closing for an end tag's name; false
  // with *done at the end of the text.
  Status Next(Tag* tag, std::string* closing, bool* done) {
    tag->name.clear();
    tag->attrs.clear();
    closing->clear();
    *done = false;
    while (true) {
      while (pos_ < s_.size() && IsSpace(s_[pos_])) ++pos_;
      if (pos_ == s_.size()) {
        *done = true;
        return Status::Ok();
      }
      if (s_[pos_] != '<') return Bad("text outside an element", pos_);
      if (s_.compare(pos_, 2, "<?") == 0) {
        HOTSNAP_RETURN_IF_ERROR(SkipPast("?>"));
        continue;
      }
      if (s_.compare(pos_, 4, "<!--") == 0) {
        HOTSNAP_RETURN_IF_ERROR(SkipPast("-->"));
        continue;
      }
      break;
    }
    size_t start = pos_++;
    tag->offset = start;
    if (pos_ < s_.size() && s_[pos_] == '/') {
      ++pos_;
      *closing = ReadName();
      if (closing->empty()) return Bad("an end tag without a name", start);
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != '>') return Bad("an unterminated end tag", start);
      ++pos_;
      return Status::Ok();
    }
    tag->name = ReadName();
    if (tag->name.empty()) return Bad("a tag without a name", start);
    while (true) {
      SkipSpace();
      if (pos_ >= s_.size()) return Bad("an unterminated <" + tag->name + ">", start);
      if (s_[pos_] == '>') {
        ++pos_;
        tag->empty = false;
        return Status::Ok();
      }
      if (s_.compare(pos_, 2, "/>") == 0) {
        pos_ += 2;
        tag->empty = true;
        return Status::Ok();
      }
      std::string name = ReadName();
      if (name.empty()) return Bad("a malformed attribute in <" + tag->name + ">", pos_);
      SkipSpace();
      if (pos_ >= s_.size() || s_[pos_] != '=')
        return Bad("attribute " + name + " without a value", pos_);
      ++pos_;
      SkipSpace();
      if (pos_ >= s_.size() || (s_[pos_] != '"' && s_[pos_] != '\'')) {
        return Bad("attribute " + name + " without a quoted value", pos_);
      }
      char quote = s_[pos_++];
      size_t end = s_.find(quote, pos_);
      if (end == std::string::npos) return Bad("an unterminated value of " + name, pos_);
      if (!tag->attrs.emplace(name, s_.substr(pos_, end - pos_)).second) {
        return Bad("attribute " + name + " twice in <" + tag->name + ">", pos_);
      }
      pos_ = end + 1;
    }
  }

 private:
  std::string ReadName() {
    size_t start = pos_;
    while (pos_ < s_.size() && IsNameChar(s_[pos_])) ++pos_;
    return s_.substr(start, pos_ - start);
  }
  void SkipSpace() {
    while (pos_ < s_.size() && IsSpace(s_[pos_])) ++pos_;
  }
  Status SkipPast(const char* end) {
    size_t found = s_.find(end, pos_);
    if (found == std::string::npos) return Bad(std::string("no closing ") + end, pos_);
    pos_ = found + std::char_traits<char>::length(end);
    return Status::Ok();
  }

  const std::string& s_;
  size_t pos_ = 0;
};

// A decimal attribute; thin_delta prints every number in decimal.
Result<uint64_t> Number(const Tag& tag, const char* name) {
  auto it = tag.attrs.find(name);
  if (it == tag.attrs.end()) return Bad("<" + tag.name + "> without " + name, tag.offset);
  const std::string& v = it->second;
  if (v.empty() || v.size() > 20)
    return Bad(std::string(name) + "=\"" + v + "\" is not a number", tag.offset);
  uint64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9')
      return Bad(std::string(name) + "=\"" + v + "\" is not a number", tag.offset);
    uint64_t digit = static_cast<uint64_t>(c - '0');
    if (n > (UINT64_MAX - digit) / 10)
      return Bad(std::string(name) + "=\"" + v + "\" overflows", tag.offset);
    n = n * 10 + digit;
  }
  return n;
}

bool IsRangeKind(const std::string& name) {
  return name == "same" || name == "different" || name == "left_only" || name == "right_only";
}

// Records one range of kind `kind` given by `tag`'s begin and length.
Status AddRange(const std::string& kind, const Tag& tag, ThinDeltaReport* report) {
  auto begin = Number(tag, "begin");
  if (!begin.ok()) return begin.status();
  auto length = Number(tag, "length");
  if (!length.ok()) return length.status();
  if (*length > UINT64_MAX - *begin)
    return Bad("a range past the end of the address space", tag.offset);
  if (kind == "same") {
    report->same_blocks += *length;
  } else if (*length > 0) {
    report->changed.push_back({*begin, *length});
  }
  return Status::Ok();
}

}  // namespace

Result<ThinDeltaReport> ParseThinDeltaXml(const std::string& xml) {
  ThinDeltaReport report;
  Reader reader(xml);
  std::vector<std::string> open;  // names of the elements we are inside
  bool saw_superblock = false, saw_diff = false;
  while (true) {
    Tag tag;
    std::string closing;
    bool done = false;
    HOTSNAP_RETURN_IF_ERROR(reader.Next(&tag, &closing, &done));
    if (done) break;
    if (!closing.empty()) {
      if (open.empty() || open.back() != closing)
        return Bad("an unmatched </" + closing + ">", tag.offset);
      open.pop_back();
      continue;
    }
    const std::string parent = open.empty() ? "" : open.back();
    if (tag.name == "superblock") {
      if (!open.empty() || saw_superblock)
        return Bad("a second or nested <superblock>", tag.offset);
      saw_superblock = true;
      auto size = Number(tag, "data_block_size");
      if (!size.ok()) return size.status();
      if (*size == 0) return Bad("data_block_size=\"0\"", tag.offset);
      report.data_block_sectors = *size;
    } else if (tag.name == "diff") {
      if (parent != "superblock" || saw_diff)
        return Bad("a second <diff>, or one outside <superblock>", tag.offset);
      saw_diff = true;
      auto left = Number(tag, "left");
      if (!left.ok()) return left.status();
      auto right = Number(tag, "right");
      if (!right.ok()) return right.status();
      report.left_id = *left;
      report.right_id = *right;
    } else if (IsRangeKind(tag.name)) {
      if (parent != "diff") return Bad("<" + tag.name + "> outside <diff>", tag.offset);
      // The simple form carries the range itself; the verbose one holds <range> elements.
      if (tag.empty) HOTSNAP_RETURN_IF_ERROR(AddRange(tag.name, tag, &report));
    } else if (tag.name == "range") {
      if (!IsRangeKind(parent))
        return Bad("<range> outside a same/different/left_only/right_only", tag.offset);
      HOTSNAP_RETURN_IF_ERROR(AddRange(parent, tag, &report));
    } else {
      return Bad(
          "unknown element <" + tag.name + ">" + (parent.empty() ? "" : " in <" + parent + ">"),
          tag.offset);
    }
    if (!tag.empty) open.push_back(tag.name);
  }
  if (!open.empty())
    return Bad("<" + open.back() + "> is not closed (output cut short?)", xml.size());
  if (!saw_superblock || !saw_diff) return Bad("no <superblock> with a <diff>", xml.size());
  return report;
}

}  // namespace hotsnap
