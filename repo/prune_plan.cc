#include "repo/prune_plan.h"

#include <algorithm>
#include <cstddef>
#include <map>
#include <numeric>

namespace hotsnap {
namespace {

constexpr size_t kNone = static_cast<size_t>(-1);

// What becomes of one image.
enum class Fate {
  kDelete,      // not kept, needed by no kept image
  kKeep,        // kept by the policy (merged into a full image if its parent goes)
  kRetain,      // not kept, but a kept delta above a kept ancestor needs it as it is
  kMergedAway,  // not kept, needed: folded into its child by that child's merge
};

// The catalog of one source as a forest: every full image a root, every delta a child of its
// parent. Built only from a consistent catalog.
struct Forest {
  const std::vector<RepoImage>* images = nullptr;
  std::vector<size_t> parent;                 // kNone for a full image
  std::vector<std::vector<size_t>> children;  // oldest first
  std::vector<size_t> roots;                  // oldest first

  const RepoImage& at(size_t i) const { return (*images)[i]; }
  // Catalog order of age: creation time, then position (the later entry is the newer).
  bool Older(size_t a, size_t b) const {
    if (at(a).created_utc_s != at(b).created_utc_s)
      return at(a).created_utc_s < at(b).created_utc_s;
    return a < b;
  }
};

Status CheckSources(const std::vector<RepoImage>& images) {
  for (const RepoImage& image : images) {
    if (image.source != images.front().source) {
      return Status(Code::kUsage, "a prune plan is for one source; the images given belong to '" +
                                      images.front().source + "' and '" + image.source + "'");
    }
  }
  return Status::Ok();
}

Result<Forest> BuildForest(const std::vector<RepoImage>& images) {
  Forest forest;
  forest.images = &images;
  std::map<std::string, size_t> by_file;
  for (size_t i = 0; i < images.size(); ++i) {
    if (images[i].file.empty()) {
      return Status(Code::kIntegrity, "the catalog has an image without a file name");
    }
    if (!by_file.emplace(images[i].file, i).second) {
      return Status(Code::kIntegrity, "the catalog lists " + images[i].file + " twice");
    }
  }
  forest.parent.assign(images.size(), kNone);
  for (size_t i = 0; i < images.size(); ++i) {
    if (images[i].parent_file.empty()) continue;
    auto found = by_file.find(images[i].parent_file);
    if (found == by_file.end()) {
      return Status(Code::kIntegrity, images[i].file + ": its parent " + images[i].parent_file +
                                          " is not in the catalog");
    }
    forest.parent[i] = found->second;
  }
  // Every chain of parents must end at a full image: a walk longer than the catalog loops.
  for (size_t i = 0; i < images.size(); ++i) {
    size_t steps = 0;
    for (size_t at = i; forest.parent[at] != kNone; at = forest.parent[at]) {
      if (++steps > images.size()) {
        return Status(Code::kIntegrity, images[i].file +
                                            ": its chain of parents loops and never reaches a "
                                            "full image");
      }
    }
  }
  forest.children.resize(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    if (forest.parent[i] == kNone) {
      forest.roots.push_back(i);
    } else {
      forest.children[forest.parent[i]].push_back(i);
    }
  }
  auto older = [&forest](size_t a, size_t b) { return forest.Older(a, b); };
  std::sort(forest.roots.begin(), forest.roots.end(), older);
  for (std::vector<size_t>& kids : forest.children) std::sort(kids.begin(), kids.end(), older);
  return forest;
}

// The planner: fates and steps for a forest and the policy's decisions.
class Planner {
 public:
  Planner(const Forest& forest, const std::vector<RetentionDecision>& decisions)
      : forest_(forest),
        decisions_(decisions),
        oldest_kept_(decisions.size(), kNone),
        fate_(decisions.size(), Fate::kDelete) {}

  PrunePlan Plan() {
    for (size_t root : forest_.roots) FindOldestKept(root);
    // Deletions first: they touch nothing a kept image needs, and the space they free is
    // there for the merges; then a merge finds no unwanted child still naming its parent.
    for (size_t root : forest_.roots) PlanDeletions(root);
    for (size_t root : forest_.roots) {
      if (oldest_kept_[root] != kNone) PlanFromFull(root);
    }
    return Finish();
  }

