// Checked parsing of kernel text (base/parse_number.h) and Status::WithCleanup: pure
// functions, every expected value written out by hand.
#include "base/parse_number.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "base/status.h"

namespace hotsnap {
namespace {

TEST(ParseDecimalTest, AcceptsASysfsAttribute) {
  auto start = ParseDecimal<uint64_t>("2048\n", "/sys/dev/block/7:1/start");
  ASSERT_TRUE(start.ok()) << start.status().message();
  EXPECT_EQ(*start, 2048u);
  auto max = ParseDecimal<uint64_t>("18446744073709551615", "x");
  ASSERT_TRUE(max.ok()) << max.status().message();
  EXPECT_EQ(*max, UINT64_MAX);
  auto small = ParseDecimal<uint32_t>(" 16\t", "x");
  ASSERT_TRUE(small.ok()) << small.status().message();
  EXPECT_EQ(*small, 16u);
}

TEST(ParseDecimalTest, BadTextIsAStatusNamingTheFileAndTheText) {
  const std::string where = "/sys/kernel/tracing/events/block/block_bio_queue/id";
  for (const char* bad : {"", "\n", "abc", "12abc", "-1", "1 2", "0x10", "+5"}) {
    auto id = ParseDecimal<uint64_t>(bad, where, Code::kUnsupported);
    ASSERT_FALSE(id.ok()) << "accepted \"" << bad << "\"";
    EXPECT_EQ(id.status().code(), Code::kUnsupported);
    EXPECT_EQ(id.status().message().rfind(where + ": expected a decimal number", 0), 0u)
        << id.status().message();
  }
  auto garbage = ParseDecimal<uint64_t>("12abc\n", where);
  EXPECT_NE(garbage.status().message().find("found \"12abc\\n\""), std::string::npos)
      << garbage.status().message();
  auto big = ParseDecimal<uint32_t>("4294967296", "size");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().message(), "size: number out of range, found \"4294967296\"");
  EXPECT_EQ(ParseDecimal<int>("2147483648", "cpu").status().code(), Code::kInternal);
}

TEST(QuoteForMessageTest, EscapesControlBytesAndTruncates) {
  EXPECT_EQ(QuoteForMessage("a\x01\"b"), "\"a\\x01\\x22b\"");
  EXPECT_EQ(QuoteForMessage(std::string(50, 'x')), "\"" + std::string(40, 'x') + "\"...");
}

TEST(StatusTest, WithCleanupKeepsBothErrors) {
  Status step(Code::kSource, "while-frozen hook failed", 5);
  Status cleanup(Code::kSource, "thawing /mnt (FITHAW): Input/output error", 5);
  Status both = step.WithCleanup(cleanup);
  EXPECT_EQ(both.code(), Code::kSource);
  EXPECT_EQ(both.err(), 5);
  EXPECT_EQ(
      both.message(),
      "while-frozen hook failed; while cleaning up: thawing /mnt (FITHAW): Input/output error");
  EXPECT_EQ(step.WithCleanup(Status::Ok()).message(), "while-frozen hook failed");
  Status only_cleanup = Status::Ok().WithCleanup(cleanup);
  EXPECT_EQ(only_cleanup.message(), cleanup.message());
  EXPECT_TRUE(Status::Ok().WithCleanup(Status::Ok()).ok());
}

}  // namespace
}  // namespace hotsnap
