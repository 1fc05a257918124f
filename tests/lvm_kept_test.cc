// Names and marks of kept thin snapshots (snapshot/lvm_kept.h) and how the dead-run cleanup
// (snapshot/lvm_lease.h) tells them from leftovers. No root needed; what LVM does with them is
// tested in the VM (tests/vm/scenarios/thin_delta_changes.sh).
#include "snapshot/lvm_kept.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "snapshot/lvm_lease.h"
#include "tests/test_util.h"

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

// ---- The replacement sequence against a small in-memory LVM ---------------------------------
// LvmControl is the door tests replace (snapshot/lvm_control.h). This one keeps a table of
// thin LVs, answers lvs in LVM's JSON form and applies lvchange/lvrename/lvremove, and fails
// the N-th changing command: where the VM cannot make LVM fail, this proves that a failure at
// every step of KeepThinSnapshot leaves the old kept snapshot in place and no new one.
namespace {

struct FakeLv {
  std::set<std::string> tags;
  bool active = false;
  bool skip = false;
  int thin_id = 0;
};

class TableLvm : public LvmControl {
 public:
  std::map<std::string, FakeLv> lvs;  // by name, all in VG "vg"
  int fail_change = -1;               // index of the changing command to fail; -1: none
  int changes = 0;
  std::vector<std::string> log;

  Result<SubprocessResult> Run(const std::vector<std::string>& args,
                               std::chrono::milliseconds) override {
    SubprocessResult r;
    r.exit_code = 0;
    std::string line;
    for (const std::string& a : args) line += (line.empty() ? "" : " ") + a;
    log.push_back(line);
    if (args[0] == "lvs") {
      r.out = Report();
      return r;
    }
    if (changes++ == fail_change) {
      r.exit_code = 5;
      r.err = "injected failure";
      return r;
    }
    if (args[0] == "lvrename") {
      auto from = lvs.find(args[2]);
      if (from == lvs.end() || lvs.count(args[3])) {
        r.exit_code = 5;
        r.err = "cannot rename";
        return r;
      }
      lvs[args[3]] = from->second;
      lvs.erase(args[2]);
      return r;
    }
    const std::string target = args.back().substr(args.back().find('/') + 1);
    auto lv = lvs.find(target);
    if (lv == lvs.end()) {
      r.exit_code = 5;
      r.err = "Failed to find logical volume \"vg/" + target + "\"";
      return r;
    }
    if (args[0] == "lvremove") {
      lvs.erase(lv);
      return r;
    }
    for (size_t i = 1; i + 1 < args.size(); ++i) {  // lvchange
      if (args[i] == "-an") lv->second.active = false;
      if (args[i] == "-ky") lv->second.skip = true;
      if (args[i] == "--addtag") lv->second.tags.insert(args[++i]);
      if (args[i] == "--deltag") lv->second.tags.erase(args[++i]);
    }
    return r;
  }

 private:
  std::string Report() const {
    std::string rows;
    for (const auto& [name, lv] : lvs) {
      std::string tags;
      for (const std::string& t : lv.tags) tags += (tags.empty() ? "" : ",") + t;
      std::string attr =
          std::string("Vri-") + (lv.active ? "a" : "-") + "-tz-" + (lv.skip ? "k" : "-");
      rows +=
          std::string(rows.empty() ? "" : ",") + "{\"vg_name\":\"vg\", \"lv_name\":\"" + name +
          "\", \"segtype\":\"thin\", \"pool_lv\":\"pool\", \"origin\":\"data\", \"thin_id\":\"" +
          std::to_string(lv.thin_id) + "\", \"lv_attr\":\"" + attr + "\", \"lv_tags\":\"" + tags +
          "\", \"chunk_size\":\"0\", \"lv_size\":\"33554432\"}";
    }
    return "{\"report\": [{\"lv\": [" + rows + "]}]}";
  }
};

const char kRun[] = "0123456789ab";

// The old kept snapshot (thin id 3) and run kRun's fresh, active snapshot (thin id 7).
TableLvm WithOldAndNew() {
  TableLvm lvm;
  lvm.lvs["hotsnap-keep-data"] = {
      {"hotsnap", "hotsnap_keep", "hotsnap_keep_run_aaaaaaaaaaaa", "hotsnap_keep_time_100"},
      false,
      true,
      3};
  lvm.lvs[std::string("hotsnap-data-") + kRun] = {
      {"hotsnap", std::string("hotsnap_run_") + kRun}, true, true, 7};
  return lvm;
}

}  // namespace

