// ssh:// destinations and images: a backup streamed to another host, and an image read
// from one, through the system `ssh` client (so the user's ssh config, keys and agent work).
//
// The local side never runs a shell: ssh is started with posix_spawn from an argv vector,
// with BatchMode=yes (no password or passphrase prompt; keys come from the ssh config or
// agent, never from a command line) and the ssh config's host key checking (hotsnap never
// turns StrictHostKeyChecking off). The remote side needs only a POSIX sh and coreutils.
//
// URL form: ssh://[user@]host[:port]/path — the path is absolute on the remote host;
// ssh://host/~/path is relative to the remote user's home directory. Paths holding a newline,
// a carriage return or NUL are refused; no percent-decoding is done.
#ifndef HOTSNAP_IO_SSH_REMOTE_H_
#define HOTSNAP_IO_SSH_REMOTE_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "io/sink.h"

namespace hotsnap {

struct SshUrl {
  std::string text;  // as given, for messages
  std::string user;  // empty: ssh's default (ssh config, then the local user name)
  std::string host;  // without IPv6 brackets
  int port = 0;      // 0: ssh's default
  std::string path;  // starts with '/'; "/~/..." is home-relative
};

bool IsSshUrl(const std::string& text);
// Parses and checks an ssh:// URL; kUsage with the reason when it is not acceptable.
Result<SshUrl> ParseSshUrl(const std::string& text);

struct SshOptions {
  // Each passed to ssh as "-o OPTION" (--ssh-option), ahead of hotsnap's own defaults so
  // that they win (ssh keeps the first value it sees for an option).
  std::vector<std::string> options;
};

// Quotes `s` for a POSIX shell: 'it'\''s'.
std::string ShellQuote(const std::string& s);

// The argv that runs `remote_command` (a POSIX sh script) on the URL's host.
std::vector<std::string> SshArgv(const SshUrl& url, const SshOptions& options,
                                 const std::string& remote_command);

// The URL's remote file as one word for the remote POSIX sh: quoted with ShellQuote, or
// "$HOME"/'rest' for a ssh://host/~/rest path (the remote shell expands only $HOME).
std::string RemoteFileWord(const SshUrl& url);

// The argv that runs the POSIX sh `script` on the URL's host: SshArgv with `sh -c 'script'`.
std::vector<std::string> SshScriptArgv(const SshUrl& url, const SshOptions& options,
                                       const std::string& script);

// A memfd that collects what ssh and the remote side write to stderr (for SshFailure), and
// its text so far (at most 64 KiB).
Result<UniqueFd> MakeStderrCapture();
std::string ReadStderrCapture(int fd);

// A sink that streams the image to the remote host.
//
// Opening runs the first ssh session, which checks the destination (refuses an existing
// name unless `overwrite`, or a directory), creates a private temporary file beside it with
// mktemp (umask 077), names it back, and then stores stdin in it with `cat`; opening returns
// only after that, so an unreachable host, a refused host key or a bad directory fail before
// any source block is read. Commit() closes the stream, waits for the remote side to fsync
// the temporary file and report its size, checks the size against the bytes sent, and only
// then runs a second ssh session that publishes it under the final name (`ln`, which never
// replaces a file, or `mv -f` with overwrite) and fsyncs the directory. A remote EOF alone
// can never publish anything: a connection dropped halfway leaves at most the temporary
// file, which the sink removes (best effort, with one more session) when destroyed
// uncommitted. Errors are kTarget and quote what ssh and the remote side said.
//
// Publishing is idempotent: the remote side reports the temporary file's inode number after
// the upload, and the publishing script first checks whether the final name already holds
// that inode. When the publishing session is lost without the script's verdict (ssh exit
// 255 or a signal: `ln` may or may not have run), Commit() runs the script once more in a
// new session; if that finds or makes the image published, Commit() succeeds with a warning
// notice on stderr. So a failed Commit() means the final name does not hold the image, except when
// the second session is lost too: then the error says that the outcome is unknown.
Result<std::unique_ptr<Sink>> MakeSshSink(const SshUrl& url, const SshOptions& options,
                                          bool overwrite);

// A running ssh process started with posix_spawn in its own process group (so a Ctrl-C at
// the terminal reaches hotsnap, which then stops it, and not ssh directly). Move-only;
// destroying a running one sends SIGTERM (SIGKILL after 2 s) and reaps it.
class SshProcess {
 public:
  SshProcess() = default;
  ~SshProcess();
  SshProcess(SshProcess&& other) noexcept;
  SshProcess& operator=(SshProcess&& other) noexcept;
  SshProcess(const SshProcess&) = delete;
  SshProcess& operator=(const SshProcess&) = delete;

  // Starts argv with the given descriptors as its stdin, stdout, stderr.
  static Result<SshProcess> Start(const std::vector<std::string>& argv, int in, int out, int err);
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // Waits for the exit; exit status, or 128+signal. kInterrupted on SIGINT/SIGTERM.
  Result<int> Wait();
  // Waits at most `ms` milliseconds; -1 if still running then.
  int WaitFor(int ms);
  // SIGTERM, then SIGKILL after 2 s; reaps. Returns the exit status as Wait() does.
  int Stop();
  int exit_code() const { return exit_code_; }

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// An image read from the remote host as a stream: the stdout of `cat` run there.
// Open() returns once the remote file is open (a missing or unreadable file fails here,
// kSource, with the remote shell's message); the stream is then read from fd().
class SshImageStream {
 public:
  ~SshImageStream();
  static Result<std::unique_ptr<SshImageStream>> Open(const SshUrl& url, const SshOptions& options);
  int fd() const { return stdout_.get(); }
  // Reading the stream failed with `status`: when the connection or the remote command
  // failed (ssh exited non-zero), returns a kSource status saying so, with ssh's message;
  // otherwise `status` unchanged (e.g. the remote file itself is corrupt).
  Status ExplainReadFailure(const Status& status);

 private:
  SshImageStream() = default;
  SshUrl url_;
  UniqueFd stdout_;
  UniqueFd stderr_;  // a memfd
  SshProcess process_;
};

// The message for a failed ssh run: says what failed (connection, login, host key unknown
// or changed, the remote command) and quotes the last lines ssh and the remote side wrote.
Status SshFailure(Code code, const SshUrl& url, const std::string& what, int exit_code,
                  const std::string& ssh_stderr);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_SSH_REMOTE_H_
