// JSON events (--json, --events-fd): every line the real binary writes validates against
// docs/events.schema.json, and the sequence tells the story of the run. Also --dry-run and
// --rate-limit, which scripts rely on. Unprivileged: the sources are regular files.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "agent/throttle.h"
#include "tests/json_schema.h"
#include "tests/test_util.h"

namespace hotsnap::testing {
namespace {

JsonSchema LoadSchema() {
  std::ifstream in(std::string(HOTSNAP_SOURCE_DIR) + "/docs/events.schema.json");
  EXPECT_TRUE(in.good()) << "docs/events.schema.json not found under " << HOTSNAP_SOURCE_DIR;
  return JsonSchema(nlohmann::json::parse(in));
}

// Parses line-delimited JSON and validates each line; fails the test on any bad line.
std::vector<nlohmann::json> ParseEvents(const std::string& text, const JsonSchema& schema) {
  std::vector<nlohmann::json> events;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
    if (j.is_discarded()) continue;
    std::string problem = schema.Validate(j);
    EXPECT_EQ(problem, "") << "event does not match the schema: " << line;
    events.push_back(j);
  }
  return events;
}

std::vector<std::string> Phases(const std::vector<nlohmann::json>& events) {
  std::vector<std::string> phases;
  for (const auto& e : events) {
    if (e["event"] == "phase") phases.push_back(e["phase"]);
  }
  return phases;
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// The validator must be able to fail, or the schema tests below prove nothing.
TEST(EventsSchemaTest, ValidatorRejectsWhatTheSchemaForbids) {
  JsonSchema schema = LoadSchema();
  nlohmann::json good = {{"event", "phase"}, {"command", "backup"}, {"time", "2026-01-02T03:04:05.678Z"},
                         {"elapsed_s", 0.5}, {"phase", "read"}};
  EXPECT_EQ(schema.Validate(good), "");

  nlohmann::json missing = good;
  missing.erase("phase");
  EXPECT_NE(schema.Validate(missing), "");
  nlohmann::json extra = good;
  extra["surprise"] = 1;
  EXPECT_NE(schema.Validate(extra), "");
  nlohmann::json wrong_type = good;
  wrong_type["elapsed_s"] = "soon";
  EXPECT_NE(schema.Validate(wrong_type), "");
  nlohmann::json bad_time = good;
  bad_time["time"] = "yesterday";
  EXPECT_NE(schema.Validate(bad_time), "");
  nlohmann::json unknown_kind = good;
  unknown_kind["event"] = "party";
  EXPECT_NE(schema.Validate(unknown_kind), "");
  nlohmann::json negative = {{"event", "progress"}, {"command", "verify"}, {"time", "2026-01-02T03:04:05.678Z"},
                             {"elapsed_s", 1}, {"phase", "scan"}, {"done_bytes", -1}, {"total_bytes", 5},
                             {"percent", 0}, {"output_bytes", 0}, {"rate_bytes_per_s", 0}, {"ratio", 0},
                             {"eta_s", 0}};
  EXPECT_NE(schema.Validate(negative), "");
  negative["done_bytes"] = 1;
  EXPECT_EQ(schema.Validate(negative), "");
}

class EventsTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kSourceBytes = 6 * 4 * 1024 * 1024;
  void SetUp() override {
    source_ = dir_.File("disk.img");
    RunOk("truncate -s " + std::to_string(kSourceBytes) + " " + Quote(source_));
    FillMixedChunks(source_, kSourceBytes);
  }
  TempDir dir_;
  std::string source_;
  JsonSchema schema_ = LoadSchema();
};

TEST_F(EventsTest, BackupVerifyRestoreEventsMatchTheSchema) {
  std::string image = dir_.File("disk.zst");
  std::string events_file = dir_.File("backup.jsonl");
  // --events-fd: stderr keeps its human messages, the events go to fd 3.
  CommandResult backup = RunOk(Hotsnap("backup " + Quote(source_) + " -o " + Quote(image) +
                                       " --json --events-fd 3 3>" + Quote(events_file)));
  auto events = ParseEvents(ReadAll(events_file), schema_);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.front()["event"], "start");
  EXPECT_EQ(events.back()["event"], "result");
  EXPECT_EQ(events.back()["command"], "backup");
  EXPECT_EQ(events.back()["device_bytes"], SizeOf(source_));
  EXPECT_EQ(events.back()["image_bytes"], SizeOf(image));
  EXPECT_TRUE(Contains(Phases(events), "read"));
  EXPECT_TRUE(Contains(Phases(events), "publish"));
  EXPECT_TRUE(events.back()["phase_seconds"].contains("read"));
  bool progress_at_end = false;
  for (const auto& e : events) {
    if (e["event"] == "progress" && e["done_bytes"] == e["total_bytes"]) progress_at_end = true;
  }
  EXPECT_TRUE(progress_at_end) << "no final progress event";
  EXPECT_NE(backup.err.find("backed up"), std::string::npos) << "human summary still on stderr";

