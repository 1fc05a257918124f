// Prune plans: what `hotsnap prune REPO --keep-...` does to one source's chains, decided from
// the catalog alone (nothing is read or changed here; repo/prune.h carries a plan out).
//
// Retention (repo/retention.h) picks the images to keep by time. Chains make that a plan:
//   - an image not kept and needed by no kept image is deleted (a whole chain at once when
//     nothing in it is kept);
//   - an image not kept but needed by a kept delta (an ancestor of it) is not deleted and
//     not kept as it is: the chain is merged forward (agent/merge_job.h: the oldest delta is
//     folded into its full parent, the result a full image under the delta's name) until the
//     oldest kept image of the chain is a full image, so nothing a kept image needs is lost
//     and nothing unwanted stays;
//   - kept images are never deleted, merged away or changed in content.
// Steps are in the order they must run: merges of a chain oldest first, deletions of a chain
// newest first (a crash part-way leaves every remaining image restorable).
#ifndef HOTSNAP_REPO_PRUNE_PLAN_H_
#define HOTSNAP_REPO_PRUNE_PLAN_H_

#include <string>
#include <vector>

#include "base/status.h"
#include "repo/repository.h"
#include "repo/retention.h"

namespace hotsnap {

struct PruneStep {
  enum class Kind { kDelete, kMerge };
  Kind kind = Kind::kDelete;
  std::string file;    // repository-relative; kMerge: the delta folded into its parent
  std::string reason;  // why, for --dry-run and the report
};

struct PrunePlan {
  std::vector<PruneStep> steps;
  std::vector<std::string> kept;  // files kept, with reasons in kept_reasons (same order)
  std::vector<std::vector<std::string>> kept_reasons;
};

// `images`: one source's catalog entries (any order). kUsage if the policy is empty; kIntegrity
// if the catalog is inconsistent (a delta whose parent is not in it, a cycle).
Result<PrunePlan> PlanPrune(const std::vector<RepoImage>& images, const RetentionPolicy& policy);

}  // namespace hotsnap

#endif  // HOTSNAP_REPO_PRUNE_PLAN_H_
