// The agent's configuration file (daemon/config.h): what each key becomes, and that every
// mistake is an error naming file:line, the job and the key. Schedules are checked with the
// real calendar parser (daemon/calendar.h).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <time.h>

#include <chrono>
#include <string>
#include <vector>

#include "daemon/calendar.h"
#include "daemon/config.h"
#include "daemon/schedule.h"
#include "daemon/time_span.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

constexpr const char* kPath = "/etc/hotsnap/hotsnap.toml";

Result<AgentConfig> ParseText(const std::string& text) {
  return ParseAgentConfig(text, kPath, CalendarEventError);
}

const char* kMinimalJob = R"([[job]]
name = "db"
sources = ["/dev/vg0/db"]
repository = "/srv/backup/db"
schedule = "daily"
)";

TEST(AgentConfigTest, MinimalJobGetsTheDefaults) {
  Result<AgentConfig> config = ParseText(kMinimalJob);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->path, kPath);
  EXPECT_EQ(config->state_dir, "/var/lib/hotsnap");
  EXPECT_EQ(config->socket_path, "/run/hotsnap/agent.sock");
  EXPECT_EQ(config->metrics_textfile, "");
  EXPECT_EQ(config->metrics_listen, "");
  ASSERT_EQ(config->jobs.size(), 1u);
  const JobConfig& job = config->jobs[0];
  EXPECT_EQ(job.name, "db");
  EXPECT_EQ(job.line, 1);
  EXPECT_EQ(job.sources, std::vector<std::string>{"/dev/vg0/db"});
  EXPECT_EQ(job.repository, "/srv/backup/db");
  EXPECT_EQ(job.schedule, "daily");
  EXPECT_EQ(job.schedule_line, 5);
  EXPECT_TRUE(job.persistent);
  EXPECT_EQ(job.randomized_delay, std::chrono::seconds(0));
  EXPECT_TRUE(job.keep.Empty());
  EXPECT_EQ(job.full_every, 7u);
  EXPECT_EQ(job.snapshot, SnapshotMode::kAuto);
  EXPECT_EQ(job.level, 3);
  EXPECT_EQ(job.rate_limit_bytes_per_s, 0u);
  EXPECT_EQ(job.hooks.timeout, std::chrono::milliseconds(30000));
  EXPECT_TRUE(job.health_check_url.empty());
}

TEST(AgentConfigTest, EveryKeyIsRead) {
  Result<AgentConfig> config = ParseText(R"(
[agent]
state_dir = "/var/lib/hs"
socket = "/run/hs.sock"
metrics_textfile = "/var/lib/node/hotsnap.prom"
metrics_listen = "127.0.0.1:9977"

[[job]]
name = "web"
sources = "machine"
repository = "ssh://backup@vault/srv/web"
schedule = "Mon..Fri 02:00"
persistent = false
randomized_delay = "1h 30min"
keep_last = 3
keep_hourly = 24
keep_daily = 7
keep_weekly = 4
keep_monthly = 12
keep_yearly = 2
full_every = 0
pre_freeze = "sync"
while_frozen = "true"
post_thaw = "echo thawed"
hook_timeout = "2min"
crash_consistent = true
snapshot = "lvm-thin"
level = 9
rate_limit = "50M"
allow_crash_consistent = ["/boot/efi"]
ssh_options = ["Port=2222", "IdentityFile=/etc/hotsnap/key"]
health_check_url = "https://hc.example/ping/abc"
)");
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->state_dir, "/var/lib/hs");
  EXPECT_EQ(config->socket_path, "/run/hs.sock");
  EXPECT_EQ(config->metrics_textfile, "/var/lib/node/hotsnap.prom");
  EXPECT_EQ(config->metrics_listen, "127.0.0.1:9977");
  ASSERT_EQ(config->jobs.size(), 1u);
  const JobConfig& job = config->jobs[0];
  EXPECT_EQ(job.line, 8);
  EXPECT_EQ(job.sources, std::vector<std::string>{"machine"});
  EXPECT_EQ(job.repository, "ssh://backup@vault/srv/web");
  EXPECT_FALSE(job.persistent);
  EXPECT_EQ(job.randomized_delay, std::chrono::seconds(5400));
  EXPECT_EQ(job.keep.keep_last, 3);
  EXPECT_EQ(job.keep.keep_hourly, 24);
  EXPECT_EQ(job.keep.keep_daily, 7);
  EXPECT_EQ(job.keep.keep_weekly, 4);
  EXPECT_EQ(job.keep.keep_monthly, 12);
  EXPECT_EQ(job.keep.keep_yearly, 2);
  EXPECT_EQ(job.full_every, 0u);
  EXPECT_EQ(job.hooks.pre_freeze, "sync");
  EXPECT_EQ(job.hooks.while_frozen, "true");
  EXPECT_EQ(job.hooks.post_thaw, "echo thawed");
  EXPECT_EQ(job.hooks.timeout, std::chrono::milliseconds(120000));
  EXPECT_TRUE(job.hooks.crash_consistent_ok);
  EXPECT_EQ(job.snapshot, SnapshotMode::kLvmThin);
  EXPECT_EQ(job.level, 9);
  EXPECT_EQ(job.rate_limit_bytes_per_s, 50000000u);
  EXPECT_EQ(job.allow_crash_consistent, std::vector<std::string>{"/boot/efi"});
  EXPECT_EQ(job.ssh_options,
            (std::vector<std::string>{"Port=2222", "IdentityFile=/etc/hotsnap/key"}));
  EXPECT_EQ(job.health_check_url, "https://hc.example/ping/abc");
}