TEST(KeptSnapshotSequence, ReplacesTheOldOneOnlyOnceTheNewOneIsCommitted) {
  hotsnap::testing::TempDir leases;
  TableLvm lvm = WithOldAndNew();
  auto kept = KeepThinSnapshot(&lvm, leases.path(), "vg", std::string("hotsnap-data-") + kRun,
                               "data", kRun, 200);
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  EXPECT_EQ(kept->thin_id, 7u);
  EXPECT_EQ(kept->run_id, kRun);
  EXPECT_EQ(kept->created_unix, 200);
  EXPECT_EQ(kept->full_name(), "vg/hotsnap-keep-data");
  ASSERT_EQ(lvm.lvs.size(), 1u);
  const FakeLv& lv = lvm.lvs.at("hotsnap-keep-data");
  EXPECT_FALSE(lv.active);
  EXPECT_TRUE(lv.skip);
  EXPECT_TRUE(lv.tags.count("hotsnap_keep"));
  EXPECT_FALSE(lv.tags.count(std::string("hotsnap_run_") + kRun));
  // The old one was removed after the commit, not before.
  size_t commit = 0, removal = 0;
  for (size_t i = 0; i < lvm.log.size(); ++i) {
    if (lvm.log[i].find("--addtag hotsnap_keep --deltag") != std::string::npos) commit = i;
    if (lvm.log[i].find("lvremove") != std::string::npos) removal = i;
  }
  EXPECT_GT(commit, 0u);
  EXPECT_GT(removal, commit);
}

// LvmSnapshotView creates the snapshot flagged and recorded (lvcreate -ky --addtag ...): the
// sequence is then one lvs and four changes, the deactivation part of the commit.
TEST(KeptSnapshotSequence, ASnapshotRecordedAtCreationNeedsOneLvsAndFourChanges) {
  hotsnap::testing::TempDir leases;
  TableLvm lvm = WithOldAndNew();
  FakeLv& fresh = lvm.lvs.at(std::string("hotsnap-data-") + kRun);
  fresh.tags.insert(std::string("hotsnap_keep_run_") + kRun);
  fresh.tags.insert("hotsnap_keep_time_200");
  auto kept = KeepThinSnapshot(&lvm, leases.path(), "vg", std::string("hotsnap-data-") + kRun,
                               "data", kRun, 200);
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  EXPECT_EQ(kept->thin_id, 7u);
  EXPECT_EQ(kept->run_id, kRun);
  std::string log;
  for (const std::string& line : lvm.log) log += line + "\n";
  EXPECT_EQ(lvm.log.size(), 5u) << log;
  EXPECT_EQ(log.find("-ky"), std::string::npos) << log;
  const FakeLv& lv = lvm.lvs.at("hotsnap-keep-data");
  EXPECT_FALSE(lv.active);
  EXPECT_TRUE(lv.tags.count("hotsnap_keep"));
  EXPECT_FALSE(lv.tags.count(std::string("hotsnap_run_") + kRun));
  // And finding it again is one lvs.
  lvm.log.clear();
  auto found = FindKeptSnapshot("vg", "data", &lvm, leases.path());
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->thin_id, 7u);
  EXPECT_EQ(lvm.log.size(), 1u);
}

// A delta hands over the report it read for thin_delta: no lvs at all.
TEST(KeptSnapshotSequence, AReportGivenStandsInForTheLvs) {
  hotsnap::testing::TempDir leases;
  TableLvm lvm = WithOldAndNew();
  FakeLv& fresh = lvm.lvs.at(std::string("hotsnap-data-") + kRun);
  fresh.tags.insert(std::string("hotsnap_keep_run_") + kRun);
  fresh.tags.insert("hotsnap_keep_time_200");
  auto report = ListThinLvs(&lvm, "vg");
  ASSERT_TRUE(report.ok()) << report.status().message();
  lvm.log.clear();
  auto kept = KeepThinSnapshot(&lvm, leases.path(), "vg", std::string("hotsnap-data-") + kRun,
                               "data", kRun, 200, &report.value());
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  EXPECT_EQ(kept->thin_id, 7u);
  for (const std::string& line : lvm.log) EXPECT_NE(line.rfind("lvs", 0), 0u) << line;
  EXPECT_EQ(lvm.log.size(), 4u);
  ASSERT_EQ(lvm.lvs.size(), 1u);
  EXPECT_TRUE(lvm.lvs.at("hotsnap-keep-data").tags.count("hotsnap_keep"));
}

