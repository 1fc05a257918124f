#include "repo/prune.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "agent/merge_job.h"
#include "base/log.h"
#include "io/image_chain.h"
#include "repo/catalog.h"
#include "repo/lock.h"

namespace hotsnap {
namespace {

std::vector<RepoImage>::iterator FindImage(std::vector<RepoImage>* images, const std::string& file) {
  return std::find_if(images->begin(), images->end(), [&file](const RepoImage& i) { return i.file == file; });
}

// kMerge: fold the delta at REPO/`file` into its parent; the catalog follows the files.
Result<std::string> MergeStep(const std::string& repo, const std::string& file, std::vector<RepoImage>* images) {
  auto entry = FindImage(images, file);
  if (entry == images->end()) return Status(Code::kInternal, "the plan merges " + file + ", which is not in the catalog");
  const std::string parent = entry->parent_file;
  MergeOptions merge;
  merge.delta = repo + "/" + file;
  auto r = RunMerge(merge);
  if (!r.ok()) return r.status().Wrap("merging " + file + " into its parent " + parent);
  auto record = RepoImageFromFile(repo, file);
  if (!record.ok()) return record.status().Wrap("reading back the merged " + file);
  record->source = entry->source;
  *entry = std::move(record).value();
  std::string line = "merged " + file + " into its parent " + parent + " (now a full image, " +
                     std::to_string(r->image_bytes) + " bytes)";
  if (::access((repo + "/" + parent).c_str(), F_OK) != 0 && errno == ENOENT) {
    images->erase(FindImage(images, parent));
    line += "; removed " + parent;
  } else {
    line += "; kept " + parent + (r->plan.keep_reason.empty() ? "" : ": " + r->plan.keep_reason);
  }
  if (!r->warning.empty()) Notice("warning: " + r->warning);
  return line;
}

// kDelete: remove REPO/`file`, unless an image that stays needs it.
Result<std::string> DeleteStep(const std::string& repo, const std::string& file, std::vector<RepoImage>* images) {
  auto entry = FindImage(images, file);
  if (entry == images->end()) return Status(Code::kInternal, "the plan deletes " + file + ", which is not in the catalog");
  for (const RepoImage& image : *images) {
    if (image.parent_file == file) {
      return Status(Code::kInternal, "the plan deletes " + file + ", the parent of " + image.file +
                                         ", which stays; nothing removed");
    }
  }
  std::string path = repo + "/" + file;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno(Code::kTarget, errno, "removing " + path);
  }
  if (int err = SyncDir(DirectoryOf(path)); err != 0) {
    return Status::FromErrno(Code::kTarget, err, "fsync of " + DirectoryOf(path));
  }
  images->erase(entry);
  return "removed " + file;
}

}  // namespace

Result<PruneReport> PruneRepository(const PruneOptions& options) {
  const std::string& repo = options.repo;
  if (repo.rfind("ssh://", 0) == 0) {
    return Status(Code::kUnsupported, "ssh:// repositories are not supported yet; use a local directory");
  }
  if (options.policy.Empty()) {
    return Status(Code::kUsage, "no --keep-... option given: a prune that keeps nothing is refused");
  }
  HOTSNAP_RETURN_IF_ERROR(CheckRepoMarker(repo));
  std::string broken;
  auto lock = RepoLock::Acquire(repo, options.dry_run ? "prune --dry-run" : "prune", &broken);
  if (!broken.empty()) Notice(broken);
  if (!lock.ok()) return lock.status();
  auto images = ReadCatalog(repo);
  if (!images.ok()) return images.status();

  // The plans, from the catalog alone.
  PruneReport report;
  std::set<std::string> sources;
  for (const RepoImage& image : *images) sources.insert(image.source);
  if (!options.source.empty()) {
    if (!sources.count(options.source)) {
      return Status(Code::kUsage, "repository " + repo + " holds no images of " + options.source);
    }
    sources = {options.source};
  }
  for (const std::string& source : sources) {
    std::vector<RepoImage> own;
    for (const RepoImage& image : *images) {
      if (image.source == source) own.push_back(image);
    }
    auto plan = PlanPrune(own, options.policy);
    if (!plan.ok()) return plan.status().Wrap("planning the prune of " + source);
    report.sources.push_back(SourcePrune{source, std::move(plan).value(), 0, {}});
  }
  if (options.dry_run) return report;

  // The steps, the catalog rewritten after each.
  for (SourcePrune& source : report.sources) {
    for (const PruneStep& step : source.plan.steps) {
      auto done = step.kind == PruneStep::Kind::kMerge ? MergeStep(repo, step.file, &*images)
                                                       : DeleteStep(repo, step.file, &*images);
      if (!done.ok()) return done.status();
      HOTSNAP_RETURN_IF_ERROR(WriteCatalog(repo, *images).Wrap("recording: " + *done));
      source.done.push_back(*done);
      ++source.steps_done;
    }
  }
  if (Status released = lock->Release(); !released.ok()) Notice("warning: " + released.message());
  return report;
}

}  // namespace hotsnap
