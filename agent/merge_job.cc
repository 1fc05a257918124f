#include "agent/merge_job.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <set>
#include <vector>

#include "agent/chain_copy.h"
#include "base/crash_point.h"
#include "io/image_writer.h"
#include "io/sink.h"
#include "io/ssh_remote.h"

namespace hotsnap {
namespace {

// The plan and what it was built from: the chain DELTA <- parent, opened and checked.
struct PlannedMerge {
  MergePlan plan;
  ImageChain chain;
};

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// The first image in `dirs` (other than the files `skip`) whose recorded base `parent` can
// stand for, as "PATH"; "" if none. Files whose index does not load are not images.
Result<std::string> OtherChildOf(const ImageIndex& parent, const std::vector<std::string>& dirs,
                                 const std::vector<struct stat>& skip) {
  for (const std::string& dir : dirs) {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return Status::FromErrno(Code::kSource, errno, "listing " + dir);
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      // Dot files are skipped as ImageChain skips them: hotsnap's temporary files among them.
      if (e->d_name[0] != '.') names.push_back(e->d_name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const std::string& name : names) {
      const std::string path = dir + "/" + name;
      struct stat st;
      if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      if (std::any_of(skip.begin(), skip.end(),
                      [&](const struct stat& s) { return SameFile(s, st); }))
        continue;
      auto link = OpenChainLink(path);
      if (!link.ok() || !link->index.meta.base) continue;
      if (CanStandFor(parent, link->index.meta.base->image_hash)) return path;
    }
  }
  return std::string();
}

// Every check, no side effect: DELTA is a delta file, its parent a full image that checks out,
// and whether the parent may go.
Result<PlannedMerge> PlanMerge(const MergeOptions& options) {
  const std::string& path = options.delta;
  if (path == "-" || IsSshUrl(path)) {
    return Status(Code::kUsage,
                  "merge replaces DELTA in place: it must be an image file here, not " + path);
  }
  auto newest = OpenChainLink(path);
  if (!newest.ok()) return newest.status();
  const Layout layout = newest->index.meta.layout;
  if (layout != Layout::kDelta) {
    return Status(Code::kUsage, "merge folds a delta image into its full parent; " + path +
                                    " is a " + LayoutName(layout) +
                                    " image, not a delta: nothing to merge");
  }
  auto chain = ImageChain::FromLink(std::move(newest.value()), options.chain);
  if (!chain.ok()) return chain.status();
  PlannedMerge planned{MergePlan{}, std::move(chain.value())};
  const ChainLink& delta = planned.chain.links()[0];
  const ChainLink& parent = planned.chain.links()[1];
  if (planned.chain.links().size() > 2) {
    return Status(Code::kUsage, "merge folds the oldest delta into its full parent; the parent " +
                                    parent.path + " of " + path + " is itself a delta: merge " +
                                    parent.path + " first");
  }
  MergePlan& plan = planned.plan;
  plan.delta = path;
  plan.temporary = TemporaryNameFor(path, static_cast<int>(::getpid()));
  plan.parent = parent.path;
  plan.delta_hash = delta.index.trailer.image_hash;
  for (uint64_t i = 0; i < delta.index.meta.chunk_count(); ++i) {
    ++(planned.chain.LinkOf(i) == 0 ? plan.delta_chunks : plan.parent_chunks);
  }
  if (options.keep_parent) {
    plan.remove_parent = false;
    plan.keep_reason = "--keep-parent";
    return planned;
  }
  // Another delta of the same parent (a second branch) still needs it.
  std::vector<struct stat> skip(2);
  if (::fstat(delta.fd.get(), &skip[0]) != 0 || ::fstat(parent.fd.get(), &skip[1]) != 0) {
    return Status::FromErrno(Code::kSource, errno, "stat " + path);
  }
  std::vector<std::string> dirs = {DirectoryOf(parent.path)};
  if (DirectoryOf(path) != dirs[0]) dirs.push_back(DirectoryOf(path));
  auto other = OtherChildOf(parent.index, dirs, skip);
  if (!other.ok()) return other.status();
  if (!other->empty()) {
    plan.remove_parent = false;
    plan.keep_reason = *other + " names it as its base";
  }
  return planned;
}

// The merged image, under the temporary name, then renamed over DELTA (steps 1 and 2).
Status WriteMergedImage(const PlannedMerge& planned, PublishOps* ops, MergeReport* report) {
  const ImageIndex& index = planned.chain.newest();
  auto sink = MakeFileSink(planned.plan.delta, FileSinkOptions{.overwrite = true, .ops = ops});
  if (!sink.ok()) return sink.status();
  ImageMetadata meta = index.meta;
  meta.layout = Layout::kPlain;
  meta.base.reset();
  meta.stands_for.insert(meta.stands_for.begin(), index.trailer.image_hash);
  ImageWriter writer(sink->get());
  HOTSNAP_RETURN_IF_ERROR(writer.Begin(meta));
  auto copied = AppendChainChunks(planned.chain, &writer, "merge");
  if (!copied.ok()) return copied.status();
  HOTSNAP_RETURN_IF_ERROR(writer.Finish(PlainImageReport(index.report)));
  // fsync, rename over DELTA, fsync of the directory (io/sink.h).
  HOTSNAP_RETURN_IF_ERROR((*sink)->Commit());
  report->image_bytes = writer.bytes_written();
  report->image_hash = writer.image_hash();
  return Status::Ok();
}

// Step 3: DELTA's name holds the merged image; the parent goes. Failures are warnings.
void RemoveParent(PublishOps* ops, MergeReport* report) {
  const std::string& parent = report->plan.parent;
  // The file sink only warns when the directory fsync after its rename fails; the rename must
  // be durable before the unlink is, or a power loss could leave DELTA without its parent.
  const std::string dir = DirectoryOf(report->plan.delta);
  if (int err = ops->SyncDirectory(dir); err != 0) {
    report->warning = "the merge is published, but fsync of " + dir + " failed (" +
                      std::strerror(err) + "), so the old parent " + parent +
                      " is kept: remove it once the directory is synced";
    return;
  }
  if (int err = ops->Unlink(parent); err != 0) {
    report->warning = "the merge is published, but removing the old parent " + parent +
                      " failed (" + std::strerror(err) +
                      "); nothing needs it any more: remove it by hand";
    return;
  }
  report->parent_removed = true;
  if (int err = ops->SyncDirectory(DirectoryOf(parent)); err != 0) {
    report->warning = "removed " + parent + ", but fsync of its directory failed (" +
                      std::strerror(err) +
                      "): after a power loss it may reappear (harmless; nothing needs it)";
  }
}

}  // namespace

Result<MergeReport> RunMerge(const MergeOptions& options) {
  // Every check first: the chain DELTA <- full parent, and whether the parent may go.
  auto planned = PlanMerge(options);
  if (!planned.ok()) return planned.status();
  MergeReport report;
  report.plan = planned->plan;
  if (options.dry_run) return report;
  // Steps 1 and 2: the merged image replaces DELTA atomically.
  PublishOps* ops = options.ops != nullptr ? options.ops : RealPublishOps();
  HOTSNAP_RETURN_IF_ERROR(WriteMergedImage(*planned, ops, &report));
  CrashPoint("merge-before-unlink");
  // Step 3: only now may the parent go.
  if (report.plan.remove_parent) RemoveParent(ops, &report);
  return report;
}

}  // namespace hotsnap
