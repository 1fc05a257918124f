// Merging (forever-forward retention): fold the oldest delta image of a chain into its full
// parent, so that the chain F <- D1 <- D2 becomes D1' <- D2, D1' a plain image under D1's name.
//
// RunMerge(DELTA): DELTA must be a delta image file (Layout::kDelta) whose parent — found and
// checked by ImageChain (beside DELTA, or ChainOptions::dir) — is a full image (plain or
// tracked layout). A full DELTA, or a parent that is itself a delta, is kUsage and changes
// nothing. The merged image holds DELTA's content: each chunk's frame is copied verbatim from
// DELTA or the parent once its bytes hash to DELTA's trailer hash of that chunk (nothing is
// recompressed; a mismatch is kIntegrity, and nothing changes). Its metadata is DELTA's with
// layout plain, no base, and stands_for = DELTA's image hash followed by DELTA's own
// stands_for; its report is DELTA's without the change fields. Stock `zstd -dc` restores it.
//
// Publishing, in this order, so that a crash (SIGKILL, power loss) at any point leaves a
// chain that restores:
//   1. the merged image is written to a temporary file beside DELTA (io/sink.h, the file
//      sink's ".NAME.hotsnap-PID.tmp") and fsynced;
//   2. it is renamed over DELTA's name and the directory fsynced: DELTA's children, which name
//      DELTA's file and image hash, find the merged image there and accept it through
//      stands_for (io/image_chain.h);
//   3. only then is the parent's file removed (and its directory fsynced) — unless
//      keep_parent, or another image in the parent's or DELTA's directory names the parent as
//      its base: then it stays, and the plan says why.
// A crash before 2 leaves the chain as it was plus a temporary file that `hotsnap cleanup`
// removes; a crash between 2 and 3 leaves the old parent, which nothing needs any more. Once
// step 2 is done the merge has succeeded: a failure of step 3 is only a warning in the report.
// If the directory fsync of step 2 failed (the file sink only warns), the rename may not be
// durable yet, so the parent is kept, with a warning.
//
// dry_run: every check before step 1 (the chain opened and checked, the parent's other
// children looked for) and the plan returned; nothing is read past the images' indexes,
// nothing written or removed. Not thread-safe; one merge per chain at a time (not locked).
#ifndef HOTSNAP_AGENT_MERGE_JOB_H_
#define HOTSNAP_AGENT_MERGE_JOB_H_

#include <cstdint>
#include <string>

#include "base/status.h"
#include "io/image_chain.h"
#include "io/image_format.h"
#include "io/sink.h"

namespace hotsnap {

struct MergeOptions {
  std::string delta;   // the delta image file to fold into its parent, replaced in place
  ChainOptions chain;  // where its parent is (default: beside it)
  bool keep_parent = false;
  bool dry_run = false;
  // The rename, directory fsyncs and unlink; not owned, must outlive the call. nullptr: the
  // real calls (io/sink.h). Tests wrap them to fail.
  PublishOps* ops = nullptr;
};

// What a merge writes and removes, built by the same checks whether or not it runs.
struct MergePlan {
  std::string delta;           // the image replaced (path as given)
  std::string temporary;       // where the merged image is written first
  std::string parent;          // the full parent folded in (its path)
  Hash128 delta_hash;          // DELTA's image hash, which the merged image stands for
  uint64_t delta_chunks = 0;   // chunks whose frame is copied from DELTA
  uint64_t parent_chunks = 0;  // chunks whose frame is copied from the parent
  bool remove_parent = true;
  std::string keep_reason;  // !remove_parent: why ("--keep-parent", "X names it as its base")
};

struct MergeReport {
  MergePlan plan;
  uint64_t image_bytes = 0;  // of the merged image (0 in a dry run)
  Hash128 image_hash;        // of the merged image
  bool parent_removed = false;
  std::string warning;  // after publishing: what failed in removing the parent
};

Result<MergeReport> RunMerge(const MergeOptions& options);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_MERGE_JOB_H_