TEST(AgentConfigTest, SubtablesAndNamedJobTables) {
  Result<AgentConfig> config = ParseText(R"([job.db]
sources = ["/dev/sdb"]
repository = "/srv/b"
schedule = "hourly"
[job.db.keep]
last = 5
daily = 3
[job.db.hooks]
pre_freeze = "a"
hook_timeout = 45

[job.logs]
name = "logs"
sources = ["/dev/sdc"]
repository = "/srv/c"
schedule = "weekly"
)");
  ASSERT_TRUE(config.ok()) << config.status().message();
  ASSERT_EQ(config->jobs.size(), 2u);
  EXPECT_EQ(config->jobs[0].name, "db");
  EXPECT_EQ(config->jobs[0].keep.keep_last, 5);
  EXPECT_EQ(config->jobs[0].keep.keep_daily, 3);
  EXPECT_EQ(config->jobs[0].hooks.pre_freeze, "a");
  EXPECT_EQ(config->jobs[0].hooks.timeout, std::chrono::milliseconds(45000));
  EXPECT_EQ(config->jobs[1].name, "logs");
}

TEST(AgentConfigTest, RateLimitAndDelaySpellings) {
  struct Case {
    const char* value;
    uint64_t bytes_per_s;
  };
  for (const Case& c : std::vector<Case>{{"\"50M\"", 50000000},
                                         {"\"512K\"", 512000},
                                         {"\"1.5M\"", 1500000},
                                         {"\"2G\"", 2000000000},
                                         {"\"10MB/s\"", 10000000},
                                         {"\"1000000\"", 1000000},
                                         {"20", 20000000},
                                         {"0.5", 500000}}) {
    SCOPED_TRACE(c.value);
    Result<AgentConfig> config =
        ParseText(std::string(kMinimalJob) + "rate_limit = " + c.value + "\n");
    ASSERT_TRUE(config.ok()) << config.status().message();
    EXPECT_EQ(config->jobs[0].rate_limit_bytes_per_s, c.bytes_per_s);
  }
  struct Span {
    const char* value;
    int64_t seconds;
  };
  for (const Span& s : std::vector<Span>{{"\"15min\"", 900},
                                         {"\"1h 30min\"", 5400},
                                         {"\"2h30m\"", 9000},
                                         {"\"90\"", 90},
                                         {"\"1d\"", 86400},
                                         {"\"30s\"", 30},
                                         {"600", 600},
                                         {"\"0\"", 0}}) {
    SCOPED_TRACE(s.value);
    Result<AgentConfig> config =
        ParseText(std::string(kMinimalJob) + "randomized_delay = " + s.value + "\n");
    ASSERT_TRUE(config.ok()) << config.status().message();
    EXPECT_EQ(config->jobs[0].randomized_delay, std::chrono::seconds(s.seconds));
  }
}