  // --json alone: stderr carries nothing but events.
  CommandResult verify = RunOk(Hotsnap("verify " + Quote(image) + " --json"));
  auto verify_events = ParseEvents(verify.err, schema_);
  ASSERT_FALSE(verify_events.empty());
  EXPECT_EQ(verify_events.back()["event"], "result");
  EXPECT_EQ(verify_events.back()["image_hash"], events.back()["image_hash"]);
  EXPECT_TRUE(Contains(Phases(verify_events), "scan"));

  // A stream (stdin) restore, with events on fd 3.
  std::string restored = dir_.File("restored.img");
  std::string restore_events = dir_.File("restore.jsonl");
  RunOk(Hotsnap("restore - " + Quote(restored) + " --events-fd 3 <" + Quote(image) + " 3>" +
                Quote(restore_events)));
  auto r = ParseEvents(ReadAll(restore_events), schema_);
  ASSERT_FALSE(r.empty());
  EXPECT_EQ(r.back()["event"], "result");
  EXPECT_EQ(r.back()["device_bytes"], SizeOf(source_));
  EXPECT_EQ(Sha256(restored), Sha256(source_));
}

TEST_F(EventsTest, FailureEndsWithAnErrorEventCarryingTheExitCode) {
  std::string image = dir_.File("exists.zst");
  WriteFile(image, "already here");
  CommandResult r = ::hotsnap::testing::Run(Hotsnap("backup " + Quote(source_) + " -o " + Quote(image) + " --json"));
  EXPECT_EQ(r.exit_code, 4);
  auto events = ParseEvents(r.err, schema_);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back()["event"], "error");
  EXPECT_EQ(events.back()["exit_code"], 4);
  EXPECT_EQ(events.back()["code"], "target");
  EXPECT_NE(events.back()["message"].get<std::string>().find("already exists"), std::string::npos);
  EXPECT_EQ(ReadAll(image), "already here");

  CommandResult v = ::hotsnap::testing::Run(Hotsnap("verify " + Quote(dir_.File("missing.zst")) + " --json"));
  EXPECT_EQ(v.exit_code, 3);
  auto verify_events = ParseEvents(v.err, schema_);
  ASSERT_FALSE(verify_events.empty());
  EXPECT_EQ(verify_events.back()["event"], "error");
  EXPECT_EQ(verify_events.back()["exit_code"], 3);
}