TEST(KeptSnapshot, NeedsRepairOnlyAfterACrash) {
  const std::vector<std::string> committed = {"hotsnap", "hotsnap_keep"};
  const std::vector<std::string> uncommitted = {"hotsnap", "hotsnap_run_0123456789ab"};
  EXPECT_FALSE(KeptSnapshotsNeedRepair(nullptr, nullptr));
  EXPECT_FALSE(KeptSnapshotsNeedRepair(&committed, nullptr));
  EXPECT_TRUE(KeptSnapshotsNeedRepair(&uncommitted, nullptr));   // renamed, not committed
  EXPECT_TRUE(KeptSnapshotsNeedRepair(nullptr, &committed));     // retired, none in place
  EXPECT_TRUE(KeptSnapshotsNeedRepair(&committed, &committed));   // replaced, not removed
  EXPECT_FALSE(KeptSnapshotsNeedRepair(&committed, &uncommitted));
}

TEST(KeptSnapshotSequence, AFailureAtAnyStepBeforeTheCommitBringsTheOldOneBack) {
  hotsnap::testing::TempDir leases;
  // Changing commands: -ky/tags, rename old aside, rename new, commit with -an (0-3).
  for (int step = 0; step <= 3; ++step) {
    SCOPED_TRACE("failing change " + std::to_string(step));
    TableLvm lvm = WithOldAndNew();
    lvm.fail_change = step;
    auto kept = KeepThinSnapshot(&lvm, leases.path(), "vg", std::string("hotsnap-data-") + kRun,
                                 "data", kRun, 200);
    ASSERT_FALSE(kept.ok());
    EXPECT_NE(kept.status().message().find("injected failure"), std::string::npos)
        << kept.status().message();
    ASSERT_EQ(lvm.lvs.size(), 1u) << "left: " << lvm.lvs.begin()->first;
    ASSERT_TRUE(lvm.lvs.count("hotsnap-keep-data"));
    EXPECT_EQ(lvm.lvs.at("hotsnap-keep-data").thin_id, 3);
    EXPECT_TRUE(lvm.lvs.at("hotsnap-keep-data").tags.count("hotsnap_keep"));
  }
}

TEST(KeptSnapshotSequence, AFailureToRemoveTheReplacedOneKeepsTheNewOne) {
  hotsnap::testing::TempDir leases;
  TableLvm lvm = WithOldAndNew();
  lvm.fail_change = 4;  // the lvremove of hotsnap-prev-data
  auto kept = KeepThinSnapshot(&lvm, leases.path(), "vg", std::string("hotsnap-data-") + kRun,
                               "data", kRun, 200);
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  EXPECT_EQ(kept->thin_id, 7u);
  ASSERT_TRUE(lvm.lvs.count("hotsnap-prev-data"));
  // The next look-up finishes the job.
  auto found = FindKeptSnapshot("vg", "data", &lvm, leases.path());
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->thin_id, 7u);
  EXPECT_FALSE(lvm.lvs.count("hotsnap-prev-data"));
}

TEST(KeptSnapshotSequence, RepairLeavesALiveRunAlone) {
  hotsnap::testing::TempDir leases;
  // A crash-like state (old one renamed aside, no hotsnap-keep-data) while run kRun is alive.
  TableLvm lvm = WithOldAndNew();
  lvm.lvs["hotsnap-prev-data"] = lvm.lvs.at("hotsnap-keep-data");
  lvm.lvs.erase("hotsnap-keep-data");
  Lease lease = LeaseForThisProcess(kRun);
  ASSERT_TRUE(WriteLease(leases.path(), lease).ok());
  ASSERT_TRUE(RepairKeptSnapshots(&lvm, leases.path(), "vg", "data").ok());
  EXPECT_TRUE(lvm.lvs.count("hotsnap-prev-data")) << "repaired under a live run's feet";
  // Once the run is dead (no lease), the old one comes back.
  ASSERT_TRUE(RemoveLease(leases.path(), kRun).ok());
  ASSERT_TRUE(RepairKeptSnapshots(&lvm, leases.path(), "vg", "data").ok());
  EXPECT_TRUE(lvm.lvs.count("hotsnap-keep-data"));
  EXPECT_FALSE(lvm.lvs.count("hotsnap-prev-data"));
}

TEST(KeptSnapshotSequence, DropRemovesOnlyWhatHotsnapTagged) {
  TableLvm lvm;
  lvm.lvs["hotsnap-keep-data"] = {{"hotsnap", "hotsnap_keep"}, false, true, 3};
  lvm.lvs["hotsnap-prev-data"] = {{"hotsnap", "hotsnap_keep"}, false, true, 2};
  ASSERT_TRUE(DropKeptSnapshot("vg", "data", &lvm).ok());
  EXPECT_TRUE(lvm.lvs.empty());
  lvm.lvs["hotsnap-keep-data"] = {{}, false, false, 3};  // someone else's
  EXPECT_FALSE(DropKeptSnapshot("vg", "data", &lvm).ok());
  EXPECT_TRUE(lvm.lvs.count("hotsnap-keep-data"));
}

}  // namespace
}  // namespace hotsnap
