// RepoLock: at most one writer of a repository at a time, as a lease file REPO/lock.
//
// The lease says who holds it, as JSON: host (HostName()), the holder's ProcessIdentity (pid,
// process start time, boot id), run id, purpose ("backup", "prune", "check") and the UTC time
// it was taken. It is created whole or not at all: written and fsynced under a temporary name,
// then link()ed to REPO/lock (renameat2(RENAME_NOREPLACE) where hard links are refused), which
// fails if a lease exists — on a local filesystem and on NFS alike, so two hosts sharing a
// repository never both hold it.
//
// An existing lease is judged by rule:
//   - this host's, and its holder is gone (no such pid, a pid started at another time, or
//     another boot id): stale. It is broken (removed, with a message saying whose it was and
//     why it was stale) and the lease taken;
//   - this host's, and its holder runs: kBusy naming the holder (pid, purpose, start);
//   - another host's: kBusy — never broken automatically, whatever it says (its holder cannot
//     be seen from here); the message names the host and says how to break it by hand;
//   - unreadable (not a lease of ours): kBusy, never broken.
// Breaking and taking happen under flock() on the repository directory, so two runs on this
// host never both break one stale lease and then both take it.
//
// Release (or the destructor) removes the lease if it is still the one this object wrote.
// Move-only; not thread-safe per object.
#ifndef HOTSNAP_REPO_LOCK_H_
#define HOTSNAP_REPO_LOCK_H_

#include <optional>
#include <string>

#include "base/process_identity.h"
#include "base/status.h"

namespace hotsnap {

// What a lease file says.
struct RepoLease {
  std::string host;
  ProcessIdentity identity;
  std::string run_id;
  std::string purpose;
  std::string started;  // UTC, "2026-12-04T18:47:00Z"
};

// The lease's JSON text, and back (nullopt: not a lease).
std::string EncodeRepoLease(const RepoLease& lease);
std::optional<RepoLease> DecodeRepoLease(const std::string& text);

class RepoLock {
 public:
  // Takes REPO/lock for `purpose`. `broken` (optional) receives a line for each stale lease
  // broken on the way ("broke the stale lock of hotsnap pid N on HOST (...): its process is
  // gone"). kBusy as above; kTarget when the lease cannot be written.
  static Result<RepoLock> Acquire(const std::string& repo, const std::string& purpose,
                                  std::string* broken = nullptr);

  RepoLock(RepoLock&& other) noexcept;
  RepoLock& operator=(RepoLock&& other) noexcept;
  RepoLock(const RepoLock&) = delete;
  RepoLock& operator=(const RepoLock&) = delete;
  ~RepoLock();

  // Removes the lease (if it is still ours). Idempotent.
  Status Release();
  bool held() const { return !file_.empty(); }
  const std::string& file() const { return file_; }
  const RepoLease& lease() const { return lease_; }

 private:
  RepoLock() = default;
  std::string file_;
  std::string text_;  // what we wrote: a lease is removed only while it still says this
  RepoLease lease_;
};

}  // namespace hotsnap

#endif  // HOTSNAP_REPO_LOCK_H_
