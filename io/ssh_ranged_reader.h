// SshRangedReader: byte ranges of a file on another host, over one ssh session.
//
// For `backup --base ssh://...`: a delta backup needs only its parent's index (footer, seek
// table, trailer, report, metadata frame: a few KiB to a few MiB even for a large disk), so
// the parent is never fetched; LoadImageIndex reads those ranges through this reader.
//
// One ssh session (io/ssh_remote.h: the system ssh, BatchMode, --ssh-options, no local
// shell) runs a small POSIX sh loop on the remote side. Open() returns once it has opened
// the file and reported its size (`wc -c`): a missing file or an unreachable host fails
// there. Each Read() then sends one request line "OFFSET BYTES" and receives exactly BYTES
// bytes (`tail -c +OFFSET+1 | head -c BYTES`, padded with zeros should the file end early,
// so the framing never depends on the file) followed by a line "end SIZE" with the file's
// size after the read: a file that changed size while it was read fails the read instead
// of yielding the padding. The remote side needs sh, tail, head, cat and wc.
//
// Errors: kSource for anything ssh or the remote side reports, or a file that changed while
// read, naming the URL (SshFailure); kIntegrity for a range past the end of the file as it
// was opened (as a local file's premature end of file). Not thread-safe; one Read() at a
// time. The destructor ends the session (closes its stdin, then stops ssh if it lingers).
#ifndef HOTSNAP_IO_SSH_RANGED_READER_H_
#define HOTSNAP_IO_SSH_RANGED_READER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "base/unique_fd.h"
#include "io/ranged_reader.h"
#include "io/ssh_remote.h"

namespace hotsnap {

class SshRangedReader : public RangedReader {
 public:
  ~SshRangedReader() override;
  SshRangedReader(const SshRangedReader&) = delete;
  SshRangedReader& operator=(const SshRangedReader&) = delete;

  static Result<std::unique_ptr<SshRangedReader>> Open(const SshUrl& url,
                                                       const SshOptions& options);

  uint64_t size_bytes() const override { return size_bytes_; }
  Status Read(uint64_t offset, size_t bytes, void* dst) override;

  // Every byte received from the remote side so far, in bytes: the ranges read plus the
  // few bytes of framing (the size line, one "end" line per range). What ssh itself adds
  // (encryption, the handshake) is not counted.
  uint64_t bytes_received() const { return bytes_received_; }

 private:
  SshRangedReader() = default;
  // Reads exactly `bytes` from the session's stdout; sets *eof when it ends before that.
  // Fails on an interrupt, or when nothing arrives for two minutes.
  Status ReceiveExact(void* dst, size_t bytes, bool* eof);
  // Reads one '\n'-terminated line (without it) of at most 64 bytes; sets *eof likewise.
  Status ReceiveLine(std::string* line, bool* eof);
  // The session ended or broke while `what`: ssh's exit status and message, kSource.
  Status SessionFailure(const std::string& what);

  SshUrl url_;
  UniqueFd stdin_;   // request lines go here
  UniqueFd stdout_;  // the size line, then each range and its "end" line
  UniqueFd stderr_;  // a memfd
  SshProcess process_;
  uint64_t size_bytes_ = 0;
  uint64_t bytes_received_ = 0;
};

}  // namespace hotsnap

#endif  // HOTSNAP_IO_SSH_RANGED_READER_H_
