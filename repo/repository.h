// Repositories: a directory (local, later ssh:// and s3://) holding, per source, chains of
// images (a full image and the deltas on it) and a catalog of them.
//
// The agent (daemon/) writes into a repository only through BackupIntoRepository, under the
// repository's lock (repo/lock.h): it picks the source's newest chain, writes a delta on its
// newest image, or a full image once the chain holds `full_every` deltas (or there is no
// chain, or its newest image is unusable), publishes the image and records it in the catalog.
// Nothing under a final name is ever partial: the image is published by the backup itself,
// the catalog is rewritten atomically after it.
#ifndef HOTSNAP_REPO_REPOSITORY_H_
#define HOTSNAP_REPO_REPOSITORY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "agent/backup_job.h"
#include "base/status.h"
#include "io/image_format.h"

namespace hotsnap {

// One image in a repository's catalog.
struct RepoImage {
  std::string source;       // the source's name in the repository (RepoSourceName)
  std::string file;         // path relative to the repository root
  std::string parent_file;  // a delta's parent, relative to the root; "" for a full image
  Hash128 image_hash;
  int64_t created_utc_s = 0;  // the backup's consistency point, seconds since the epoch
  uint64_t image_bytes = 0;
  std::string run_id;
};

// The directory name a source device's images live under, e.g. /dev/vg0/data -> "vg0-data".
std::string RepoSourceName(const std::string& device);

struct RepoBackupRequest {
  std::string repo;         // the repository's root
  std::string source_name;  // "" : RepoSourceName(options.source)
  BackupOptions options;    // as for `backup`, with dest and base left empty (set here)
  unsigned full_every = 7;  // a full image after this many deltas in a chain; 0: always full
};

struct RepoBackupResult {
  RepoImage image;
  BackupReport report;
  std::string why;  // why a full image or a delta on which parent ("first backup of vg0-data")
};

Result<RepoBackupResult> BackupIntoRepository(const RepoBackupRequest& request);

// What BackupIntoRepository would do, built by the same passes (the choice of full or delta,
// then PlanBackup on the options it sets), for `backup --repo --dry-run`. Reads the catalog
// (a missing or empty directory: a repository still to be made) and the source; takes no
// lock and writes nothing. A run decides again under the lock.
struct RepoBackupPlan {
  std::string source;       // the source's name in the repository
  std::string file;         // the image it would write, relative to the root
  std::string parent_file;  // "" : a full image
  std::string why;
  BackupPlan backup;
};
Result<RepoBackupPlan> PlanIntoRepository(const RepoBackupRequest& request);

// Every image in the catalog, oldest first.
Result<std::vector<RepoImage>> ListRepository(const std::string& repo);

}  // namespace hotsnap

#endif  // HOTSNAP_REPO_REPOSITORY_H_
