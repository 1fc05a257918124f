#include "snapshot/freeze_view.h"

#include "base/crash_point.h"
#include "base/log.h"

namespace hotsnap {

Result<std::unique_ptr<FreezeView>> FreezeView::Open(const FreezeViewOptions& options) {
  std::unique_ptr<FreezeView> view(new FreezeView(options));
  const HookSet& hooks = options.hooks;
  const std::string mounts = HookMountPoints(options.mount_points);
  view->pre_freeze_ran_ = !hooks.pre_freeze.empty();
  Status pre = RunHook("pre-freeze", hooks.pre_freeze, hooks, options.source, mounts);
  if (!pre.ok()) {
    if (!hooks.crash_consistent_ok) {
      // Release() runs post-thaw because pre-freeze ran; its failure is reported too.
      return pre.Wrap("aborting before the freeze (use --crash-consistent to back up anyway)")
          .WithCleanup(view->Release());
    }
    Notice(pre.message() + "; continuing with a crash-consistent backup (--crash-consistent)");
  }
  auto frozen = FrozenFilesystem::Freeze(options.mount_points, options.max_freeze, options.freezer);
  if (!frozen.ok()) return frozen.status().WithCleanup(view->Release());
  view->frozen_ = std::move(frozen.value());
  CrashPoint("after-freeze");
  SetLogBuffering(true);
  Status during = RunHook("while-frozen", hooks.while_frozen, hooks, options.source, mounts);
  if (!during.ok()) return during.WithCleanup(view->Release());
  return view;
}

// The backstop for an owner that did not call Release(): nobody is left to take the Status,
// so a failed thaw or post-thaw hook is logged.
FreezeView::~FreezeView() {
  Status released = Release();
  if (!released.ok()) Error(released.message());
}

Status FreezeView::Check() {
  if (frozen_.past_deadline()) {
    return Status(Code::kSource, "the copy did not finish within --max-freeze (" +
                                     std::to_string(options_.max_freeze.count()) +
                                     " ms); the filesystem was thawed and nothing is published. "
                                     "Use --snapshot tracked for a large volume");
  }
  return Status::Ok();
}

Status FreezeView::Release() {
  if (released_) return Status::Ok();
  released_ = true;
  Status thaw = frozen_.Thaw();
  SetLogBuffering(false);
  if (frozen_.held().count() > 0) {
    bool one = options_.mount_points.size() == 1;
    Notice((one ? "filesystem at " : "filesystems at ") + JoinMountPoints(options_.mount_points) +
           (one ? " was" : " were") + " frozen for " +
           std::to_string(frozen_.held().count()) + " ms");
  }
  Status post;
  if (pre_freeze_ran_ || !options_.hooks.post_thaw.empty()) {
    post = RunHook("post-thaw", options_.hooks.post_thaw, options_.hooks, options_.source,
                   HookMountPoints(options_.mount_points));
  }
  return thaw.ok() ? post : thaw;
}

}  // namespace hotsnap
