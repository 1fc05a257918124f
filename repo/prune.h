// `hotsnap prune REPO --keep-...`: carry out, source by source, the plan PlanPrune
// (repo/prune_plan.h) makes from the catalog and the retention policy (repo/retention.h).
//
// Under the repository's lock, for each source in the catalog (or the one given):
//   plan     PlanPrune on that source's catalog entries; a dry run stops here and returns
//            the plans (the very objects a run executes);
//   execute  each step in the plan's order, the catalog rewritten after each one, so that a
//            crash part-way leaves a catalog that matches the files (up to the one step that
//            was running, which `hotsnap check` names):
//              kMerge   RunMerge (agent/merge_job.h) of REPO/FILE: the delta is replaced by a
//                       full image of its content, its parent removed unless something still
//                       names it; the catalog entry is re-read from the merged image, the
//                       parent's dropped once its file is gone;
//              kDelete  the file removed (its directory fsynced) and its entry dropped —
//                       refused (kInternal, nothing removed) if an image that stays names it
//                       as its parent: a plan must never orphan a kept image.
// Stops at the first failed step and returns its error; the steps done stay done (each one
// leaves a repository that restores).
#ifndef HOTSNAP_REPO_PRUNE_H_
#define HOTSNAP_REPO_PRUNE_H_

#include <string>
#include <vector>

#include "base/status.h"
#include "repo/prune_plan.h"
#include "repo/retention.h"

namespace hotsnap {

struct PruneOptions {
  std::string repo;
  std::string source;  // "" : every source in the catalog
  RetentionPolicy policy;
  bool dry_run = false;
};

struct SourcePrune {
  std::string source;
  PrunePlan plan;
  size_t steps_done = 0;  // 0 in a dry run
  std::vector<std::string> done;  // one line per step carried out
};

struct PruneReport {
  std::vector<SourcePrune> sources;
};

// kUsage for an empty policy or a repository that is not one, kBusy if its lock is held.
Result<PruneReport> PruneRepository(const PruneOptions& options);

}  // namespace hotsnap

#endif  // HOTSNAP_REPO_PRUNE_H_