 private:
  bool Kept(size_t i) const { return decisions_[i].keep; }
  bool Needed(size_t i) const { return oldest_kept_[i] != kNone; }
  const std::string& File(size_t i) const { return forest_.at(i).file; }

  // oldest_kept_[i]: the oldest kept image among i and its descendants; kNone if none is
  // kept, i.e. no kept image needs i.
  size_t FindOldestKept(size_t i) {
    size_t oldest = Kept(i) ? i : kNone;
    for (size_t child : forest_.children[i]) {
      size_t below = FindOldestKept(child);
      if (below != kNone && (oldest == kNone || forest_.Older(below, oldest))) oldest = below;
    }
    oldest_kept_[i] = oldest;
    return oldest;
  }

  // Children before their parent, the newest child first: newest first along a chain.
  void PlanDeletions(size_t i) {
    const std::vector<size_t>& kids = forest_.children[i];
    for (auto child = kids.rbegin(); child != kids.rend(); ++child) PlanDeletions(*child);
    if (!Needed(i)) {
      steps_.push_back({PruneStep::Kind::kDelete, File(i),
                        "not kept by the policy and needed by no kept image"});
    }
  }

  // `i` is a full image (from the start, or once its merge has run) that a kept image needs.
  // Not kept itself, it is folded into each needed child in turn (the oldest first), each
  // becoming a full image, and so on up each chain until a kept image is full.
  void PlanFromFull(size_t i) {
    if (Kept(i)) {
      fate_[i] = Fate::kKeep;
      for (size_t child : forest_.children[i]) RetainAbove(child);
      return;
    }
    fate_[i] = Fate::kMergedAway;
    for (size_t child : forest_.children[i]) {
      if (!Needed(child)) continue;
      steps_.push_back({PruneStep::Kind::kMerge, File(child), MergeReason(child, i)});
      PlanFromFull(child);
    }
  }

  // Above a full kept image nothing is merged: kept deltas stay as they are, and so do the
  // images between them that they need.
  void RetainAbove(size_t i) {
    if (!Needed(i)) return;  // deleted
    fate_[i] = Kept(i) ? Fate::kKeep : Fate::kRetain;
    for (size_t child : forest_.children[i]) RetainAbove(child);
  }

  std::string MergeReason(size_t child, size_t parent) const {
    if (Kept(child)) {
      return "kept, its parent " + File(parent) +
             " is not: the parent is folded into it and it becomes a full image";
    }
    return "not kept, but kept " + File(oldest_kept_[child]) + " needs it: its parent " +
           File(parent) + " is folded into it on the way there";
  }

  PrunePlan Finish() {
    PrunePlan plan;
    plan.steps = std::move(steps_);
    std::vector<size_t> order(fate_.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(),
              [this](size_t a, size_t b) { return forest_.Older(a, b); });
    for (size_t i : order) {
      if (fate_[i] == Fate::kKeep) {
        plan.kept.push_back(File(i));
        plan.kept_reasons.push_back(decisions_[i].reasons);
      } else if (fate_[i] == Fate::kRetain) {
        plan.kept.push_back(File(i));
        plan.kept_reasons.push_back({"needed by kept " + File(oldest_kept_[i])});
      }
    }
    return plan;
  }

  const Forest& forest_;
  const std::vector<RetentionDecision>& decisions_;
  std::vector<size_t> oldest_kept_;
  std::vector<Fate> fate_;
  std::vector<PruneStep> steps_;
};

}  // namespace

Result<PrunePlan> PlanPrune(const std::vector<RepoImage>& images, const RetentionPolicy& policy) {
  if (policy.Empty()) {
    return Status(Code::kUsage,
                  "the retention policy keeps nothing: give at least one --keep-* option "
                  "greater than 0 (to delete every image, delete them by hand)");
  }
  if (images.empty()) return PrunePlan{};
  HOTSNAP_RETURN_IF_ERROR(CheckSources(images));
  Result<Forest> forest = BuildForest(images);
  if (!forest.ok()) return forest.status();

  std::vector<int64_t> created(images.size());
  for (size_t i = 0; i < images.size(); ++i) created[i] = images[i].created_utc_s;
  std::vector<RetentionDecision> decisions = ApplyRetention(created, policy);
  return Planner(forest.value(), decisions).Plan();
}

}  // namespace hotsnap
