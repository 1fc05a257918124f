#include "repo/check.h"

#include <map>
#include <set>

#include "agent/image_jobs.h"
#include "base/log.h"
#include "io/image_chain.h"
#include "repo/catalog.h"
#include "repo/lock.h"

namespace hotsnap {
namespace {

// What differs between a catalog entry and its image's own record ("" if nothing).
std::string Differences(const RepoImage& listed, const RepoImage& actual) {
  std::string diff;
  auto add = [&diff](const std::string& what) { diff += (diff.empty() ? "" : ", ") + what; };
  if (listed.source != actual.source) add("source " + listed.source + " (the image is under " + actual.source + ")");
  if (listed.image_hash.Hex() != actual.image_hash.Hex()) {
    add("image hash " + listed.image_hash.Hex() + " (the image's is " + actual.image_hash.Hex() + ")");
  }
  if (listed.parent_file != actual.parent_file) {
    add("parent '" + listed.parent_file + "' (the image names '" + actual.parent_file + "')");
  }
  if (listed.image_bytes != actual.image_bytes) {
    add("size " + std::to_string(listed.image_bytes) + " (the file has " + std::to_string(actual.image_bytes) + ")");
  }
  if (listed.created_utc_s != actual.created_utc_s) {
    add("time " + FormatUtc(listed.created_utc_s) + " (the image says " + FormatUtc(actual.created_utc_s) + ")");
  }
  if (listed.run_id != actual.run_id) add("run id '" + listed.run_id + "' (the image says '" + actual.run_id + "')");
  return diff;
}

}  // namespace

Result<RepoCheckReport> CheckRepository(const RepoCheckOptions& options) {
  const std::string& repo = options.repo;
  if (repo.rfind("ssh://", 0) == 0) {
    return Status(Code::kUnsupported, "ssh:// repositories are not supported yet; use a local directory");
  }
  HOTSNAP_RETURN_IF_ERROR(CheckRepoMarker(repo));
  // Under the lock: a backup between publishing its image and recording it would otherwise
  // show as an unknown image.
  std::string broken;
  auto lock = RepoLock::Acquire(repo, "check", &broken);
  if (!broken.empty()) Notice(broken);
  if (!lock.ok()) return lock.status();

  RepoCheckReport report;
  auto catalog = ReadCatalog(repo);
  if (!catalog.ok()) {
    report.problems.push_back("catalog: " + catalog.status().message());
    catalog = std::vector<RepoImage>{};
  }
  auto scan = ScanRepository(repo);
  if (!scan.ok()) return scan.status();
  report.catalog_images = catalog->size();
  report.rebuilt = scan->images;

  std::map<std::string, const RepoImage*> on_disk;
  for (const RepoImage& image : scan->images) on_disk[image.file] = &image;
  std::map<std::string, std::string> unreadable;  // file -> why
  for (const std::string& line : scan->unreadable) {
    std::string file = line.substr(0, line.find(": "));
    unreadable[file] = line;
  }
  std::map<std::string, const RepoImage*> listed;
  for (const RepoImage& image : *catalog) {
    if (!listed.emplace(image.file, &image).second) report.problems.push_back("catalog lists " + image.file + " twice");
  }

  // The catalog against the files.
  for (const RepoImage& image : *catalog) {
    if (unreadable.count(image.file)) {
      report.problems.push_back("unreadable image " + unreadable[image.file]);
      continue;
    }
    auto found = on_disk.find(image.file);
    if (found == on_disk.end()) {
      report.problems.push_back("missing file: " + image.file + " is in the catalog but not in the repository");
      continue;
    }
    std::string diff = Differences(image, *found->second);
    if (!diff.empty()) report.problems.push_back("catalog entry of " + image.file + " differs from the image: " + diff);
  }
  for (const RepoImage& image : scan->images) {
    if (!listed.count(image.file)) {
      report.problems.push_back("unknown file: " + image.file + " is an image the catalog does not list");
    }
  }
  for (const auto& [file, line] : unreadable) {
    if (!listed.count(file)) report.problems.push_back("unknown file: " + line);
  }
  for (const std::string& file : scan->unknown) {
    report.problems.push_back("unknown file: " + file + " is no part of a hotsnap repository");
  }
  for (const std::string& file : scan->temporary) {
    report.notes.push_back("temporary file " + file + " (a crashed run's; `hotsnap cleanup " + repo + "/" +
                           DirectoryOf(file) + "` removes it)");
  }

  // Chains: every delta's parent is listed, and every listed chain opens and agrees.
  std::set<std::string> parents;
  for (const RepoImage& image : *catalog) {
    if (IsFullImage(image)) continue;
    parents.insert(image.parent_file);
    if (!listed.count(image.parent_file)) {
      report.problems.push_back("broken chain: the parent " + image.parent_file + " of " + image.file +
                                " is not in the catalog");
    }
  }
  std::vector<std::string> tips;  // the newest image of each chain
  for (const RepoImage& image : *catalog) {
    if (!on_disk.count(image.file)) continue;
    if (!parents.count(image.file)) tips.push_back(image.file);
    auto chain = ImageChain::Open(repo + "/" + image.file);
    if (!chain.ok()) report.problems.push_back("broken chain at " + image.file + ": " + chain.status().message());
  }

  // Every byte, once per chain from its newest image.
  if (options.read_data) {
    std::set<std::string> verified;
    for (const std::string& tip : tips) {
      auto r = RunVerify(repo + "/" + tip, /*progress=*/false);
      if (!r.ok()) {
        report.problems.push_back("read-data: " + tip + ": " + r.status().message());
        continue;
      }
      for (const std::string& link : r->chain) verified.insert(link);
      if (r->chain.empty()) verified.insert(tip);
    }
    report.images_read = verified.size();
  }
  if (Status released = lock->Release(); !released.ok()) Notice("warning: " + released.message());
  return report;
}

}  // namespace hotsnap
