#include "repo/repository.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <map>

#include "base/log.h"
#include "io/image_chain.h"
#include "io/stale_temp_files.h"
#include "repo/catalog.h"
#include "repo/lock.h"

namespace hotsnap {
namespace {

// What the next backup of a source writes: a full image, or a delta on `parent`.
struct NextImage {
  const RepoImage* parent = nullptr;
  std::string why;
};

// Deltas between `image` and its chain's full image; -1 if the chain is broken in the catalog.
int DeltasBelow(const RepoImage& image, const std::map<std::string, const RepoImage*>& by_file) {
  int deltas = 0;
  const RepoImage* at = &image;
  while (!IsFullImage(*at)) {
    auto it = by_file.find(at->parent_file);
    if (it == by_file.end() || ++deltas > static_cast<int>(ImageChain::kMaxLinks)) return -1;
    at = it->second;
  }
  return deltas;
}

NextImage ChooseNext(const std::string& repo, const std::string& source,
                     const std::vector<RepoImage>& images, unsigned full_every) {
  std::map<std::string, const RepoImage*> by_file;
  const RepoImage* newest = nullptr;
  for (const RepoImage& image : images) {
    if (image.source != source) continue;
    by_file[image.file] = &image;
    newest = &image;  // the catalog is oldest first
  }
  if (newest == nullptr) return {nullptr, "first backup of " + source + " in the repository"};
  if (full_every == 0) return {nullptr, "every backup is full (full_every 0)"};
  int deltas = DeltasBelow(*newest, by_file);
  if (deltas < 0) {
    return {nullptr, "the chain of the newest image " + newest->file + " is broken in the catalog"};
  }
  if (static_cast<unsigned>(deltas) >= full_every) {
    return {nullptr, "the newest chain holds " + std::to_string(deltas) + " delta(s) (a full image every " +
                         std::to_string(full_every) + ")"};
  }
  // The newest image must be usable as a parent: it and its chain open and agree.
  auto chain = ImageChain::Open(repo + "/" + newest->file);
  if (!chain.ok()) {
    return {nullptr, "the newest image " + newest->file + " is unusable as a parent (" +
                         chain.status().message() + ")"};
  }
  return {newest, "delta " + std::to_string(deltas + 1) + " of " + std::to_string(full_every) +
                      " on " + newest->file};
}

bool ValidSourceName(const std::string& name) {
  if (name.empty() || name.front() == '.' || name.size() > 200) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

Status MakeSourceDir(const std::string& repo, const std::string& source) {
  std::string dir = repo + "/" + source;
  if (::mkdir(dir.c_str(), 0700) == 0) {
    if (int err = SyncDir(repo); err != 0) {
      return Status::FromErrno(Code::kTarget, err, "fsync of repository " + repo);
    }
    return Status::Ok();
  }
  if (errno != EEXIST) return Status::FromErrno(Code::kTarget, errno, "creating " + dir);
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status(Code::kTarget, dir + " exists and is not a directory");
  }
  return Status::Ok();
}

// Undoes a published image whose record could not be written: the rule is that a failed
// backup leaves the repository as it was.
Status Unpublish(const std::string& repo, const std::string& file) {
  std::string path = repo + "/" + file;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno(Code::kTarget, errno, "removing " + path);
  }
  if (int err = SyncDir(DirectoryOf(path)); err != 0) {
    return Status::FromErrno(Code::kTarget, err, "fsync of " + DirectoryOf(path));
  }
  return Status::Ok();
}

}  // namespace

std::string RepoSourceName(const std::string& device) {
  std::string path = device;
  if (path.rfind("/dev/", 0) == 0) path = path.substr(5);
  std::string name;
  for (char c : path) {
    if (c == '/') {
      if (!name.empty() && name.back() != '-') name += '-';
      continue;
    }
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.';
    name += ok ? c : '_';
  }
  while (!name.empty() && name.back() == '-') name.pop_back();
  while (!name.empty() && (name.front() == '.' || name.front() == '-')) name.erase(0, 1);
  if (name.size() > 200) name.resize(200);
  return name.empty() ? "source" : name;
}

