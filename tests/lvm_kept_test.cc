// Names and marks of kept thin snapshots (snapshot/lvm_kept.h) and how the dead-run cleanup
// (snapshot/lvm_lease.h) tells them from leftovers. No root needed; what LVM does with them is
// tested in the VM (tests/vm/scenarios/thin_delta_changes.sh).
#include "snapshot/lvm_kept.h"

#include <gtest/gtest.h>

#include "snapshot/lvm_lease.h"

namespace hotsnap {
namespace {

LvRecord Lv(const std::string& name, std::vector<std::string> tags) {
  LvRecord lv;
  lv.vg_name = "vg";
  lv.lv_name = name;
  lv.tags = std::move(tags);
  return lv;
}

TEST(KeptSnapshot, Names) {
  EXPECT_EQ(KeptSnapshotName("data"), "hotsnap-keep-data");
  EXPECT_EQ(RetiredSnapshotName("data"), "hotsnap-prev-data");
  EXPECT_EQ(KeptSnapshotOrigin("hotsnap-keep-data"), "data");
  EXPECT_EQ(KeptSnapshotOrigin("hotsnap-prev-my-lv"), "my-lv");
  EXPECT_EQ(KeptSnapshotOrigin("hotsnap-keep-"), "");
  EXPECT_EQ(KeptSnapshotOrigin("hotsnap-data-0123456789ab"), "");
}

TEST(KeptSnapshot, DeadRunCleanupNeverTakesOneForALeftover) {
  // A run's snapshot is a leftover candidate...
  EXPECT_EQ(OwnedRunId(Lv("hotsnap-data-0123456789ab", {"hotsnap", "hotsnap_run_0123456789ab"})),
            "0123456789ab");
  // ...a kept one is not, whatever else it carries,
  EXPECT_EQ(OwnedRunId(Lv("hotsnap-keep-data",
                          {"hotsnap", "hotsnap_keep", "hotsnap_keep_run_0123456789ab"})),
            "");
  // nor a run's snapshot already tagged kept (the commit) or renamed (before it: repaired,
  // not cleaned up), nor a replaced one,
  EXPECT_EQ(OwnedRunId(Lv("hotsnap-data-0123456789ab",
                          {"hotsnap", "hotsnap_run_0123456789ab", "hotsnap_keep"})),
            "");
  EXPECT_EQ(OwnedRunId(Lv("hotsnap-keep-data", {"hotsnap", "hotsnap_run_0123456789ab"})), "");
  EXPECT_EQ(OwnedRunId(Lv("hotsnap-prev-data", {"hotsnap", "hotsnap_keep"})), "");
  EXPECT_TRUE(IsKeptSnapshotLv("hotsnap-keep-data", {}));
  EXPECT_TRUE(IsKeptSnapshotLv("whatever", {"hotsnap_keep"}));
  EXPECT_TRUE(IsKeptSnapshotLv("hotsnap-keep-data", {"hotsnap", "hotsnap_run_0123456789ab"}));
  EXPECT_FALSE(
      IsKeptSnapshotLv("hotsnap-data-0123456789ab", {"hotsnap", "hotsnap_run_0123456789ab"}));
}

// The origin may itself be named keep-* or prev-*: its runs' snapshots are still leftovers of
// dead runs, not kept ones.
TEST(KeptSnapshot, OriginsNamedLikeTheMarks) {
  EXPECT_EQ(OwnedRunId(Lv("hotsnap-keep-db-0123456789ab", {"hotsnap", "hotsnap_run_0123456789ab"})),
            "0123456789ab");
  EXPECT_EQ(OwnedRunId(Lv("hotsnap-prev-db-0123456789ab", {"hotsnap", "hotsnap_run_0123456789ab"})),
            "0123456789ab");
  EXPECT_EQ(KeptSnapshotName("keep-db"), "hotsnap-keep-keep-db");
  EXPECT_TRUE(IsKeptSnapshotLv("hotsnap-keep-keep-db", {"hotsnap", "hotsnap_keep"}));
}

}  // namespace
}  // namespace hotsnap
