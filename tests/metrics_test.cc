// daemon/metrics.h and daemon/metrics_server.h: the exposition is checked by the real
// `promtool check metrics` (Debian's prometheus package), served through a real TCP socket
// on 127.0.0.1, and written to a real directory for the textfile collector.
#include "daemon/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>

#include "base/unique_fd.h"
#include "daemon/metrics_server.h"
#include "io/stale_temp_files.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using testing::Quote;
using testing::TempDir;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

#define HOTSNAP_REQUIRE_PROMTOOL()                                                       \
  do {                                                                                   \
    if (testing::Run("command -v promtool").exit_code != 0) {                            \
      if (::hotsnap::testing::InCi()) FAIL() << "CI=true but promtool is not installed"; \
      GTEST_SKIP() << "needs promtool (package prometheus, scripts/packages.txt)";       \
    }                                                                                    \
  } while (0)

// `promtool check metrics` on `text`: its exit code (0: valid and lint-clean) and output.
testing::CommandResult Promtool(const std::string& text) {
  TempDir dir;
  testing::WriteFile(dir.File("metrics.prom"), text);
  return testing::Run("promtool check metrics < " + Quote(dir.File("metrics.prom")) + " 2>&1");
}

JobMetrics FinishedJob(const std::string& name) {
  JobMetrics job;
  job.name = name;
  job.runs_succeeded = 3;
  job.runs_failed = 1;
  job.last_start_s = 1733300000;
  job.last_end_s = 1733300042;
  job.last_success_s = 1733300042;
  job.last_duration_s = 41.625;
  job.last_exit_code = 0;
  job.last_read_bytes = 123456789;
  job.last_written_bytes = 4567890;
  job.read_bytes_total = 999999999999ULL;
  job.written_bytes_total = 88888888;
  job.change_log_valid = true;
  return job;
}

// Names a config could hold, and worse: quotes, backslashes, a newline, UTF-8, a brace,
// invalid UTF-8 (from no config, but the renderer must not produce an invalid file).
std::vector<JobMetrics> AwkwardJobs() {
  std::vector<JobMetrics> jobs;
  jobs.push_back(FinishedJob("db"));
  jobs.push_back(FinishedJob("say \"cheese\""));
  jobs.push_back(FinishedJob("C:\\backups\\root"));
  jobs.push_back(FinishedJob("two\nlines"));
  jobs.push_back(FinishedJob("sauvegarde-données-€"));
  jobs.push_back(FinishedJob("} 1\nfake_metric{job=\"x\"} 2"));
  jobs.push_back(FinishedJob(std::string("bad\xff\xfe utf8 \xc0\xaf")));
  JobMetrics never;  // configured, never run
  never.name = "new job";
  jobs.push_back(never);
  JobMetrics running;  // first run in progress
  running.name = "running";
  running.running = true;
  running.last_start_s = 1733300100;
  jobs.push_back(running);
  JobMetrics failed = FinishedJob("failed");
  failed.last_exit_code = 4;
  failed.last_success_s = 0;
  failed.last_duration_s = 0.001;
  failed.change_log_valid = false;
  jobs.push_back(failed);
  return jobs;
}

AgentMetrics Agent() { return AgentMetrics{"0.1.0", 1733200000}; }

// Reverses the text format's label-value escaping; the independent reader of what we write.
std::string Unescape(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char c = s[++i];
      out += c == 'n' ? '\n' : c;
    } else {
      out += s[i];
    }
  }
  return out;
}

// The job="..." label values of every sample line, unescaped.
std::multiset<std::string> JobLabelValues(const std::string& text) {
  std::multiset<std::string> values;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol - pos);
    pos = eol == std::string::npos ? text.size() : eol + 1;
    if (line.empty() || line[0] == '#') continue;
    size_t start = line.find("{job=\"");
    if (start == std::string::npos) continue;
    start += 6;
    size_t end = start;
    while (end < line.size() && line[end] != '"') end += line[end] == '\\' ? 2 : 1;
    values.insert(Unescape(line.substr(start, end - start)));
  }
  return values;
}

