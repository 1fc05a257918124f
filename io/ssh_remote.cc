#include "io/ssh_remote.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/interrupt.h"
#include "base/log.h"

extern char** environ;

namespace hotsnap {
namespace {

constexpr char kScheme[] = "ssh://";
constexpr char kStreamHeader[] = "hotsnap-stream";
constexpr int kSshOwnError = 255;  // ssh's exit status for its own failures
constexpr int kPublishTimeoutMs = 10 * 60 * 1000;

// An ssh exit status that does not come from the remote script: the connection failed or
// was dropped (255), ssh or the remote shell was killed (128+signal), or it did not finish.
bool SessionLost(int exit_code) { return exit_code < 0 || exit_code > 128; }

// ---- URL and remote paths --------------------------------------------------------------

bool HasControlChar(const std::string& s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

// Shell expressions for the destination file and its directory, and the base name. A
// "/~/" path becomes "$HOME"/'rest' so that the remote shell expands only $HOME.
struct RemotePath {
  std::string file;
  std::string dir;
  std::string base;
};

RemotePath SplitRemotePath(const std::string& path) {
  RemotePath r;
  bool home = path.rfind("/~/", 0) == 0;
  std::string rel = home ? path.substr(3) : path;
  size_t slash = rel.rfind('/');
  r.base = slash == std::string::npos ? rel : rel.substr(slash + 1);
  std::string dir = slash == std::string::npos ? "" : rel.substr(0, slash);
  if (home) {
    r.file = "\"$HOME\"/" + ShellQuote(rel);
    r.dir = dir.empty() ? "\"$HOME\"" : "\"$HOME\"/" + ShellQuote(dir);
  } else {
    r.file = ShellQuote(path);
    r.dir = ShellQuote(dir.empty() ? "/" : dir);
  }
  return r;
}

std::string RemoteCommand(const std::string& script) { return "sh -c " + ShellQuote(script); }

// ---- Descriptors ------------------------------------------------------------------------

Result<UniqueFd> MakeMemFd(const char* name) {
  UniqueFd fd(::memfd_create(name, MFD_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno(Code::kInternal, errno, "memfd_create");
  return fd;
}

std::string ReadMemFd(int fd, size_t max_bytes = 64 * 1024) {
  std::string out;
  char buf[4096];
  off_t at = 0;
  while (out.size() < max_bytes) {
    ssize_t n = ::pread(fd, buf, sizeof(buf), at);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
    at += n;
  }
  return out;
}

// Reads one line (without the '\n') from a pipe, a byte at a time so that nothing after it
// is consumed. false at EOF or error before a newline, or when interrupted.
bool ReadLine(int fd, std::string* line, size_t max_bytes = 4096) {
  line->clear();
  while (line->size() < max_bytes) {
    char c;
    ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) {
      if (Interrupted()) return false;
      continue;
    }
    if (n <= 0) return false;
    if (c == '\n') return true;
    line->push_back(c);
  }
  return false;
}

std::string ReadRest(int fd, size_t max_bytes = 64 * 1024) {
  std::string out;
  char buf[4096];
  while (out.size() < max_bytes) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) {
      if (Interrupted()) break;
      continue;
    }
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// The last `count` non-empty lines of ssh's stderr, joined with " / ", without CRs.
std::string LastLines(const std::string& text, int count) {
  std::vector<std::string> lines;
  std::string cur;
  for (char c : text) {
    if (c == '\r') continue;
    if (c == '\n') {
      if (!cur.empty()) lines.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) lines.push_back(cur);
  std::string out;
  size_t first = lines.size() > static_cast<size_t>(count) ? lines.size() - count : 0;
  for (size_t i = first; i < lines.size(); ++i) {
    if (!out.empty()) out += " / ";
    out += lines[i];
  }
  return out;
}

// A short ssh session: runs `script` with stdin from /dev/null and waits at most
// `timeout_ms`; returns the exit status and what it wrote.
struct SessionResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

Result<SessionResult> RunSession(const SshUrl& url, const SshOptions& options,
                                 const std::string& script, int timeout_ms) {
  UniqueFd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_in.valid()) return Status::FromErrno(Code::kInternal, errno, "opening /dev/null");
  auto out = MakeMemFd("hotsnap-ssh-out");
  if (!out.ok()) return out.status();
  auto err = MakeMemFd("hotsnap-ssh-err");
  if (!err.ok()) return err.status();
  auto process = SshProcess::Start(SshArgv(url, options, RemoteCommand(script)), null_in.get(),
                                   out->get(), err->get());
  if (!process.ok()) return process.status();
  SessionResult r;
  r.exit_code = process->WaitFor(timeout_ms);
  if (r.exit_code < 0) r.exit_code = process->Stop();
  r.out = ReadMemFd(out->get());
  r.err = ReadMemFd(err->get());
  return r;
}

// ---- The sink -----------------------------------------------------------------------------

class SshSink : public Sink {
 public:
  SshSink(SshUrl url, SshOptions options, bool overwrite)
      : url_(std::move(url)),
        options_(std::move(options)),
        overwrite_(overwrite),
        path_(SplitRemotePath(url_.path)) {}
  ~SshSink() override { Abort(); }

  Status Open();
  Status Write(const void* data, size_t bytes) override;
  Status Commit() override;
  std::string Describe() const override { return url_.text; }

 private:
  std::string UploadScript() const;
  std::string PublishScript() const;
  // The upload session ended (or was stopped): its exit status explained.
  Status UploadFailure(const std::string& what);
  void Abort();

  SshUrl url_;
  SshOptions options_;
  bool overwrite_;
  RemotePath path_;
  UniqueFd stdin_;   // the image goes here
  UniqueFd stdout_;  // "tmp NAME" at the start, "size N" at the end
  UniqueFd stderr_;  // memfd
  SshProcess process_;
  std::string temp_;   // the remote temporary file, once known
  std::string inode_;  // its inode number (decimal), once reported
  uint64_t bytes_ = 0;
  bool committed_ = false;
};

std::string SshSink::UploadScript() const {
  std::string s = "umask 077\nf=" + path_.file + "\nd=" + path_.dir + "\n";
  s += "if [ ! -d \"$d\" ]; then echo \"hotsnap: directory $d does not exist\" >&2; exit 90; fi\n";
  s += "if [ -d \"$f\" ]; then echo \"hotsnap: $f is a directory\" >&2; exit 91; fi\n";
  if (!overwrite_) {
    s += "if [ -e \"$f\" ] || [ -h \"$f\" ]; then echo \"hotsnap: $f already exists; refusing to "
         "replace it (use --overwrite)\" >&2; exit 92; fi\n";
  }
  // mktemp creates the file 0600 with O_EXCL: nothing existing is ever clobbered.
  s += "t=$(mktemp \"$d\"/" + ShellQuote("." + path_.base + ".hotsnap-XXXXXX") + ") || exit 93\n";
  // A dropped connection shows up as SIGHUP or SIGPIPE: take the temporary file along.
  s += "trap 'rm -f -- \"$t\"; exit 129' HUP PIPE TERM\n";
  s += "echo \"tmp $t\"\n";
  s += "if ! cat > \"$t\"; then rm -f -- \"$t\"; exit 94; fi\n";
  s += "sync -- \"$t\" 2>/dev/null || sync\n";
  s += "echo \"size $(wc -c < \"$t\")\"\n";
  // The file's identity, by which a later session recognises it under the final name.
  s += "set -f; set -- $(ls -di -- \"$t\"); echo \"ino $1\"\n";
  return s;
}

std::string SshSink::PublishScript() const {
  std::string n = std::to_string(bytes_);
  std::string s = "t=" + ShellQuote(temp_) + "\nf=" + path_.file + "\nd=" + path_.dir + "\n";
  // Idempotent: a session that dropped after `ln` or `mv` left our file under the final name
  // (the temporary file's inode, still alive as ours); then only finish the job.
  s += "set -f\n";
  s += "if [ -f \"$f\" ] && [ ! -h \"$f\" ]; then\n";
  s += "  set -- $(ls -di -- \"$f\")\n";
  s += "  if [ \"$1\" = " + ShellQuote(inode_) + " ]; then\n";
  s += "    rm -f -- \"$t\"; sync -- \"$d\" 2>/dev/null || sync; echo already-published; exit 0\n";
  s += "  fi\n";
  s += "fi\n";
  s += "n=$(wc -c < \"$t\") || exit 95\n";
  s += "if [ \"$n\" -ne " + n + " ]; then echo \"hotsnap: $t holds $n bytes, " + n +
       " were sent\" >&2; rm -f -- \"$t\"; exit 96; fi\n";
  if (overwrite_) {
    s += "if [ -d \"$f\" ]; then echo \"hotsnap: $f is a directory\" >&2; rm -f -- \"$t\"; exit "
         "91; fi\n";
    s += "mv -f -- \"$t\" \"$f\" || { rm -f -- \"$t\"; exit 97; }\n";
  } else {
    s +=
        "if [ -e \"$f\" ] || [ -h \"$f\" ]; then echo \"hotsnap: $f appeared while the backup ran; "
        "not replaced (use --overwrite)\" >&2; rm -f -- \"$t\"; exit 98; fi\n";
    // link() never replaces an existing name, unlike rename().
    s += "ln -- \"$t\" \"$f\" || { rm -f -- \"$t\"; exit 97; }\n";
    s += "rm -f -- \"$t\"\n";
  }
  s += "sync -- \"$d\" 2>/dev/null || sync\n";
  return s;
}

Status SshSink::Open() {
  int in_pipe[2], out_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) return Status::FromErrno(Code::kInternal, errno, "pipe");
  UniqueFd in_r(in_pipe[0]);
  stdin_.Reset(in_pipe[1]);
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Status::FromErrno(Code::kInternal, errno, "pipe");
  stdout_.Reset(out_pipe[0]);
  UniqueFd out_w(out_pipe[1]);
  auto err = MakeMemFd("hotsnap-ssh-err");
  if (!err.ok()) return err.status();
  stderr_ = std::move(err.value());
  // A larger pipe means fewer wake-ups of ssh per 4 MiB frame; failure is harmless.
  ::fcntl(stdin_.get(), F_SETPIPE_SZ, 1 << 20);

  auto process = SshProcess::Start(SshArgv(url_, options_, RemoteCommand(UploadScript())),
                                   in_r.get(), out_w.get(), stderr_.get());
  if (!process.ok()) return process.status();
  process_ = std::move(process.value());
  in_r.Reset();
  out_w.Reset();

  // Wait until the remote side holds its temporary file: connection, login, host key and
  // destination checks have all passed by then.
  std::string line;
  if (!ReadLine(stdout_.get(), &line)) {
    if (Interrupted())
      return Status(Code::kInterrupted, "interrupted while connecting to " + url_.host);
    return UploadFailure("opening the destination");
  }
  if (line.rfind("tmp /", 0) != 0) {
    return Status(Code::kTarget,
                  "unexpected reply from the remote side of " + url_.text + ": '" + line + "'");
  }
  temp_ = line.substr(4);
  return Status::Ok();
}

Status SshSink::UploadFailure(const std::string& what) {
  stdin_.Reset();
  int code = process_.WaitFor(10000);
  if (code < 0) code = process_.Stop();
  return SshFailure(Code::kTarget, url_, what, code, ReadMemFd(stderr_.get()));
}

Status SshSink::Write(const void* data, size_t bytes) {
  Status s = WriteAll(stdin_.get(), data, bytes, url_.text, Code::kTarget);
  if (!s.ok()) {
    if (s.code() == Code::kInterrupted) return s;
    return UploadFailure("sending the image");
  }
  bytes_ += bytes;
  return Status::Ok();
}

Status SshSink::Commit() {
  // 1. End the stream; the remote side fsyncs the temporary file and reports its size.
  stdin_.Reset();
  std::string rest = ReadRest(stdout_.get());
  auto code = process_.Wait();
  if (!code.ok()) return code.status();
  if (*code != 0) {
    return SshFailure(Code::kTarget, url_, "finishing the upload", *code, ReadMemFd(stderr_.get()));
  }
  std::string expected = "size " + std::to_string(bytes_);
  if (rest.rfind(expected + "\n", 0) != 0) {
    return Status(Code::kTarget, "the remote side of " + url_.text +
                                     " did not receive the whole image: " + std::to_string(bytes_) +
                                     " bytes sent, it reported '" + LastLines(rest, 1) + "'");
  }
  size_t ino = rest.find("\nino ");
  if (ino != std::string::npos) inode_ = rest.substr(ino + 5, rest.find('\n', ino + 5) - ino - 5);
  if (inode_.empty() || inode_.find_first_not_of("0123456789") != std::string::npos) {
    return Status(Code::kTarget, "the remote side of " + url_.text +
                                     " did not report the temporary file's inode number: '" +
                                     LastLines(rest, 2) + "'");
  }
  // 2. Only now publish it under the final name, in a session of its own.
  const std::string what = "publishing the image under its final name";
  auto session = RunSession(url_, options_, PublishScript(), kPublishTimeoutMs);
  if (!session.ok()) return session.status();
  if (session->exit_code == 0) {
    committed_ = true;
    return Status::Ok();
  }
  // The remote script's own failures remove what it made: nothing is published.
  if (!SessionLost(session->exit_code)) {
    return SshFailure(Code::kTarget, url_, what, session->exit_code, session->err);
  }
  // The session ended without the script's verdict: `ln` may or may not have run. The script
  // is idempotent, so run it again in a new session: it finds the image already under its
  // final name and finishes, or publishes it now, or fails and removes it.
  Status lost = SshFailure(Code::kTarget, url_, what, session->exit_code, session->err);
  auto again = RunSession(url_, options_, PublishScript(), kPublishTimeoutMs);
  if (!again.ok()) return again.status();
  if (again->exit_code == 0) {
    committed_ = true;
    bool found = again->out.find("already-published") != std::string::npos;
    Notice("warning: " + lost.message() + "; a new session " +
           (found ? "found the image already published" : "published the image") + " as " +
           url_.text + " (" + std::to_string(bytes_) + " bytes)");
    return Status::Ok();
  }
  if (!SessionLost(again->exit_code)) {
    return SshFailure(Code::kTarget, url_, what, again->exit_code, again->err);
  }
  return Status(Code::kTarget, lost.message() + "; a second session failed too, so whether " +
                                   url_.text + " holds the image is unknown: check it (the " +
                                   "complete image is " + std::to_string(bytes_) + " bytes)");
}

void SshSink::Abort() {
  if (committed_) return;
  stdin_.Reset();
  stdout_.Reset();
  if (process_.running()) process_.Stop();
  if (temp_.empty()) return;
  // Best effort: the connection may be what failed. A leftover is only ever a hidden
  // ".NAME.hotsnap-XXXXXX" file, never the final name.
  SshOptions quick = options_;
  quick.options.push_back("ConnectTimeout=10");
  auto session = RunSession(url_, quick, "rm -f -- " + ShellQuote(temp_), 20000);
  (void)session;
}

}  // namespace

// ---- URL ----------------------------------------------------------------------------------

bool IsSshUrl(const std::string& text) { return text.rfind(kScheme, 0) == 0; }

Result<SshUrl> ParseSshUrl(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Status(Code::kUsage, "'" + text + "' is not a usable ssh:// URL: " + why +
                                    " (form: ssh://[user@]host[:port]/path)");
  };
  if (!IsSshUrl(text)) return bad("it does not start with ssh://");
  if (text.find('\0') != std::string::npos || HasControlChar(text)) {
    return bad("it holds a control character (newline, carriage return, ...)");
  }
  std::string rest = text.substr(std::strlen(kScheme));
  size_t slash = rest.find('/');
  if (slash == std::string::npos) return bad("no path");
  std::string authority = rest.substr(0, slash);
  SshUrl url;
  url.text = text;
  url.path = rest.substr(slash);
  size_t at = authority.rfind('@');
  if (at != std::string::npos) {
    url.user = authority.substr(0, at);
    authority = authority.substr(at + 1);
    if (url.user.empty()) return bad("empty user name");
    if (url.user[0] == '-') return bad("a user name must not start with '-'");
    for (char c : url.user) {
      if (!IsNameChar(c)) return bad("unexpected character in the user name");
    }
  }
  std::string port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string::npos) return bad("unclosed '[' in the host");
    url.host = authority.substr(1, close - 1);
    std::string after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return bad("unexpected text after ']'");
      port = after.substr(1);
    }
    for (char c : url.host) {
      if (!(IsNameChar(c) || c == ':' || c == '%')) return bad("unexpected character in the host");
    }
  } else {
    size_t colon = authority.find(':');
    url.host = authority.substr(0, colon);
    if (colon != std::string::npos) port = authority.substr(colon + 1);
    for (char c : url.host) {
      if (!IsNameChar(c)) return bad("unexpected character in the host");
    }
  }
  if (url.host.empty()) return bad("no host");
  if (url.host[0] == '-') return bad("a host must not start with '-'");
  if (!port.empty() || authority.back() == ':') {
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos) {
      return bad("the port is not a number");
    }
    url.port = std::stoi(port);
    if (url.port < 1 || url.port > 65535) return bad("the port is not in 1-65535");
  }
  std::string name = url.path.substr(url.path.rfind('/') + 1);
  if (url.path == "/" || url.path == "/~" || url.path == "/~/" || name.empty() || name == "." ||
      name == "..") {
    return bad("the path does not name a file");
  }
  return url;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

