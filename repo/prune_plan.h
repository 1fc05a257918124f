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
// Steps are in the order they must run (a crash part-way leaves every remaining image
// restorable): first every deletion, chains oldest first, each chain newest first (a child
// before its parent); then every merge, chains oldest first, each chain oldest first (a
// delta's parent is full by the time it is merged). Deleting first frees the space the merges
// need and leaves no unwanted child naming a parent a merge is to remove.
// Chains may branch (two deltas on one parent): each branch a kept image needs is merged
// forward in turn, the oldest branch first (agent/merge_job.h keeps the parent until the last
// child naming it is merged).
// An image between a kept full image and a kept delta on it is needed as it is: it stays, in
// `kept`, with the one reason "needed by kept FILE" (FILE: the oldest kept image above it).
// `kept` lists what stays, oldest first, with the policy's reasons (repo/retention.h).
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

// `images`: one source's catalog entries (any order). kUsage if the policy is empty or the
// images are of more than one source; kIntegrity, naming the file, if the catalog is
// inconsistent (a delta whose parent is not in it, a chain of parents that loops, a file
// listed twice or without a name). No images: an empty plan.
Result<PrunePlan> PlanPrune(const std::vector<RepoImage>& images, const RetentionPolicy& policy);

}  // namespace hotsnap

#endif  // HOTSNAP_REPO_PRUNE_PLAN_H_
