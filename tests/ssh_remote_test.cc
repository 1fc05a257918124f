// ssh:// destinations and images, against a real sshd (Debian's openssh-server) that the
// fixture starts on 127.0.0.1 with host and user keys generated into a temporary directory.
// The "remote" directory is on this machine, so the tests look at it directly.
#include "io/ssh_remote.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "tests/ssh_server.h"
#include "tests/test_util.h"

namespace hotsnap::testing {
namespace {

// ---- Unprivileged: URL parsing, quoting, argv ---------------------------------------------

TEST(SshUrlTest, ParsesUserHostPortAndPath) {
  auto url = ParseSshUrl("ssh://backup@store.example:2222/srv/images/a.zst");
  ASSERT_TRUE(url.ok()) << url.status().message();
  EXPECT_EQ(url->user, "backup");
  EXPECT_EQ(url->host, "store.example");
  EXPECT_EQ(url->port, 2222);
  EXPECT_EQ(url->path, "/srv/images/a.zst");
  auto v6 = ParseSshUrl("ssh://[::1]:22/x.zst");
  ASSERT_TRUE(v6.ok()) << v6.status().message();
  EXPECT_EQ(v6->host, "::1");
  auto plain = ParseSshUrl("ssh://host/~/x.zst");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->user, "");
  EXPECT_EQ(plain->port, 0);
}

TEST(SshUrlTest, RefusesWhatCouldBeMisread) {
  for (const char* bad : {"ssh://-oProxyCommand=x/a.zst", "ssh://-l@host/a", "ssh://host",
                          "ssh://host/", "ssh://host/dir/", "ssh://host:0/a", "ssh://host:99999/a",
                          "ssh://host:x/a", "ssh://us er@host/a", "ssh:///a", "ssh://host/a\nb",
                          "ssh://host/a\rb", "ssh://ho;st/a", "ssh://host/..", "scp://host/a"}) {
    auto url = ParseSshUrl(bad);
    EXPECT_FALSE(url.ok()) << "accepted " << bad;
    if (!url.ok()) EXPECT_EQ(url.status().code(), Code::kUsage);
  }
}

TEST(SshUrlTest, QuotesForThePosixShell) {
  EXPECT_EQ(ShellQuote("plain"), "'plain'");
  EXPECT_EQ(ShellQuote("it's $HOME `x`"), "'it'\\''s $HOME `x`'");
  CommandResult r = RunOk("printf %s " + ShellQuote("a'b\"c$d`e\\f g"));
  EXPECT_EQ(r.out, "a'b\"c$d`e\\f g");
}

TEST(SshUrlTest, ArgvHasBatchModeUserOptionsFirstAndEndsOptionParsing) {
  auto url = ParseSshUrl("ssh://u@h:2200/p/x.zst");
  ASSERT_TRUE(url.ok());
  auto argv = SshArgv(*url, SshOptions{{"IdentityFile=/k"}}, "true");
  std::vector<std::string> head(argv.begin(), argv.begin() + 8);
  EXPECT_EQ(head, (std::vector<std::string>{"ssh", "-T", "-x", "-a", "-o", "BatchMode=yes", "-o",
                                            "IdentityFile=/k"}));
  ASSERT_GE(argv.size(), 3u);
  EXPECT_EQ(argv[argv.size() - 3], "--");
  EXPECT_EQ(argv[argv.size() - 2], "h");
  EXPECT_EQ(argv.back(), "true");
  for (const auto& a : argv) EXPECT_EQ(a.find("StrictHostKeyChecking"), std::string::npos);
}

// ---- Process helpers ----------------------------------------------------------------------

using ::hotsnap::testing::ListDir;

std::vector<std::string> CmdlineOf(pid_t pid) {
  std::string raw = ReadAll("/proc/" + std::to_string(pid) + "/cmdline");
  std::vector<std::string> args;
  std::string cur;
  for (char c : raw) {
    if (c == '\0') {
      args.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) args.push_back(cur);
  return args;
}

class SshRemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HOTSNAP_REQUIRE_PRIVILEGED();
    if (access(kSshd, X_OK) != 0 || ::hotsnap::testing::Run("command -v ssh").exit_code != 0) {
      if (InCi()) FAIL() << "CI=true but openssh-server/openssh-client are not installed";
      if (::hotsnap::testing::InCi())
        FAIL() << "CI=true but "
               << "needs openssh-server and openssh-client (scripts/packages.txt)";
      GTEST_SKIP() << "needs openssh-server and openssh-client (scripts/packages.txt)";
    }
    server_ = std::make_unique<SshServer>(dir_.File(""));
    remote_ = dir_.File("remote");
    RunOk("mkdir -p " + Quote(remote_));
    source_ = dir_.File("disk.img");
  }
  void MakeSource(uint64_t bytes) {
    RunOk("truncate -s " + std::to_string(bytes) + " " + Quote(source_));
    FillMixedChunks(source_, bytes);
  }
  // Starts `hotsnap ARGS` in the background; stdout/stderr in the temp dir.
  int Start(const std::string& args) {
    return Spawn(Hotsnap(args), dir_.File("hotsnap.out"), dir_.File("hotsnap.err"));
  }
  std::string Stderr() { return ReadAll(dir_.File("hotsnap.err")); }
  // Waits until the remote temporary file holds at least `bytes`; returns its name.
  std::string WaitForTemporary(uint64_t bytes) {
    std::string found;
    WaitUntil(
        [&] {
          for (const std::string& n : ListDir(remote_)) {
            if (n.find(".hotsnap-") != std::string::npos && SizeOf(remote_ + "/" + n) >= bytes)
              found = n;
          }
          return !found.empty();
        },
        90);
    return found;
  }