struct BadConfig {
  const char* what;
  std::string text;
  std::string message;  // the whole message, or its start when it ends in "..."
};

std::string Job(const std::string& extra) { return std::string(kMinimalJob) + extra; }

TEST(AgentConfigTest, MistakesAreErrorsNamingFileLineJobAndKey) {
  const std::string p = std::string(kPath) + ":";
  const std::vector<BadConfig> cases = {
      {"syntax", "[[job]\nname = 1\n", p + "1: ..."},
      {"unknown top-level key", "jobs = 1\n",
       p + "1: jobs: unknown key (expected [agent] or [[job]])"},
      {"unknown agent key", "[agent]\nstate_dri = \"/x\"\n",
       p + "2: agent.state_dri: unknown key (expected state_dir, socket, metrics_textfile, "
           "metrics_listen)"},
      {"relative state_dir", "[agent]\nstate_dir = \"var\"\n",
       p + "2: agent.state_dir: expected an absolute path, found \"var\""},
      {"bad listen", "[agent]\nmetrics_listen = \"localhost\"\n",
       p + "2: agent.metrics_listen: expected HOST:PORT (e.g. \"127.0.0.1:9977\"), found "
           "\"localhost\""},
      {"agent not a table", "agent = 3\n",
       p + "1: agent: expected a table ([agent]), found an integer"},
      {"unknown job key", Job("schedul = \"daily\"\n"), p + "6: job 'db': schedul: unknown key"},
      {"wrong type", Job("persistent = \"yes\"\n"),
       p + "6: job 'db': persistent: expected true or false, found a string"},
      {"wrong element type", Job("ssh_options = [\"a\", 2]\n"),
       p + "6: job 'db': ssh_options: expected an array of strings, found an integer"},
      {"keep wrong type", Job("keep_daily = \"7\"\n"),
       p + "6: job 'db': keep_daily: expected an integer, found a string"},
      {"keep negative", Job("keep_last = -1\n"),
       p + "6: job 'db': keep_last: must be between 0 and 1000000, found -1"},
      {"unknown keep key", Job("[job.keep]\nlast = 1\ndayly = 2\n"),
       p + "8: job 'db': keep.dayly: unknown key (expected last, hourly, daily, weekly, monthly, "
           "yearly)"},
      {"keep twice", Job("keep_last = 1\n[job.keep]\ndaily = 2\n"),
       p + "1: job 'db': keep: give keep_* keys or a [job.keep] table, not both"},
      {"bad schedule", Job("").replace(Job("").find("\"daily\""), 7, "\"Mon..Fry\""),
       p + "5: job 'db': schedule: invalid calendar event \"Mon..Fry\": expected a weekday at "
           "\"Fry\""},
      {"schedule out of range", Job("").replace(Job("").find("\"daily\""), 7, "\"*-*-* 25:00\""),
       p + "5: job 'db': schedule: invalid calendar event \"*-*-* 25:00\": hour 25 is out of range "
           "(0..23)"},
      {"missing name", "[[job]]\nsources = [\"/dev/a\"]\n",
       p + "1: name: missing (every job needs a name)"},
      {"missing sources", "[[job]]\nname = \"a\"\nrepository = \"/r\"\nschedule = \"daily\"\n",
       p + "1: job 'a': sources: missing (every job needs one)"},
      {"missing repository",
       "[[job]]\nname = \"a\"\nsources = [\"/dev/a\"]\nschedule = \"daily\"\n",
       p + "1: job 'a': repository: missing (every job needs one)"},
      {"missing schedule",
       "\n\n[[job]]\nname = \"a\"\nsources = [\"/dev/a\"]\nrepository = \"/r\"\n",
       p + "3: job 'a': schedule: missing (every job needs one)"},
      {"duplicate job", Job("\n") + kMinimalJob,
       p + "7: job 'db': name: duplicate job name (first defined at line 1)"},
      {"bad job name", "[[job]]\nname = \"a/b\"\n",
       p + "2: name: \"a/b\": use 1 to 64 letters, digits, '-', '_' or '.' (not first)"},
      {"name differs from table", "[job.a]\nname = \"b\"\n",
       p + "2: job 'a': name: \"b\" differs from the table's name [job.a]"},
      {"relative source", "[[job]]\nname = \"a\"\nsources = [\"sda\"]\n",
       p + "3: job 'a': sources: expected device paths or \"machine\", found \"sda\""},
      {"machine with devices", "[[job]]\nname = \"a\"\nsources = [\"machine\", \"/dev/sda\"]\n",
       p + "3: job 'a': sources: \"machine\" stands for every disk and cannot be combined with "
           "devices"},
      {"duplicate source", "[[job]]\nname = \"a\"\nsources = [\"/dev/a\", \"/dev/a\"]\n",
       p + "3: job 'a': sources: \"/dev/a\" is given twice"},
      {"empty sources", "[[job]]\nname = \"a\"\nsources = []\n", p + "3: job 'a': sources: empty"},
      {"relative repository", "[[job]]\nname = \"a\"\nrepository = \"backups\"\n",
       p + "3: job 'a': repository: expected an absolute directory or ssh://[user@]host/path, "
           "found \"backups\""},
      {"bad snapshot", Job("snapshot = \"zfs\"\n"), p + "6: job 'db': snapshot: ..."},
      {"bad level", Job("level = 23\n"),
       p + "6: job 'db': level: must be between -131072 and 22, found 23"},
      {"bad rate", Job("rate_limit = \"fast\"\n"),
       p + "6: job 'db': rate_limit: expected a rate like \"50M\" (MB/s) or \"512K\", found "
           "\"fast\""},
      {"rate too small", Job("rate_limit = \"1K\"\n"),
       p + "6: job 'db': rate_limit: must be between 0.1 and 1000000 MB/s (like --rate-limit)"},
      {"bad delay unit", Job("randomized_delay = \"15 parsecs\"\n"),
       p + "6: job 'db': randomized_delay: invalid time span \"15 parsecs\": unknown unit "
           "\"parsecs\"..."},
      {"negative delay", Job("randomized_delay = -5\n"),
       p + "6: job 'db': randomized_delay: out of range"},
      {"delay too long", Job("randomized_delay = \"8d\"\n"),
       p + "6: job 'db': randomized_delay: at most a week"},
      {"hook timeout zero", Job("hook_timeout = 0\n"),
       p + "6: job 'db': hook_timeout: must be more than 0 and at most 1 day"},
      {"unknown hook", Job("[job.hooks]\npre_frezee = \"x\"\n"),
       p + "7: job 'db': hooks.pre_frezee: unknown key (expected pre_freeze, while_frozen, "
           "post_thaw, hook_timeout, crash_consistent)"},
      {"hook wrong type", Job("pre_freeze = [\"a\"]\n"),
       p + "6: job 'db': pre_freeze: expected a string, found an array"},
      {"bad health url", Job("health_check_url = \"hc.example\"\n"),
       p + "6: job 'db': health_check_url: expected an http:// or https:// URL, found "
           "\"hc.example\""},
      {"job not a table", "job = 3\n", p + "1: job: expected [[job]] tables, found an integer"},
      {"named job not a table", "[job]\ndb = 3\n",
       p + "2: job.db: expected a [job.NAME] table (or use [[job]] tables), found an integer"},
      {"duplicate key (toml)", Job("level = 1\nlevel = 2\n"), p + "7: ..."},
  };
  for (const BadConfig& c : cases) {
    SCOPED_TRACE(c.what);
    Result<AgentConfig> config = ParseText(c.text);
    ASSERT_FALSE(config.ok()) << c.text;
    EXPECT_EQ(config.status().code(), Code::kUsage);
    const std::string& message = config.status().message();
    if (c.message.size() > 3 && c.message.compare(c.message.size() - 3, 3, "...") == 0) {
      EXPECT_EQ(message.substr(0, c.message.size() - 3), c.message.substr(0, c.message.size() - 3))
          << message;
    } else {
      EXPECT_EQ(message, c.message);
    }
  }
}