std::vector<std::string> SshArgv(const SshUrl& url, const SshOptions& options,
                                 const std::string& remote_command) {
  // -T: no terminal; -x: no X11; -a: no agent forwarding. BatchMode first, so that nothing
  // can turn prompts back on; the user's options next, so that they win over our defaults.
  std::vector<std::string> argv = {"ssh", "-T", "-x", "-a", "-o", "BatchMode=yes"};
  for (const std::string& o : options.options) {
    argv.push_back("-o");
    argv.push_back(o);
  }
  // Notice a dead peer within a minute instead of waiting on TCP for hours.
  for (const char* o : {"ServerAliveInterval=15", "ServerAliveCountMax=4", "ConnectTimeout=30"}) {
    argv.push_back("-o");
    argv.push_back(o);
  }
  if (url.port != 0) {
    argv.push_back("-p");
    argv.push_back(std::to_string(url.port));
  }
  if (!url.user.empty()) {
    argv.push_back("-l");
    argv.push_back(url.user);
  }
  argv.push_back("--");
  argv.push_back(url.host);
  argv.push_back(remote_command);
  return argv;
}

std::string RemoteFileWord(const SshUrl& url) { return SplitRemotePath(url.path).file; }

std::vector<std::string> SshScriptArgv(const SshUrl& url, const SshOptions& options,
                                       const std::string& script) {
  return SshArgv(url, options, RemoteCommand(script));
}