TEST(MetricsTest, PromtoolAcceptsAwkwardJobs) {
  HOTSNAP_REQUIRE_PROMTOOL();
  std::string text = RenderPrometheus(AwkwardJobs(), Agent());
  testing::CommandResult check = Promtool(text);
  EXPECT_EQ(check.exit_code, 0) << check.out << "\n--- exposition:\n" << text;
  EXPECT_EQ(check.out, "") << "promtool's lint found problems";
}

TEST(MetricsTest, PromtoolAcceptsNoJobs) {
  HOTSNAP_REQUIRE_PROMTOOL();
  std::string text = RenderPrometheus({}, Agent());
  testing::CommandResult check = Promtool(text);
  EXPECT_EQ(check.exit_code, 0) << check.out << "\n--- exposition:\n" << text;
  EXPECT_TRUE(Contains(text, "hotsnap_agent_jobs 0\n")) << text;
}

// The check is not a rubber stamp: the same exposition with one raw label value, and with
// a counter that breaks the naming convention, fails it.
TEST(MetricsTest, PromtoolRejectsBrokenExpositions) {
  HOTSNAP_REQUIRE_PROMTOOL();
  std::vector<JobMetrics> jobs = {FinishedJob("say \"cheese\"")};
  std::string good = RenderPrometheus(jobs, Agent());
  ASSERT_EQ(Promtool(good).exit_code, 0);

  std::string raw = good;
  std::string escaped = "job=\"say \\\"cheese\\\"\"";
  for (size_t at; (at = raw.find(escaped)) != std::string::npos;) {
    raw.replace(at, escaped.size(), "job=\"say \"cheese\"\"");
  }
  ASSERT_NE(raw, good);
  EXPECT_NE(Promtool(raw).exit_code, 0) << "unescaped quotes passed promtool";

  std::string bad_counter = good;
  std::string total = "hotsnap_job_read_bytes_total";
  for (size_t at; (at = bad_counter.find(total)) != std::string::npos;) {
    bad_counter.replace(at, total.size(), "hotsnap_job_read_bytes");
  }
  testing::CommandResult lint = Promtool(bad_counter);
  EXPECT_NE(lint.exit_code, 0) << "a counter without _total passed promtool";
  EXPECT_TRUE(Contains(lint.out, "_total")) << lint.out;
}