TEST(AgentConfigTest, ScheduleValidatorIsTheCallersAndItsMessageIsQuoted) {
  int calls = 0;
  ScheduleValidator refuse_all = [&calls](const std::string& schedule) {
    ++calls;
    return "refused " + schedule;
  };
  Result<AgentConfig> config = ParseAgentConfig(kMinimalJob, "x.toml", refuse_all);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().message(), "x.toml:5: job 'db': schedule: refused daily");
  EXPECT_EQ(calls, 1);
}

TEST(AgentConfigTest, LoadReadsTheFileAndNamesAMissingOne) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/hotsnap.toml";
  testing::WriteFile(path, kMinimalJob);
  Result<AgentConfig> config = LoadAgentConfig(path, CalendarEventError);
  ASSERT_TRUE(config.ok()) << config.status().message();
  EXPECT_EQ(config->path, path);
  EXPECT_EQ(config->jobs.size(), 1u);
  Result<AgentConfig> missing = LoadAgentConfig(dir.path() + "/none.toml", CalendarEventError);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kUsage);
  EXPECT_NE(missing.status().message().find("none.toml"), std::string::npos);
}

TEST(AgentConfigTest, TheShippedExampleIsValid) {
  const std::string path = std::string(HOTSNAP_SOURCE_DIR) + "/dist/hotsnap.toml.example";
  Result<AgentConfig> config = LoadAgentConfig(path, CalendarEventError);
  ASSERT_TRUE(config.ok()) << config.status().message();
  ASSERT_EQ(config->jobs.size(), 2u);
  EXPECT_EQ(config->jobs[0].name, "db");
  EXPECT_EQ(config->jobs[0].keep.keep_daily, 7);
  EXPECT_EQ(config->jobs[0].hooks.pre_freeze, "psql -c CHECKPOINT");
  EXPECT_EQ(config->jobs[1].sources, std::vector<std::string>{"machine"});
}