  TempDir dir_;
  std::unique_ptr<SshServer> server_;
  std::string remote_;
  std::string source_;
};

TEST_F(SshRemoteTest, BackupThenRestoreAndVerifyOverSshAreByteIdentical) {
  MakeSource(10 * 4 * 1024 * 1024 + 512 * 1024);
  std::string url = server_->Url(remote_ + "/img.zst");
  CommandResult backup =
      RunOk(Hotsnap("backup " + Quote(source_) + " -o " + Quote(url) + server_->Options()));
  EXPECT_EQ(ListDir(remote_), std::vector<std::string>{"img.zst"}) << "leftover temporary file";
  // The remote copy is a complete, valid image: hotsnap reads it locally too.
  RunOk(Hotsnap("verify " + Quote(remote_ + "/img.zst")));
  CommandResult verify = RunOk(Hotsnap("verify " + Quote(url) + server_->Options()));
  EXPECT_NE(verify.out.find("OK"), std::string::npos);
  CommandResult info = RunOk(Hotsnap("info " + Quote(url) + server_->Options()));
  EXPECT_NE(info.out.find("yes (read in full)"), std::string::npos) << info.out;
  std::string restored = dir_.File("restored.img");
  RunOk(Hotsnap("restore " + Quote(url) + " " + Quote(restored) + server_->Options()));
  EXPECT_EQ(Sha256(restored), Sha256(source_));
  // The stock tool agrees with what arrived.
  CommandResult zstd = RunOk("zstd -dc " + Quote(remote_ + "/img.zst") + " | sha256sum");
  EXPECT_EQ(zstd.out.substr(0, 64), Sha256(source_));

  // An existing name is refused (exit 4) and left alone; --overwrite replaces it.
  std::string before = Sha256(remote_ + "/img.zst");
  CommandResult again = ::hotsnap::testing::Run(
      Hotsnap("backup " + Quote(source_) + " -o " + Quote(url) + server_->Options()));
  EXPECT_EQ(again.exit_code, 4) << again.err;
  EXPECT_NE(again.err.find("already exists"), std::string::npos) << again.err;
  EXPECT_EQ(Sha256(remote_ + "/img.zst"), before);
  RunOk(Hotsnap("backup " + Quote(source_) + " -o " + Quote(url) + " --overwrite" +
                server_->Options()));
  EXPECT_EQ(ListDir(remote_), std::vector<std::string>{"img.zst"});
  RunOk(Hotsnap("verify " + Quote(remote_ + "/img.zst")));
  // A missing directory is named.
  CommandResult nodir = ::hotsnap::testing::Run(
      Hotsnap("backup " + Quote(source_) + " -o " + Quote(server_->Url(remote_ + "/nope/img.zst")) +
              server_->Options()));
  EXPECT_EQ(nodir.exit_code, 4);
  EXPECT_NE(nodir.err.find("does not exist"), std::string::npos) << nodir.err;
}