TEST(MetricsTest, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\"b"), "a\\\"b");
  EXPECT_EQ(EscapeLabelValue("a\\b"), "a\\\\b");
  EXPECT_EQ(EscapeLabelValue("a\nb"), "a\\nb");
  EXPECT_EQ(EscapeLabelValue("€ é"), "€ é");  // valid UTF-8 is kept as is
  EXPECT_EQ(EscapeLabelValue("x\xffy"), "x\xEF\xBF\xBDy");
  EXPECT_EQ(EscapeLabelValue("\xc0\xaf"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
  EXPECT_EQ(EscapeLabelValue("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  EXPECT_EQ(EscapeLabelValue("cut \xe2\x82"), "cut \xEF\xBF\xBD\xEF\xBF\xBD");  // truncated €
}

// Read back by an independent unescaper, every job's series carry exactly its own name
// (the injection attempt "} 1\nfake_metric..." stays inside its label), and each job has
// the same number of series as its state calls for.
TEST(MetricsTest, LabelsRoundTripAndSeriesFollowState) {
  std::vector<JobMetrics> jobs = AwkwardJobs();
  std::string text = RenderPrometheus(jobs, Agent());
  std::multiset<std::string> values = JobLabelValues(text);
  EXPECT_FALSE(Contains(text, "\nfake_metric")) << text;
  for (const JobMetrics& job : jobs) {
    std::string expected_name = job.name;
    if (job.name.find('\xff') != std::string::npos) {
      expected_name = "bad\xEF\xBF\xBD\xEF\xBF\xBD utf8 \xEF\xBF\xBD\xEF\xBF\xBD";
    }
    // running, 2 x runs_total, last success, read/written totals, change log: 7 always;
    // + last start once started; + 5 last-run values once a run finished.
    size_t expected = 7 + (job.last_start_s ? 1 : 0) + (job.last_end_s ? 5 : 0);
    EXPECT_EQ(values.count(expected_name), expected) << "job " << job.name;
  }
  EXPECT_TRUE(Contains(text, "hotsnap_job_last_exit_code{job=\"failed\"} 4\n")) << text;
  EXPECT_TRUE(Contains(text, "hotsnap_job_last_duration_seconds{job=\"db\"} 41.625\n")) << text;
  EXPECT_TRUE(Contains(text, "hotsnap_job_read_bytes_total{job=\"db\"} 999999999999\n"));
  EXPECT_TRUE(Contains(text, "hotsnap_job_last_success_timestamp_seconds{job=\"new job\"} 0\n"));
  EXPECT_TRUE(Contains(text, "hotsnap_job_running{job=\"running\"} 1\n"));
  EXPECT_TRUE(Contains(text, "hotsnap_job_runs_total{job=\"db\",result=\"failure\"} 1\n"));
  EXPECT_TRUE(Contains(text, "hotsnap_job_change_log_valid{job=\"failed\"} 0\n"));
  EXPECT_TRUE(Contains(text, "hotsnap_agent_info{version=\"0.1.0\"} 1\n"));
  EXPECT_TRUE(Contains(text, "hotsnap_agent_jobs 10\n"));
}

// ---- The /metrics server -------------------------------------------------------------------

// A blocking client on its own thread; the test thread runs the server's loop (poll on
// server.fd() and on an eventfd the client signals when done) until the client finishes.
class Client {
 public:
  // Connects here (the listener's backlog takes it before any accept); sends `request` and
  // reads to EOF on the thread. An empty request: the client half-closes without a word.
  Client(uint16_t port, std::string request)
      : fd_(Connect(port)), done_(eventfd(0, EFD_CLOEXEC)) {
    thread_ = std::thread([this, request] {
      if (request.empty()) {
        shutdown(fd_.get(), SHUT_WR);
      } else {
        (void)!send(fd_.get(), request.data(), request.size(), MSG_NOSIGNAL);
      }
      response_ = ReadToEof(fd_.get());
      uint64_t one = 1;
      (void)!write(done_.get(), &one, sizeof(one));
    });
  }
  // A test that failed while the server still held the connection must not hang here:
  // shutting the socket down ends the thread's read.
  ~Client() {
    shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
  }
  int done_fd() const { return done_.get(); }
  const std::string& response() const { return response_; }

  static UniqueFd Connect(uint16_t port) {
    UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
        << strerror(errno);
    return fd;
  }
  static std::string ReadToEof(int fd) {
    std::string out;
    char buf[4096];
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return out;
      out.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  UniqueFd fd_;
  UniqueFd done_;
  std::string response_;
  std::thread thread_;
};

// Runs the server until `done_fd` is readable. The 20 s bound only turns a hang into a
// failure; the loop itself waits on events.
void ServeUntil(MetricsServer& server, int done_fd) {
  for (;;) {
    pollfd fds[2] = {{server.fd(), POLLIN, 0}, {done_fd, POLLIN, 0}};
    int n = poll(fds, 2, 20000);
    ASSERT_GT(n, 0) << "server loop: no event in 20 s";
    if (fds[0].revents & POLLIN) {
      Status status = server.HandleReadable();
      ASSERT_TRUE(status.ok()) << status.message();
    }
    if (fds[1].revents & POLLIN) return;
  }
}

std::string Get(MetricsServer& server, const std::string& request) {
  Client client(server.port(), request);
  ServeUntil(server, client.done_fd());
  return client.response();
}

std::string Body(const std::string& response) {
  size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

TEST(MetricsServerTest, ServesTheRenderedText) {
  std::vector<JobMetrics> jobs = AwkwardJobs();
  int renders = 0;
  Result<MetricsServer> server = MetricsServer::Listen("127.0.0.1:0", [&] {
    ++renders;
    return RenderPrometheus(jobs, Agent());
  });
  ASSERT_TRUE(server.ok()) << server.status().message();
  ASSERT_NE(server->port(), 0);
  std::string expected = RenderPrometheus(jobs, Agent());

  std::string response = Get(*server, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_TRUE(response.starts_with("HTTP/1.1 200 OK\r\n")) << response.substr(0, 200);
  EXPECT_TRUE(Contains(response, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
  EXPECT_TRUE(
      Contains(response, "\r\nContent-Length: " + std::to_string(expected.size()) + "\r\n"));
  EXPECT_EQ(Body(response), expected);
  EXPECT_EQ(renders, 1);

  // Each scrape renders anew: a changed state shows in the next response.
  jobs[0].running = true;
  response = Get(*server, "GET /metrics?name[]=x HTTP/1.0\r\n\r\n");
  EXPECT_EQ(Body(response), RenderPrometheus(jobs, Agent()));
  EXPECT_TRUE(Contains(Body(response), "hotsnap_job_running{job=\"db\"} 1\n"));

  // What was served passes promtool too.
  if (testing::Run("command -v promtool").exit_code == 0) {
    testing::CommandResult check = Promtool(Body(response));
    EXPECT_EQ(check.exit_code, 0) << check.out;
  }
  EXPECT_EQ(server->open_connections(), 0u);
}

TEST(MetricsServerTest, AnswersOtherRequestsWithErrors) {
  Result<MetricsServer> server =
      MetricsServer::Listen("127.0.0.1:0", [] { return RenderPrometheus({}, Agent()); });
  ASSERT_TRUE(server.ok()) << server.status().message();
  EXPECT_TRUE(Get(*server, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
  EXPECT_TRUE(Get(*server, "GET /metrics/x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
  EXPECT_TRUE(Get(*server, "GET /metricsx HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
  std::string post = Get(*server, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_TRUE(post.starts_with("HTTP/1.1 405 ")) << post;
  EXPECT_TRUE(Contains(post, "\r\nAllow: GET, HEAD\r\n")) << post;
  EXPECT_TRUE(Get(*server, "hello\r\n\r\n").starts_with("HTTP/1.1 400 "));
  EXPECT_TRUE(Get(*server, std::string(MetricsServer::kMaxRequestBytes + 10, 'G'))
                  .starts_with("HTTP/1.1 400 "));
  std::string head = Get(*server, "HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(head.starts_with("HTTP/1.1 200 OK\r\n")) << head;
  EXPECT_EQ(Body(head), "") << "HEAD carries no body";
  // A client that closes before sending anything costs nothing.
  EXPECT_EQ(Get(*server, ""), "");
  EXPECT_EQ(server->open_connections(), 0u);
}

// A client that sends half a request and stalls does not hold up another one: the server
// never blocks on a connection.
TEST(MetricsServerTest, ASlowClientDoesNotBlockOthers) {
  Result<MetricsServer> server =
      MetricsServer::Listen("127.0.0.1:0", [] { return RenderPrometheus({}, Agent()); });
  ASSERT_TRUE(server.ok()) << server.status().message();
  UniqueFd slow = Client::Connect(server->port());
  std::string half = "GET /metr";
  ASSERT_EQ(send(slow.get(), half.data(), half.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(half.size()));
  std::string fast = Get(*server, "GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(fast.starts_with("HTTP/1.1 200 OK\r\n")) << fast;
  EXPECT_EQ(server->open_connections(), 1u) << "the slow connection is still waited on";

  // The slow client finishes its request and gets its answer.
  std::string rest = "ics HTTP/1.1\r\n\r\n";
  ASSERT_EQ(send(slow.get(), rest.data(), rest.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(rest.size()));
  UniqueFd done(eventfd(0, EFD_CLOEXEC));
  std::string slow_response;
  std::thread reader([&] {
    slow_response = Client::ReadToEof(slow.get());
    uint64_t one = 1;
    (void)!write(done.get(), &one, sizeof(one));
  });
  ServeUntil(*server, done.get());
  reader.join();
  EXPECT_TRUE(slow_response.starts_with("HTTP/1.1 200 OK\r\n")) << slow_response;
  EXPECT_EQ(server->open_connections(), 0u);
}

// More idle connections than the limit: the oldest is closed to make room.
TEST(MetricsServerTest, ClosesTheOldestIdleConnectionBeyondTheLimit) {
  Result<MetricsServer> server =
      MetricsServer::Listen("127.0.0.1:0", [] { return RenderPrometheus({}, Agent()); });
  ASSERT_TRUE(server.ok()) << server.status().message();
  std::vector<UniqueFd> idle;
  for (size_t i = 0; i < MetricsServer::kMaxConnections; ++i) {
    idle.push_back(Client::Connect(server->port()));
    // Accept each before connecting the next, so accept order is connect order.
    while (server->open_connections() < i + 1) {
      pollfd pfd{server->fd(), POLLIN, 0};
      ASSERT_EQ(poll(&pfd, 1, 20000), 1);
      ASSERT_TRUE(server->HandleReadable().ok());
    }
  }
  // One more: the server accepts it and closes the first, which then reads EOF.
  idle.push_back(Client::Connect(server->port()));
  for (;;) {
    pollfd fds[2] = {{server->fd(), POLLIN, 0}, {idle[0].get(), POLLIN, 0}};
    ASSERT_GT(poll(fds, 2, 20000), 0) << "no event in 20 s";
    if (fds[0].revents & POLLIN) {
      ASSERT_TRUE(server->HandleReadable().ok());
    }
    if (fds[1].revents & POLLIN) break;
  }
  EXPECT_EQ(Client::ReadToEof(idle[0].get()), "") << "closed without a response";
  EXPECT_EQ(server->open_connections(), MetricsServer::kMaxConnections);
  // The others are still served: the second one gets its answer.
  std::string request = "GET /metrics HTTP/1.1\r\n\r\n";
  ASSERT_EQ(send(idle[1].get(), request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  for (;;) {
    pollfd fds[2] = {{server->fd(), POLLIN, 0}, {idle[1].get(), POLLIN | POLLRDHUP, 0}};
    ASSERT_GT(poll(fds, 2, 20000), 0) << "no event in 20 s";
    if (fds[0].revents & POLLIN) {
      ASSERT_TRUE(server->HandleReadable().ok());
    }
    if (fds[1].revents & POLLRDHUP) break;  // the whole response is in, and the FIN
  }
  EXPECT_TRUE(Client::ReadToEof(idle[1].get()).starts_with("HTTP/1.1 200 OK\r\n"));
}

TEST(MetricsServerTest, RefusesBadAddresses) {
  auto source = [] { return std::string(); };
  // (No unresolvable name here: with an unreachable DNS server that takes a timeout.)
  for (const char* bad : {"", "9977", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:http",
                          "[::1:9977", "[::1]9977", ":9977"}) {
    Result<MetricsServer> server = MetricsServer::Listen(bad, source);
    ASSERT_FALSE(server.ok()) << bad;
    EXPECT_EQ(server.status().code(), Code::kUsage) << bad << ": " << server.status().message();
  }
  Result<MetricsServer> by_name = MetricsServer::Listen("localhost:0", source);  // /etc/hosts
  EXPECT_TRUE(by_name.ok()) << by_name.status().message();
  Result<MetricsServer> first = MetricsServer::Listen("127.0.0.1:0", source);
  ASSERT_TRUE(first.ok()) << first.status().message();
  Result<MetricsServer> second =
      MetricsServer::Listen("127.0.0.1:" + std::to_string(first->port()), source);
  ASSERT_FALSE(second.ok()) << "two listeners on one port";
  EXPECT_EQ(second.status().code(), Code::kInternal);
  EXPECT_EQ(second.status().err(), EADDRINUSE) << second.status().message();
}

TEST(MetricsServerTest, ListensOnIpv6Loopback) {
  if (testing::Run("test -e /proc/net/if_inet6").exit_code != 0) GTEST_SKIP() << "no IPv6 here";
  Result<MetricsServer> server =
      MetricsServer::Listen("[::1]:0", [] { return std::string("x 1\n"); });
  if (!server.ok() && server.status().err() == EADDRNOTAVAIL) {
    GTEST_SKIP() << "no ::1 here: " << server.status().message();
  }
  ASSERT_TRUE(server.ok()) << server.status().message();
  EXPECT_NE(server->port(), 0);
}

// ---- The textfile-collector file -----------------------------------------------------------

TEST(MetricsTextfileTest, WritesReplacesAndLeavesNoTemporaryFile) {
  TempDir dir;
  std::string path = dir.File("hotsnap.prom");
  mode_t old_umask = umask(077);
  Status first = WriteTextfile(path, "first 1\n");
  Status second = WriteTextfile(path, "second 2\n");
  umask(old_umask);
  ASSERT_TRUE(first.ok()) << first.message();
  ASSERT_TRUE(second.ok()) << second.message();
  EXPECT_EQ(testing::ReadAll(path), "second 2\n");
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u) << "node_exporter must be able to read it";
  EXPECT_EQ(testing::Run("ls -A " + Quote(dir.path())).out, "hotsnap.prom\n");
}

// The rename fails (the final name is a directory): an error, and the temporary file, whose
// name io/stale_temp_files.h recognises, is gone.
TEST(MetricsTextfileTest, FailureLeavesNothingBehind) {
  TempDir dir;
  std::string path = dir.File("hotsnap.prom");
  ASSERT_EQ(mkdir(path.c_str(), 0755), 0);
  Status status = WriteTextfile(path, "x 1\n");
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), Code::kTarget);
  EXPECT_TRUE(Contains(status.message(), path)) << status.message();
  EXPECT_EQ(testing::Run("ls -A " + Quote(dir.path())).out, "hotsnap.prom\n");
  EXPECT_EQ(TemporaryFilePid(".hotsnap.prom.hotsnap-" + std::to_string(getpid()) + ".tmp"),
            getpid())
      << "the temporary name is one stale_temp_files cleans up";

  Status missing = WriteTextfile(dir.File("no/such/dir.prom"), "x 1\n");
  EXPECT_EQ(missing.code(), Code::kTarget);
}

// A reader never sees a partial file: while one thread rewrites the file between two
// contents, another reads it, and every read is one of the two, whole.
TEST(MetricsTextfileTest, ReadersSeeWholeFilesOnly) {
  TempDir dir;
  std::string path = dir.File("hotsnap.prom");
  std::string a = RenderPrometheus(AwkwardJobs(), Agent());
  std::string b = RenderPrometheus({FinishedJob("other")}, Agent());
  ASSERT_TRUE(WriteTextfile(path, a).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0}, torn{0};
  std::thread reader([&] {
    while (!stop) {
      std::string seen = testing::ReadAll(path);
      if (seen != a && seen != b) ++torn;
      ++reads;
    }
  });
  for (int i = 0; i < 100; ++i) {
    Status status = WriteTextfile(path, i % 2 ? a : b);
    EXPECT_TRUE(status.ok()) << status.message();
    if (!status.ok()) break;  // and join the reader below
  }
  stop = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0) << "of " << reads.load() << " reads";
  EXPECT_GT(reads.load(), 0);
}

}  // namespace
}  // namespace hotsnap