TEST(AgentConfigTest, CheckConfigCommand) {
  const std::string example = std::string(HOTSNAP_SOURCE_DIR) + "/dist/hotsnap.toml.example";
  testing::CommandResult ok =
      testing::Run(testing::Hotsnap("agent check-config --config " + testing::Quote(example)));
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("OK, 2 jobs"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("job db (line 13)"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("schedule:   Mon..Fri *-*-* 02:00:00"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("schedule:   *-*-* 00/6:00:00"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("next run:   "), std::string::npos) << ok.out;

  testing::TempDir dir;
  const std::string bad = dir.path() + "/bad.toml";
  testing::WriteFile(bad, Job("level = \"high\"\n"));
  testing::CommandResult refused =
      testing::Run(testing::Hotsnap("agent check-config --config " + testing::Quote(bad)));
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_NE(refused.err.find(bad + ":6: job 'db': level: expected an integer, found a string"),
            std::string::npos)
      << refused.err;

  // A stamp two days old: the persistent job is due now, as the agent would run it.
  const std::string state = dir.path() + "/state";
  ASSERT_EQ(mkdir(state.c_str(), 0755), 0);
  const int64_t two_days_ago_us = (static_cast<int64_t>(time(nullptr)) - 2 * 86400) * 1000000;
  ASSERT_TRUE(StampStore(state).Store("db", two_days_ago_us).ok());
  const std::string late = dir.path() + "/late.toml";
  testing::WriteFile(late, "[agent]\nstate_dir = \"" + state + "\"\n" + Job(""));
  testing::CommandResult due =
      testing::Run(testing::Hotsnap("agent check-config --config " + testing::Quote(late)));
  EXPECT_EQ(due.exit_code, 0) << due.err;
  EXPECT_NE(due.out.find("next run:   now (catching up the run of "), std::string::npos) << due.out;
  EXPECT_EQ(due.out.find("last run:   never"), std::string::npos) << due.out;

  testing::CommandResult unknown = testing::Run(testing::Hotsnap("agent frobnicate"));
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.err.find("unknown agent subcommand 'frobnicate'"), std::string::npos)
      << unknown.err;
  EXPECT_EQ(testing::Run(testing::Hotsnap("agent")).exit_code, 2);
}

}  // namespace
}  // namespace hotsnap