TEST_F(SshRemoteTest, KilledRemoteCatFailsTheBackupAndPublishesNothing) {
  MakeSource(12 * 4 * 1024 * 1024);
  std::string url = server_->Url(remote_ + "/img.zst");
  int pid = Start("backup " + Quote(source_) + " -o " + Quote(url) +
                  " --all-blocks --rate-limit 6" + server_->Options());
  std::string temp = WaitForTemporary(4 << 20);
  ASSERT_FALSE(temp.empty()) << "the upload never started: " << Stderr();
  auto cats = server_->Remote("cat");
  ASSERT_FALSE(cats.empty());
  for (pid_t p : cats) kill(p, SIGKILL);
  int code = WaitExit(pid);
  EXPECT_EQ(code, 4) << Stderr();
  EXPECT_NE(Stderr().find(url), std::string::npos) << Stderr();
  EXPECT_FALSE(PathExists(remote_ + "/img.zst"));
  EXPECT_TRUE(WaitUntil([&] { return ListDir(remote_).empty(); }, 30))
      << "temporary file left: " << ::testing::PrintToString(ListDir(remote_));
}

TEST_F(SshRemoteTest, DroppedConnectionFailsTheBackupAndPublishesNothing) {
  MakeSource(12 * 4 * 1024 * 1024);
  std::string url = server_->Url(remote_ + "/img.zst");
  int pid = Start("backup " + Quote(source_) + " -o " + Quote(url) +
                  " --all-blocks --rate-limit 6" + server_->Options());
  ASSERT_FALSE(WaitForTemporary(4 << 20).empty()) << "the upload never started: " << Stderr();
  // Kill the server side of the connection: the sshd process of that session.
  auto sessions = server_->Sessions();
  ASSERT_FALSE(sessions.empty());
  for (pid_t p : sessions) kill(p, SIGKILL);
  int code = WaitExit(pid);
  EXPECT_NE(code, 0);
  EXPECT_EQ(code, 4) << Stderr();
  EXPECT_FALSE(PathExists(remote_ + "/img.zst"));
  // The remote script notices the hang-up, or hotsnap's clean-up session removes the file.
  EXPECT_TRUE(WaitUntil([&] { return ListDir(remote_).empty(); }, 30))
      << "temporary file left: " << ::testing::PrintToString(ListDir(remote_));
  EXPECT_FALSE(PathExists(remote_ + "/img.zst"));
}