TEST_F(EventsTest, DryRunPrintsThePlanAndWritesNothing) {
  std::string image = dir_.File("never.zst");
  CommandResult r = RunOk(Hotsnap("backup " + Quote(source_) + " -o " + Quote(image) +
                                  " --dry-run --rate-limit 50 --events-fd 3 3>" + Quote(dir_.File("plan.jsonl"))));
  EXPECT_NE(r.out.find("dry run"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(source_), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("50"), std::string::npos) << r.out;
  EXPECT_FALSE(PathExists(image));
  auto events = ParseEvents(ReadAll(dir_.File("plan.jsonl")), schema_);
  ASSERT_GE(events.size(), 2u);
  const nlohmann::json* plan = nullptr;
  for (const auto& e : events) {
    if (e["event"] == "plan") plan = &e;
  }
  ASSERT_NE(plan, nullptr);
  EXPECT_EQ((*plan)["plan"]["device_bytes"], SizeOf(source_));
  EXPECT_EQ((*plan)["plan"]["dest_kind"], "file");
  EXPECT_EQ((*plan)["plan"]["rate_limit_bytes_per_s"], 50000000);
  EXPECT_EQ(events.back()["dry_run"], true);
  // Nothing at all appeared in the directory but the source and the events file.
  CommandResult ls = RunOk("ls -A " + Quote(dir_.path()));
  EXPECT_EQ(ls.out, "disk.img\nplan.jsonl\n");

  // A dry run refuses what the real run would refuse.
  WriteFile(image, "x");
  EXPECT_EQ(::hotsnap::testing::Run(Hotsnap("backup " + Quote(source_) + " -o " + Quote(image) + " --dry-run")).exit_code, 4);
}

TEST_F(EventsTest, RateLimitSlowsTheReads) {
  // 24 MiB of source at 8 MB/s: six 4 MiB reads, the last one starting 20 MiB / 8 MB/s in.
  std::string image = dir_.File("slow.zst");
  std::string events_file = dir_.File("slow.jsonl");
  auto start = std::chrono::steady_clock::now();
  RunOk(Hotsnap("backup " + Quote(source_) + " -o " + Quote(image) + " --all-blocks --rate-limit 8 "
                "--events-fd 3 3>" + Quote(events_file)));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto events = ParseEvents(ReadAll(events_file), schema_);
  ASSERT_FALSE(events.empty());
  double rate = events.back()["read_rate_bytes_per_s"].get<double>();
  EXPECT_LE(rate, 8e6 * 1.25) << "read at " << rate / 1e6 << " MB/s";
  EXPECT_GE(secs, (24.0 * 1024 * 1024 - 4.0 * 1024 * 1024) / 8e6 * 0.95);
  EXPECT_EQ(::hotsnap::testing::Run(Hotsnap("backup " + Quote(source_) + " -o " + Quote(dir_.File("x.zst")) +
                        " --rate-limit 0")).exit_code, 2);
}

TEST(RateLimiterTest, PacesToTheRateWithAOneBurstAllowance) {
  using Clock = RateLimiter::Clock;
  Clock::time_point t0 = Clock::now();
  RateLimiter limiter(1000, 100);  // 1000 bytes/s, saves at most 100 while idle
  ASSERT_TRUE(limiter.Ready(t0));  // starts empty: zero tokens is enough for one read
  limiter.Charge(600, t0);         // 600 in debt
  EXPECT_FALSE(limiter.Ready(t0));
  int ms = limiter.MillisecondsUntilReady(t0);
  EXPECT_GE(ms, 599);
  EXPECT_LE(ms, 601);
  EXPECT_FALSE(limiter.Ready(t0 + std::chrono::milliseconds(500)));
  EXPECT_TRUE(limiter.Ready(t0 + std::chrono::milliseconds(610)));
  // Idle time never banks more than the burst.
  EXPECT_TRUE(limiter.Ready(t0 + std::chrono::seconds(100)));
  limiter.Charge(200, t0 + std::chrono::seconds(100));
  EXPECT_FALSE(limiter.Ready(t0 + std::chrono::seconds(100)));
  RateLimiter off(0, 0);
  off.Charge(1u << 30, t0);
  EXPECT_TRUE(off.Ready(t0));
}

}  // namespace
}  // namespace hotsnap::testing
