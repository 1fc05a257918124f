#include "io/ssh_ranged_reader.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>

#include "base/interrupt.h"

namespace hotsnap {
namespace {

constexpr char kSizeTag[] = "size ";
constexpr char kEndTag[] = "end ";
// A remote side that sends nothing for this long is taken as stuck (a dead connection is
// noticed sooner, by ssh's ServerAlive probes).
constexpr int kIdleTimeoutMs = 120 * 1000;

// The remote loop. The file is reopened by name for each range (tail), so `wc -c` after
// the range tells whether what was read is still the file that was sized at the start.
std::string RangeScript(const SshUrl& url) {
  std::string s = "f=" + RemoteFileWord(url) + "\n";
  s += "if [ -d \"$f\" ]; then echo \"hotsnap: $f is a directory\" >&2; exit 91; fi\n";
  // The shell's own message names the file and says why (No such file, Permission denied).
  s += "exec 3< \"$f\" || exit 99\n";
  s += "exec 3<&-\n";
  s += "s=$(wc -c < \"$f\") || exit 98\n";
  s += "set -f; set -- $s; echo \"size $1\"\n";
  s += "while read -r o n; do\n";
  // Exactly $n bytes whatever happens to the file: its bytes from offset $o, then zeros.
  s += "  { tail -c +$((o + 1)) -- \"$f\" 2>/dev/null; cat /dev/zero 2>/dev/null; } </dev/null | "
       "head -c \"$n\"\n";
  s += "  s=$(wc -c < \"$f\") || s=0; set -- $s; echo \"end $1\"\n";
  s += "done\n";
  return s;
}

bool ParseDecimal(const std::string& text, uint64_t* value) {
  if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  *value = std::stoull(text);
  return true;
}

}  // namespace

SshRangedReader::~SshRangedReader() {
  stdin_.Reset();   // the remote loop's `read` sees EOF and the script ends
  stdout_.Reset();  // a range still being sent gets EPIPE
  if (process_.running() && process_.WaitFor(2000) < 0) process_.Stop();
}

Result<std::unique_ptr<SshRangedReader>> SshRangedReader::Open(const SshUrl& url,
                                                               const SshOptions& options) {
  std::unique_ptr<SshRangedReader> r(new SshRangedReader());
  r->url_ = url;
  int in_pipe[2], out_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0) return Status::FromErrno(Code::kInternal, errno, "pipe");
  UniqueFd in_r(in_pipe[0]);
  r->stdin_.Reset(in_pipe[1]);
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return Status::FromErrno(Code::kInternal, errno, "pipe");
  r->stdout_.Reset(out_pipe[0]);
  UniqueFd out_w(out_pipe[1]);
  auto err = MakeStderrCapture();
  if (!err.ok()) return err.status();
  r->stderr_ = std::move(err.value());

  auto process = SshProcess::Start(SshScriptArgv(url, options, RangeScript(url)), in_r.get(),
                                   out_w.get(), r->stderr_.get());
  if (!process.ok()) return process.status();
  r->process_ = std::move(process.value());
  in_r.Reset();
  out_w.Reset();

  std::string line;
  bool eof = false;
  HOTSNAP_RETURN_IF_ERROR(r->ReceiveLine(&line, &eof));
  if (eof) return r->SessionFailure("opening the image");
  if (line.rfind(kSizeTag, 0) != 0 ||
      !ParseDecimal(line.substr(sizeof(kSizeTag) - 1), &r->size_bytes_)) {
    return Status(Code::kSource, "opening the image on " + url.text +
                                     ": the remote side answered '" + line +
                                     "' instead of the file's size");
  }
  return r;
}

Status SshRangedReader::Read(uint64_t offset, size_t bytes, void* dst) {
  if (offset > size_bytes_ || bytes > size_bytes_ - offset) {
    return Status(Code::kIntegrity,
                  "image " + url_.text + ": ends before offset " + std::to_string(offset + bytes));
  }
  if (bytes == 0) return Status::Ok();
  std::string request = std::to_string(offset) + " " + std::to_string(bytes) + "\n";
  for (size_t sent = 0; sent < request.size();) {
    ssize_t n = ::write(stdin_.get(), request.data() + sent, request.size() - sent);
    if (n < 0 && errno == EINTR && !Interrupted()) continue;
    if (n < 0 && errno == EINTR)
      return Status(Code::kInterrupted, "interrupted reading " + url_.text);
    if (n <= 0) return SessionFailure("reading the image");
    sent += static_cast<size_t>(n);
  }
  const std::string what = "reading " + std::to_string(bytes) + " bytes at offset " +
                           std::to_string(offset) + " of the image";
  bool eof = false;
  HOTSNAP_RETURN_IF_ERROR(ReceiveExact(dst, bytes, &eof));
  if (eof) return SessionFailure(what);
  std::string line;
  HOTSNAP_RETURN_IF_ERROR(ReceiveLine(&line, &eof));
  if (eof) return SessionFailure(what);
  uint64_t now = 0;
  if (line.rfind(kEndTag, 0) != 0 || !ParseDecimal(line.substr(sizeof(kEndTag) - 1), &now)) {
    return Status(Code::kSource, what + " on " + url_.text + ": the remote side answered '" + line +
                                     "' after the range");
  }
  if (now != size_bytes_) {
    return Status(Code::kSource, what + " on " + url_.text +
                                     ": the file changed while it was read (" +
                                     std::to_string(size_bytes_) + " bytes when opened, " +
                                     std::to_string(now) + " now)");
  }
  return Status::Ok();
}

Status SshRangedReader::ReceiveExact(void* dst, size_t bytes, bool* eof) {
  auto* p = static_cast<uint8_t*>(dst);
  *eof = false;
  while (bytes > 0) {
    struct pollfd pfd = {stdout_.get(), POLLIN, 0};
    int ready = ::poll(&pfd, 1, kIdleTimeoutMs);
    if (ready < 0 && errno == EINTR) {
      if (Interrupted()) return Status(Code::kInterrupted, "interrupted reading " + url_.text);
      continue;
    }
    if (ready < 0) return Status::FromErrno(Code::kInternal, errno, "poll on ssh");
    if (ready == 0) {
      return Status(Code::kSource, "reading the image on " + url_.text + ": nothing arrived for " +
                                       std::to_string(kIdleTimeoutMs / 1000) + " s");
    }
    ssize_t n = ::read(stdout_.get(), p, bytes);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *eof = true;
      return Status::Ok();
    }
    p += n;
    bytes -= static_cast<size_t>(n);
    bytes_received_ += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status SshRangedReader::ReceiveLine(std::string* line, bool* eof) {
  line->clear();
  for (;;) {
    char c;
    HOTSNAP_RETURN_IF_ERROR(ReceiveExact(&c, 1, eof));
    if (*eof || c == '\n') return Status::Ok();
    if (line->size() >= 64) {
      return Status(Code::kSource, "reading the image on " + url_.text +
                                       ": the remote side sent an overlong line '" + *line +
                                       "...'");
    }
    line->push_back(c);
  }
}

Status SshRangedReader::SessionFailure(const std::string& what) {
  if (Interrupted()) return Status(Code::kInterrupted, "interrupted reading " + url_.text);
  stdin_.Reset();
  int code = process_.WaitFor(10000);
  if (code < 0) code = process_.Stop();
  std::string said = ReadStderrCapture(stderr_.get());
  if (code == 0) {
    return Status(Code::kSource, what + " on " + url_.text + ": the remote side ended early" +
                                     (said.empty() ? "" : ": " + said));
  }
  return SshFailure(Code::kSource, url_, what, code, said);
}

}  // namespace hotsnap
