#include "repo/lock.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <nlohmann/json.hpp>
#include <utility>

#include "base/unique_fd.h"
#include "io/image_chain.h"
#include "io/sink.h"
#include "repo/catalog.h"

namespace hotsnap {
namespace {

using json = nlohmann::json;

// The whole file, or nullopt if it cannot be opened (ENOENT: a lease released meanwhile).
std::optional<std::string> ReadText(const std::string& path, int* err) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    *err = errno;
    return std::nullopt;
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t got = ::read(fd.get(), buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buf, static_cast<size_t>(got));
  }
  *err = 0;
  return text;
}

std::string Holder(const RepoLease& lease) {
  return "hotsnap pid " + std::to_string(lease.identity.pid) + " on " + lease.host + " (" +
         lease.purpose + ", since " + lease.started + ", run id " + lease.run_id + ")";
}

// Why a lease of this host is stale, or "" if its holder runs.
std::string StaleReason(const RepoLease& lease) {
  if (lease.identity.Alive()) return "";
  if (lease.identity.boot_id != BootId()) {
    return "it was taken before a reboot (boot id " + lease.identity.boot_id + ")";
  }
  if (ProcessStartTicks(lease.identity.pid) == 0) {
    return "pid " + std::to_string(lease.identity.pid) + " is no longer running";
  }
  return "pid " + std::to_string(lease.identity.pid) + " is another process now (it started at another time)";
}

// Serialises breaking and taking leases among the runs on this host.
class DirectoryGuard {
 public:
  static Result<DirectoryGuard> Take(const std::string& dir) {
    DirectoryGuard guard;
    guard.fd_ = UniqueFd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!guard.fd_.valid()) return Status::FromErrno(Code::kTarget, errno, "opening repository " + dir);
    while (::flock(guard.fd_.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return Status::FromErrno(Code::kTarget, errno, "flock on repository " + dir);
    }
    return guard;
  }

 private:
  DirectoryGuard() = default;
  UniqueFd fd_;  // closing it drops the flock
};

// Publishes `temp` as `lock` without ever replacing an existing file: 0, EEXIST, or an errno.
int PublishNoReplace(const std::string& temp, const std::string& lock) {
  PublishOps* ops = RealPublishOps();
  int err = ops->Link(temp, lock);
  if (err == 0) {
    (void)ops->Unlink(temp);  // a leftover second name is harmless; cleanup removes it
    return 0;
  }
  if (err == EEXIST) return err;
  // Filesystems without hard links (some FUSE, CIFS): the rename that never replaces.
  return ops->Rename(temp, lock, RENAME_NOREPLACE);
}

}  // namespace

std::string EncodeRepoLease(const RepoLease& lease) {
  json doc = {{"host", lease.host},
              {"run_id", lease.run_id},
              {"purpose", lease.purpose},
              {"started", lease.started}};
  AddIdentityTo(lease.identity, &doc);
  return doc.dump(2) + "\n";
}

std::optional<RepoLease> DecodeRepoLease(const std::string& text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return std::nullopt;
  auto host = doc.find("host");
  if (host == doc.end() || !host->is_string() || host->get<std::string>().empty()) return std::nullopt;
  RepoLease lease;
  lease.host = host->get<std::string>();
  lease.identity = IdentityFrom(doc);
  if (lease.identity.pid <= 0) return std::nullopt;
  lease.run_id = doc.value("run_id", "");
  lease.purpose = doc.value("purpose", "");
  lease.started = doc.value("started", "");
  return lease;
}