Result<UniqueFd> MakeStderrCapture() { return MakeMemFd("hotsnap-ssh-err"); }

std::string ReadStderrCapture(int fd) { return ReadMemFd(fd); }

Status SshFailure(Code code, const SshUrl& url, const std::string& what, int exit_code,
                  const std::string& ssh_stderr) {
  std::string said = LastLines(ssh_stderr, 4);
  auto has = [&](const char* s) { return ssh_stderr.find(s) != std::string::npos; };
  std::string host = url.host + (url.port ? ":" + std::to_string(url.port) : "");
  std::string why;
  if (exit_code == kSshOwnError) {
    if (has("REMOTE HOST IDENTIFICATION HAS CHANGED") ||
        has("has changed and you have requested")) {
      why = "the host key of " + host +
            " has CHANGED since it was recorded in known_hosts, and "
            "ssh refused to connect. This can be an attack; if the host was reinstalled, check "
            "the new key's fingerprint and replace the old entry (ssh-keygen -R)";
    } else if (has("Host key verification failed") || has("host key is known")) {
      why = "the host key of " + host +
            " is not known (not in known_hosts), and hotsnap does not "
            "accept unknown host keys (ssh runs with BatchMode=yes). Check the key's fingerprint "
            "and add it to known_hosts first, e.g. by connecting once with ssh";
    } else if (has("Permission denied")) {
      why = "ssh could not log in to " + host +
            ": no key was accepted (hotsnap runs ssh with "
            "BatchMode=yes: keys come from the ssh agent or the ssh config; passwords and "
            "passphrase prompts are not used)";
    } else {
      why = "ssh to " + host + " failed (connection or protocol error)";
    }
  } else if (exit_code > 128 && exit_code < kSshOwnError) {
    why = "ssh was ended by signal " + std::to_string(exit_code - 128);
  } else if (exit_code < 0) {
    why = "ssh did not finish";
  } else {
    // The remote script's own messages start with "hotsnap: "; they say it best.
    for (size_t at = 0; (at = said.find("hotsnap: ", at)) != std::string::npos;) said.erase(at, 9);
    return Status(code, what + " on " + url.text + ": the remote side failed (exit status " +
                            std::to_string(exit_code) + ")" + (said.empty() ? "" : ": " + said));
  }
  std::string message = what + " on " + url.text + ": " + why;
  if (!said.empty()) message += "; ssh said: " + said;
  return Status(code, message);
}

