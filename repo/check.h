// `hotsnap check REPO [--read-data]`: does the repository hold what its catalog says?
//
// Under the repository's lock (repo/lock.h), the catalog is compared with the catalog rebuilt
// from the images' own metadata (repo/catalog.h, RepoImageFromFile), and every problem named:
//   - a file the catalog lists that is missing, or whose image does not load;
//   - an entry that differs from what its image says (hash, parent, size, time);
//   - an image the catalog does not list, a file that is no part of a repository;
//   - a broken chain: a delta whose parent is not in the catalog, or whose chain does not
//     open and agree (io/image_chain.h: hashes and geometry, from the indexes);
//   - with read_data, every image read in full and checked (agent/image_jobs.h RunVerify),
//     once: each chain from its newest image down, which verifies every link of it.
// Temporary files of crashed runs are notes, not problems (`hotsnap cleanup DIR` removes
// them). Nothing is changed.
#ifndef HOTSNAP_REPO_CHECK_H_
#define HOTSNAP_REPO_CHECK_H_

#include <string>
#include <vector>

#include "base/status.h"
#include "repo/repository.h"

namespace hotsnap {

struct RepoCheckOptions {
  std::string repo;
  bool read_data = false;
};

struct RepoCheckReport {
  std::vector<std::string> problems;  // one line each, naming the file
  std::vector<std::string> notes;
  size_t catalog_images = 0;
  size_t images_read = 0;  // read_data: images read in full and checked
  std::vector<RepoImage> rebuilt;  // the catalog as the images say it should be
};

// kUsage if REPO is not a repository, kBusy if its lock is held; problems are in the report
// (the CLI turns any into exit 5).
Result<RepoCheckReport> CheckRepository(const RepoCheckOptions& options);

}  // namespace hotsnap

#endif  // HOTSNAP_REPO_CHECK_H_