Result<RepoLock> RepoLock::Acquire(const std::string& repo, const std::string& purpose,
                                   std::string* broken) {
  auto guard = DirectoryGuard::Take(repo);
  if (!guard.ok()) return guard.status();
  RepoLock lock;
  lock.lease_ = RepoLease{HostName(), ProcessIdentity::Current(), NewRunId(), purpose, NowUtc()};
  lock.text_ = EncodeRepoLease(lock.lease_);
  const std::string file = repo + "/" + kRepoLockFile;
  const std::string temp = TemporaryNameFor(file, static_cast<int>(::getpid()));
  {
    UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return Status::FromErrno(Code::kTarget, errno, "creating " + temp);
    Status written = WriteAll(fd.get(), lock.text_.data(), lock.text_.size(), temp, Code::kTarget);
    if (written.ok() && ::fsync(fd.get()) != 0) written = Status::FromErrno(Code::kTarget, errno, "fsync " + temp);
    if (!written.ok()) {
      ::unlink(temp.c_str());
      return written;
    }
  }
  // Two rounds: a stale lease broken in the first, ours published in the second.
  for (int round = 0; round < 3; ++round) {
    int err = PublishNoReplace(temp, file);
    if (err == 0) {
      (void)SyncDir(repo);  // the lease is taken either way; durability is best effort
      lock.file_ = file;
      return lock;
    }
    if (err != EEXIST) {
      ::unlink(temp.c_str());
      return Status::FromErrno(Code::kTarget, err, "taking the repository lock " + file);
    }
    int read_err = 0;
    std::optional<std::string> text = ReadText(file, &read_err);
    if (!text) {
      if (read_err == ENOENT) continue;  // released meanwhile
      ::unlink(temp.c_str());
      return Status::FromErrno(Code::kTarget, read_err, "reading the repository lock " + file);
    }
    std::optional<RepoLease> held = DecodeRepoLease(*text);
    std::string stale;
    if (held && held->host == lock.lease_.host) stale = StaleReason(*held);
    if (stale.empty()) {
      ::unlink(temp.c_str());
      if (!held) {
        return Status(Code::kBusy, "repository " + repo + " is locked: " + file +
                                       " is not a hotsnap lease; if no hotsnap uses the repository, remove it");
      }
      if (held->host != lock.lease_.host) {
        return Status(Code::kBusy,
                      "repository " + repo + " is locked by " + Holder(*held) +
                          "; a lock of another host is never broken automatically: if no hotsnap runs on " +
                          held->host + " any more, remove " + file);
      }
      return Status(Code::kBusy, "repository " + repo + " is locked by " + Holder(*held) +
                                     "; wait for it to finish or stop it");
    }
    // Stale, and under the guard no run of this host takes it meanwhile; other hosts never
    // break this host's leases.
    if (::unlink(file.c_str()) != 0 && errno != ENOENT) {
      int unlink_err = errno;
      ::unlink(temp.c_str());
      return Status::FromErrno(Code::kTarget, unlink_err, "breaking the stale repository lock " + file);
    }
    std::string line = "broke the stale lock of " + Holder(*held) + " on repository " + repo + ": " + stale;
    if (broken != nullptr) *broken += (broken->empty() ? "" : "\n") + line;
  }
  ::unlink(temp.c_str());
  return Status(Code::kBusy, "repository lock " + file + " keeps being taken");
}

RepoLock::RepoLock(RepoLock&& other) noexcept
    : file_(std::exchange(other.file_, {})),
      text_(std::exchange(other.text_, {})),
      lease_(std::exchange(other.lease_, {})) {}

RepoLock& RepoLock::operator=(RepoLock&& other) noexcept {
  if (this != &other) {
    (void)Release();
    file_ = std::exchange(other.file_, {});
    text_ = std::exchange(other.text_, {});
    lease_ = std::exchange(other.lease_, {});
  }
  return *this;
}

RepoLock::~RepoLock() { (void)Release(); }

Status RepoLock::Release() {
  if (file_.empty()) return Status::Ok();
  std::string file = std::exchange(file_, {});
  std::string repo = DirectoryOf(file);
  auto guard = DirectoryGuard::Take(repo);
  if (!guard.ok()) return guard.status();
  int err = 0;
  std::optional<std::string> text = ReadText(file, &err);
  if (!text || *text != text_) {
    return Status(Code::kInternal, "the repository lock " + file +
                                       " is no longer ours (removed or replaced by hand?); left alone");
  }
  if (::unlink(file.c_str()) != 0) {
    return Status::FromErrno(Code::kTarget, errno, "removing the repository lock " + file);
  }
  (void)SyncDir(repo);
  return Status::Ok();
}

}  // namespace hotsnap