// ---- SshProcess ---------------------------------------------------------------------------

SshProcess::~SshProcess() {
  if (running()) Stop();
}

SshProcess::SshProcess(SshProcess&& other) noexcept
    : pid_(other.pid_), exit_code_(other.exit_code_) {
  other.pid_ = -1;
}

SshProcess& SshProcess::operator=(SshProcess&& other) noexcept {
  if (this != &other) {
    if (running()) Stop();
    pid_ = other.pid_;
    exit_code_ = other.exit_code_;
    other.pid_ = -1;
  }
  return *this;
}

Result<SshProcess> SshProcess::Start(const std::vector<std::string>& argv, int in, int out,
                                     int err) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err, STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);  // hotsnap ignores it; ssh must not inherit that
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return Status::FromErrno(
        rc == ENOENT ? Code::kUnsupported : Code::kInternal, rc,
        "starting " + argv[0] + (rc == ENOENT ? " (is openssh-client installed?)" : ""));
  }
  SshProcess p;
  p.pid_ = pid;
  return p;
}

namespace {
int DecodeWaitStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}
}  // namespace

Result<int> SshProcess::Wait() {
  if (!running()) return exit_code_;
  for (;;) {
    int status = 0;
    pid_t w = ::waitpid(pid_, &status, 0);
    if (w == pid_) {
      pid_ = -1;
      exit_code_ = DecodeWaitStatus(status);
      return exit_code_;
    }
    if (w < 0 && errno == EINTR) {
      if (Interrupted()) return Status(Code::kInterrupted, "interrupted while waiting for ssh");
      continue;
    }
    return Status::FromErrno(Code::kInternal, errno, "waitpid ssh");
  }
}