namespace {

// The request's checks; the source's name in the repository.
Result<std::string> CheckRequest(const RepoBackupRequest& request) {
  const std::string& repo = request.repo;
  if (repo.empty()) return Status(Code::kUsage, "no repository given");
  if (!request.options.dest.empty() || !request.options.base.empty()) {
    return Status(Code::kUsage, "a backup into a repository chooses its own destination and parent "
                                "(-o and --base do not apply)");
  }
  if (repo.rfind("ssh://", 0) == 0) {
    return Status(Code::kUnsupported, "ssh:// repositories are not supported yet; use a local directory");
  }
  std::string source = request.source_name.empty() ? RepoSourceName(request.options.source) : request.source_name;
  if (!ValidSourceName(source)) {
    return Status(Code::kUsage, "'" + source + "' cannot name a source in a repository (letters, digits, '-', '_', '.')");
  }
  return source;
}

// Full or delta, the image's name, and the backup's own plan passes on the options that gives.
Result<RepoBackupPlan> PlanWith(const RepoBackupRequest& request, const std::string& source,
                                const std::vector<RepoImage>& images) {
  const std::string& repo = request.repo;
  NextImage next = ChooseNext(repo, source, images, request.full_every);
  RepoBackupPlan plan;
  plan.source = source;
  plan.file = NewImageFile(repo, source, static_cast<int64_t>(::time(nullptr)));
  plan.parent_file = next.parent != nullptr ? next.parent->file : "";
  plan.why = next.why;
  BackupOptions options = request.options;
  options.dest = repo + "/" + plan.file;
  options.base = next.parent != nullptr ? repo + "/" + plan.parent_file : "";
  options.overwrite = false;
  auto backup = PlanBackup(options);
  if (!backup.ok()) return backup.status();
  plan.backup = std::move(backup).value();
  return plan;
}

}  // namespace

Result<RepoBackupPlan> PlanIntoRepository(const RepoBackupRequest& request) {
  auto source = CheckRequest(request);
  if (!source.ok()) return source.status();
  std::vector<RepoImage> images;
  Status marker = CheckRepoMarker(request.repo);
  if (marker.ok()) {
    auto listed = ReadCatalog(request.repo);
    if (!listed.ok()) return listed.status();
    images = std::move(listed).value();
  } else if (marker.code() != Code::kUsage) {
    return marker;
  }  // else no repository yet: the first backup makes it (and refuses a non-empty directory)
  return PlanWith(request, *source, images);
}

Result<RepoBackupResult> BackupIntoRepository(const RepoBackupRequest& request) {
  const std::string& repo = request.repo;
  auto source = CheckRequest(request);
  if (!source.ok()) return source.status();
  HOTSNAP_RETURN_IF_ERROR(InitRepository(repo));

  // Everything below under the repository's lock.
  std::string broken;
  auto lock = RepoLock::Acquire(repo, "backup", &broken);
  if (!broken.empty()) Notice(broken);
  if (!lock.ok()) return lock.status();
  auto images = ReadCatalog(repo);
  if (!images.ok()) return images.status();
  HOTSNAP_RETURN_IF_ERROR(MakeSourceDir(repo, *source));
  // Under the lock no other backup of this repository runs: any temporary file there is a
  // crashed run's (a live process's is kept all the same).
  StaleTempReport stale;
  if (Status s = RemoveStaleTemporaryFiles(repo + "/" + *source, &stale); !s.ok()) {
    Notice("warning: " + s.message());
  }
  for (const std::string& removed : stale.removed) Notice("removed " + removed + " (left by a crashed run)");

  // Full or delta, then the backup itself: it publishes the image, or nothing.
  auto plan = PlanWith(request, *source, *images);
  if (!plan.ok()) return plan.status();
  const std::string file = plan->file;
  const std::string expected_parent = plan->parent_file;
  const std::string why = plan->why;
  auto report = RunPlan(std::move(plan->backup));
  if (!report.ok()) return report.status();

  // The record, from the published image itself, then the catalog.
  auto record = RepoImageFromFile(repo, file);
  if (!record.ok()) return record.status().Wrap("reading back " + file).WithCleanup(Unpublish(repo, file));
  record->source = *source;
  if (record->parent_file != expected_parent) {
    return Status(Code::kInternal, file + " names " + record->parent_file + " as its parent, not " + expected_parent)
        .WithCleanup(Unpublish(repo, file));
  }
  images->push_back(*record);
  if (Status written = WriteCatalog(repo, *images); !written.ok()) {
    return written.Wrap("recording " + file + " in the catalog").WithCleanup(Unpublish(repo, file));
  }
  RepoBackupResult result{std::move(record).value(), std::move(report).value(), why};
  // The image is published and recorded: a lock that cannot be removed is only a warning
  // (the next run finds it stale).
  if (Status released = lock->Release(); !released.ok()) Notice("warning: " + released.message());
  return result;
}

Result<std::vector<RepoImage>> ListRepository(const std::string& repo) {
  if (repo.rfind("ssh://", 0) == 0) {
    return Status(Code::kUnsupported, "ssh:// repositories are not supported yet; use a local directory");
  }
  return ReadCatalog(repo);
}

}  // namespace hotsnap
