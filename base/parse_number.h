// Checked parsing of numbers in kernel text (sysfs, procfs, tracefs attributes).
//
// std::stoull and friends throw on text that is not a number and accept trailing garbage;
// kernel text is outside input like any other, so its parse is a Status naming the file
// and the text found there.
#ifndef HOTSNAP_BASE_PARSE_NUMBER_H_
#define HOTSNAP_BASE_PARSE_NUMBER_H_

#include <charconv>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

#include "base/status.h"

namespace hotsnap {

// Shows `text` for an error message: quoted, at most 40 characters, control characters as
// \xNN (a newline as \n).
std::string QuoteForMessage(std::string_view text);

// Parses all of `text` as a decimal integer of type Int; leading and trailing whitespace
// (the newline of a sysfs attribute) is ignored. Fails with `code`: "<where>: expected a
// decimal number, found "<text>"" (or "... out of range ..."). `where` names the source,
// usually the file path.
template <typename Int>
Result<Int> ParseDecimal(std::string_view text, const std::string& where,
                         Code code = Code::kInternal) {
  static_assert(std::is_integral_v<Int>);
  std::string_view digits = text;
  while (!digits.empty() &&
         (digits.front() == ' ' || digits.front() == '\t' || digits.front() == '\n')) {
    digits.remove_prefix(1);
  }
  while (!digits.empty() &&
         (digits.back() == ' ' || digits.back() == '\t' || digits.back() == '\n')) {
    digits.remove_suffix(1);
  }
  Int value{};
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range) {
    return Status(code, where + ": number out of range, found " + QuoteForMessage(text));
  }
  if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size()) {
    return Status(code, where + ": expected a decimal number, found " + QuoteForMessage(text));
  }
  return value;
}

}  // namespace hotsnap

#endif  // HOTSNAP_BASE_PARSE_NUMBER_H_