// The publishing session drops after `ln` put the image under its final name (the remote
// directory sync is held until the test kills the session's sshd): the image is published,
// so hotsnap must exit 0 with a warning, the temporary name gone, and not exit 4.
TEST_F(SshRemoteTest, ConnectionDroppedAfterPublishingExitsZeroWithTheImagePublished) {
  // Every session runs with a `sync` in front of the real one that holds the first directory
  // sync (the publishing script's, after `ln`) until killed; file syncs pass through.
  std::string bin = dir_.File("bin");
  std::string held = dir_.File("sync-held");
  RunOk("mkdir -p " + Quote(bin) + " " + Quote(dir_.File("wrapped")));
  WriteFile(bin + "/sync",
            "#!/bin/sh\n"
            "if [ -d \"$2\" ] && mkdir " +
                Quote(held) +
                " 2>/dev/null; then\n"
                "  echo $$ > " +
                Quote(held + "/pid") +
                "; exec sleep 600\n"
                "fi\n"
                "exec /bin/sync \"$@\"\n");
  RunOk("chmod +x " + Quote(bin + "/sync"));
  server_.reset();
  server_ = std::make_unique<SshServer>(
      dir_.File("wrapped"),
      "ForceCommand PATH=" + bin + ":$PATH; export PATH; eval \"$SSH_ORIGINAL_COMMAND\"\n");
  MakeSource(3 * 4 * 1024 * 1024);
  std::string url = server_->Url(remote_ + "/img.zst");
  int pid = Start("backup " + Quote(source_) + " -o " + Quote(url) + server_->Options());
  ASSERT_TRUE(WaitUntil([&] { return SizeOf(held + "/pid") > 0; }, 120))
      << "the publishing session never synced the directory: " << Stderr();
  ASSERT_TRUE(PathExists(remote_ + "/img.zst")) << "held before ln: " << Stderr();
  auto sessions = server_->Sessions();
  ASSERT_FALSE(sessions.empty());
  for (pid_t p : sessions) kill(p, SIGKILL);
  kill(std::stoi(ReadAll(held + "/pid")), SIGKILL);
  int code = WaitExit(pid);
  EXPECT_EQ(code, 0) << "an image under its final name and a failing exit: " << Stderr();
  EXPECT_NE(Stderr().find("warning"), std::string::npos) << Stderr();
  EXPECT_NE(Stderr().find("already published"), std::string::npos) << Stderr();
  EXPECT_EQ(Stderr().find("error:"), std::string::npos) << Stderr();
  EXPECT_EQ(ListDir(remote_), std::vector<std::string>{"img.zst"}) << "temporary name left";
  RunOk(Hotsnap("verify " + Quote(remote_ + "/img.zst")));
}

TEST_F(SshRemoteTest, UnknownHostKeyIsRefusedAndSaysSo) {
  MakeSource(4 * 1024 * 1024);
  WriteFile(dir_.File("empty_known_hosts"), "");
  std::string url = server_->Url(remote_ + "/img.zst");
  CommandResult r =
      ::hotsnap::testing::Run(Hotsnap("backup " + Quote(source_) + " -o " + Quote(url) +
                                      server_->Options(dir_.File("empty_known_hosts"))));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("host key"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("not known"), std::string::npos) << r.err;
  EXPECT_TRUE(ListDir(remote_).empty());
  EXPECT_EQ(ReadAll(dir_.File("empty_known_hosts")), "") << "ssh must not have learned the key";

  CommandResult v = ::hotsnap::testing::Run(
      Hotsnap("verify " + Quote(url) + server_->Options(dir_.File("empty_known_hosts"))));
  EXPECT_EQ(v.exit_code, 3) << v.err;
  EXPECT_NE(v.err.find("not known"), std::string::npos) << v.err;
}

TEST_F(SshRemoteTest, ChangedHostKeyIsRefusedAndSaysSo) {
  MakeSource(4 * 1024 * 1024);
  RunOk("ssh-keygen -q -t ed25519 -N '' -f " + Quote(dir_.File("impostor")));
  std::string pub = ReadAll(dir_.File("impostor.pub"));
  std::string known = ReadAll(server_->File("known_hosts"));
  // Same host name and port, another key: what ssh sees after a host is replaced (or spoofed).
  WriteFile(dir_.File("changed_known_hosts"),
            known.substr(0, known.find(' ')) + " " + pub.substr(0, pub.rfind(' ')) + "\n");
  std::string url = server_->Url(remote_ + "/img.zst");
  CommandResult r =
      ::hotsnap::testing::Run(Hotsnap("backup " + Quote(source_) + " -o " + Quote(url) +
                                      server_->Options(dir_.File("changed_known_hosts"))));
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("host key"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("CHANGED"), std::string::npos) << r.err;
  EXPECT_TRUE(ListDir(remote_).empty());
}

TEST_F(SshRemoteTest, MissingRemoteImageIsASourceErrorWithTheRemoteMessage) {
  std::string url = server_->Url(remote_ + "/absent.zst");
  CommandResult r = ::hotsnap::testing::Run(Hotsnap("verify " + Quote(url) + server_->Options()));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("No such file"), std::string::npos) << r.err;
  CommandResult restore = ::hotsnap::testing::Run(
      Hotsnap("restore " + Quote(url) + " " + Quote(dir_.File("out.img")) + server_->Options()));
  EXPECT_EQ(restore.exit_code, 3) << restore.err;
  EXPECT_FALSE(PathExists(dir_.File("out.img")));
}