int SshProcess::WaitFor(int ms) {
  if (!running()) return exit_code_;
  struct timespec step = {0, 10 * 1000 * 1000};
  for (int waited = 0;; waited += 10) {
    int status = 0;
    pid_t w = ::waitpid(pid_, &status, WNOHANG);
    if (w == pid_) {
      pid_ = -1;
      exit_code_ = DecodeWaitStatus(status);
      return exit_code_;
    }
    if (w < 0 && errno != EINTR) {
      pid_ = -1;
      return exit_code_;
    }
    if (waited >= ms) return -1;
    ::nanosleep(&step, nullptr);
  }
}

int SshProcess::Stop() {
  if (!running()) return exit_code_;
  ::kill(-pid_, SIGTERM);
  ::kill(pid_, SIGTERM);
  if (WaitFor(2000) >= 0 || !running()) return exit_code_;
  ::kill(-pid_, SIGKILL);
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  exit_code_ = DecodeWaitStatus(status);
  return exit_code_;
}

// ---- SshImageStream -----------------------------------------------------------------------

SshImageStream::~SshImageStream() {
  stdout_.Reset();  // a remote cat still sending gets EPIPE
  if (process_.running()) process_.Stop();
}

Result<std::unique_ptr<SshImageStream>> SshImageStream::Open(const SshUrl& url,
                                                             const SshOptions& options) {
  std::unique_ptr<SshImageStream> s(new SshImageStream());
  s->url_ = url;
  UniqueFd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null_in.valid()) return Status::FromErrno(Code::kInternal, errno, "opening /dev/null");
  int out_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Status::FromErrno(Code::kInternal, errno, "pipe");
  s->stdout_.Reset(out_pipe[0]);
  UniqueFd out_w(out_pipe[1]);
  auto err = MakeMemFd("hotsnap-ssh-err");
  if (!err.ok()) return err.status();
  s->stderr_ = std::move(err.value());
  ::fcntl(s->stdout_.get(), F_SETPIPE_SZ, 1 << 20);

  // The header line is written only once the file is open, so a missing file fails here,
  // not as a confusing "empty image" later.
  std::string f = SplitRemotePath(url.path).file;
  std::string script = "f=" + f + "\n";
  script += "if [ -d \"$f\" ]; then echo \"hotsnap: $f is a directory\" >&2; exit 91; fi\n";
  script += "exec 3< \"$f\" || exit 99\n";
  script += std::string("echo ") + kStreamHeader + "\n";
  script += "exec cat <&3\n";
  auto process = SshProcess::Start(SshArgv(url, options, RemoteCommand(script)), null_in.get(),
                                   out_w.get(), s->stderr_.get());
  if (!process.ok()) return process.status();
  s->process_ = std::move(process.value());
  out_w.Reset();

  std::string line;
  if (!ReadLine(s->stdout_.get(), &line, 64) || line != kStreamHeader) {
    if (Interrupted())
      return Status(Code::kInterrupted, "interrupted while connecting to " + url.host);
    int code = s->process_.WaitFor(10000);
    if (code < 0) code = s->process_.Stop();
    return SshFailure(Code::kSource, url, "opening the image", code, ReadMemFd(s->stderr_.get()));
  }
  return s;
}

Status SshImageStream::ExplainReadFailure(const Status& status) {
  if (status.code() == Code::kInterrupted) return status;
  // Only a stream that ended early can be ssh's fault; a reader that stopped on bad data
  // leaves bytes unread in a pipe that is still open.
  ::fcntl(stdout_.get(), F_SETFL, ::fcntl(stdout_.get(), F_GETFL) | O_NONBLOCK);
  char byte;
  if (::read(stdout_.get(), &byte, 1) != 0) return status;
  int code = process_.WaitFor(5000);
  if (code <= 0) return status;  // ended well: the remote file itself is short or corrupt
  Status ssh = SshFailure(Code::kSource, url_, "reading the image", code, ReadMemFd(stderr_.get()));
  return Status(Code::kSource,
                ssh.message() + " (the stream ended early: " + status.message() + ")");
}

Result<std::unique_ptr<Sink>> MakeSshSink(const SshUrl& url, const SshOptions& options,
                                          bool overwrite) {
  auto sink = std::make_unique<SshSink>(url, options, overwrite);
  HOTSNAP_RETURN_IF_ERROR(sink->Open());
  return std::unique_ptr<Sink>(std::move(sink));
}

}  // namespace hotsnap