TEST_F(SshRemoteTest, CommandLinesHoldNoSecrets) {
  MakeSource(8 * 4 * 1024 * 1024);
  std::string url = server_->Url(remote_ + "/img.zst");
  int pid = Start("backup " + Quote(source_) + " -o " + Quote(url) +
                  " --all-blocks --rate-limit 12" + server_->Options());
  // Sample every process hotsnap and sshd spawn while the backup runs.
  std::map<pid_t, std::vector<std::string>> local, remote;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    for (pid_t p : DescendantsOf(pid)) {
      auto args = CmdlineOf(p);
      if (!args.empty()) local[p] = args;
    }
    for (pid_t p : DescendantsOf(server_->pid())) {
      auto args = CmdlineOf(p);
      if (!args.empty()) remote[p] = args;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << Stderr();
  ASSERT_FALSE(local.empty()) << "no spawned process was seen";
  ASSERT_FALSE(remote.empty());

  // Secrets: the private key's body (and any part of it), and the PEM marker.
  std::vector<std::string> secrets = {"PRIVATE KEY"};
  std::istringstream key(ReadAll(server_->File("id")));
  for (std::string line; std::getline(key, line);) {
    if (line.find("-----") == std::string::npos && line.size() >= 16)
      secrets.push_back(line.substr(0, 16));
  }
  ASSERT_GT(secrets.size(), 1u);
  auto check_no_secret = [&](const std::vector<std::string>& args) {
    for (const auto& a : args) {
      for (const auto& s : secrets)
        EXPECT_EQ(a.find(s), std::string::npos) << "secret in argv: " << a;
    }
  };

  // Locally: only ssh, started without a shell, with exactly the arguments hotsnap gives it.
  std::set<std::string> expected = {"ssh",
                                    "-T",
                                    "-x",
                                    "-a",
                                    "-o",
                                    "BatchMode=yes",
                                    "UserKnownHostsFile=" + server_->File("known_hosts"),
                                    "GlobalKnownHostsFile=/dev/null",
                                    "IdentityFile=" + server_->File("id"),
                                    "IdentitiesOnly=yes",
                                    "ServerAliveInterval=15",
                                    "ServerAliveCountMax=4",
                                    "ConnectTimeout=30",
                                    "ConnectTimeout=10",
                                    "-p",
                                    std::to_string(server_->port()),
                                    "-l",
                                    "root",
                                    "--",
                                    "127.0.0.1"};
  int ssh_seen = 0;
  for (const auto& [p, args] : local) {
    check_no_secret(args);
    // A copy of hotsnap itself is nothing it started: a fork caught before its exec, or, under
    // ASan, LeakSanitizer's tracer (a clone of the process, made at exit to scan for leaks).
    if (args[0] == ::hotsnap::testing::HotsnapBinary()) continue;
    if (args[0] != "ssh") {
      ADD_FAILURE() << "hotsnap started something other than ssh: " << args[0];
      continue;
    }
    ++ssh_seen;
    for (size_t i = 0; i + 1 < args.size(); ++i) {
      EXPECT_TRUE(expected.count(args[i])) << "unexpected ssh argument: " << args[i];
    }
    EXPECT_EQ(args.back().rfind("sh -c ", 0), 0u) << args.back();
    EXPECT_NE(args.back().find(remote_), std::string::npos) << args.back();
  }
  EXPECT_GE(ssh_seen, 1);
  // Remotely: whatever the login shell runs (its rc files are the user's), and our POSIX sh
  // script with coreutils; none carries a secret.
  int scripts_seen = 0;
  for (const auto& [p, args] : remote) {
    check_no_secret(args);
    if (args.size() == 3 && args[0] == "sh" && args[1] == "-c" &&
        args[2].find(remote_) != std::string::npos) {
      ++scripts_seen;
    }
  }
  EXPECT_GE(scripts_seen, 1) << "the remote sh -c script was never seen";
}

}  // namespace
}  // namespace hotsnap::testing
