// Prune plans (repo/prune_plan.h): which images of a source's chains a prune deletes, merges
// forward or keeps, from the catalog and the retention policy. Table cases: a chain with
// nothing kept, a kept delta on unkept ancestors, several chains, a kept full image under
// unkept deltas, an unkept image a kept one needs above a kept full image, a branching chain;
// then the refusals (an empty policy, an inconsistent catalog, images of two sources).
#include "repo/prune_plan.h"

#include <stdlib.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "tests/scoped_tz.h"
#include "tests/test_util.h"

namespace hotsnap {
namespace {

using Kind = PruneStep::Kind;

// UTC "YYYY-MM-DD HH:MM" -> seconds since the epoch.
int64_t Utc(const std::string& text) {
  struct tm t = {};
  EXPECT_EQ(sscanf(text.c_str(), "%d-%d-%d %d:%d", &t.tm_year, &t.tm_mon, &t.tm_mday, &t.tm_hour,
                   &t.tm_min),
            5)
      << text;
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&t));
}

struct Image {
  std::string file;
  std::string parent;  // "" for a full image
  std::string time;    // UTC "YYYY-MM-DD HH:MM"
};

std::vector<RepoImage> Catalog(const std::vector<Image>& images,
                               const std::string& source = "vg0-data") {
  std::vector<RepoImage> catalog;
  for (const Image& image : images) {
    RepoImage entry;
    entry.source = source;
    entry.file = source + "/" + image.file;
    entry.parent_file = image.parent.empty() ? "" : source + "/" + image.parent;
    entry.created_utc_s = Utc(image.time);
    catalog.push_back(entry);
  }
  return catalog;
}

RetentionPolicy Keep(int last, int daily = 0, int weekly = 0) {
  RetentionPolicy policy;
  policy.keep_last = last;
  policy.keep_daily = daily;
  policy.keep_weekly = weekly;
  return policy;
}

// "delete F1", "merge D1": the plan's steps in order, files without the source directory.
std::vector<std::string> Steps(const PrunePlan& plan) {
  std::vector<std::string> steps;
  for (const PruneStep& step : plan.steps) {
    EXPECT_FALSE(step.reason.empty()) << step.file;
    std::string file = step.file.substr(step.file.find('/') + 1);
    steps.push_back((step.kind == Kind::kDelete ? "delete " : "merge ") + file);
  }
  return steps;
}

std::vector<std::string> Kept(const PrunePlan& plan) {
  std::vector<std::string> kept;
  EXPECT_EQ(plan.kept.size(), plan.kept_reasons.size());
  for (size_t i = 0; i < plan.kept.size(); ++i) {
    EXPECT_FALSE(plan.kept_reasons[i].empty()) << plan.kept[i];
    kept.push_back(plan.kept[i].substr(plan.kept[i].find('/') + 1));
  }
  return kept;
}

struct Case {
  std::string name;
  std::vector<Image> images;
  RetentionPolicy policy;
  std::vector<std::string> steps;  // in order
  std::vector<std::string> kept;   // oldest first
};

std::vector<Case> Cases() {
  return {
      // Nothing of the older chain is kept: all of it goes, newest first.
      {"ChainWithNothingKeptIsDeleted",
       {{"F1", "", "2024-01-01 10:00"},
        {"D1", "F1", "2024-01-02 10:00"},
        {"D2", "D1", "2024-01-03 10:00"},
        {"F2", "", "2024-01-04 10:00"},
        {"D3", "F2", "2024-01-05 10:00"}},
       Keep(2),
       {"delete D2", "delete D1", "delete F1"},
       {"F2", "D3"}},
      // Only the newest delta is kept: the chain is merged forward until it is a full image.
      {"KeptNewestDeltaMergesForward",
       {{"F1", "", "2024-01-01 10:00"},
        {"D1", "F1", "2024-01-02 10:00"},
        {"D2", "D1", "2024-01-03 10:00"},
        {"D3", "D2", "2024-01-04 10:00"}},
       Keep(1),
       {"merge D1", "merge D2", "merge D3"},
       {"D3"}},
      // Unkept images newer than the newest kept one of a chain go
      // (a newer chain took their day); unkept ones below it merge forward.
      {"KeptMiddleDelta",
       {{"F1", "", "2024-01-01 10:00"},
        {"D1", "F1", "2024-01-02 10:00"},
        {"D2", "D1", "2024-01-03 08:00"},
        {"D3", "D2", "2024-01-03 09:00"},
        {"F2", "", "2024-01-03 10:00"}},
       // daily 2: F2 and D1.
       Keep(0, 2),
       {"delete D3", "delete D2", "merge D1"},
       {"D1", "F2"}},
      // Several chains: the oldest has nothing kept (deleted), the middle one's newest delta
      // is kept (merged forward), the newest is kept whole.
      {"SeveralChains",
       {{"F0", "", "2023-12-25 10:00"},
        {"D0", "F0", "2023-12-26 10:00"},
        {"F1", "", "2024-01-01 10:00"},
        {"D1", "F1", "2024-01-02 10:00"},
        {"D2", "D1", "2024-01-03 10:00"},
        {"F2", "", "2024-01-08 10:00"},
        {"D4", "F2", "2024-01-09 10:00"},
        {"D5", "D4", "2024-01-10 10:00"}},
       // weekly 2: D5 and D2; last 3: D5, D4, F2.
       Keep(3, 0, 2),
       {"delete D0", "delete F0", "merge D1", "merge D2"},
       {"D2", "F2", "D4", "D5"}},
      // A kept full image whose deltas are kept by nothing (a newer chain took their day):
      // the deltas go, newest first, the full image stays as it is.
      {"KeptFullUnkeptDeltasDeleted",
       {{"F1", "", "2024-01-01 10:00"},
        {"D1", "F1", "2024-01-02 08:00"},
        {"D2", "D1", "2024-01-02 09:00"},
        {"F2", "", "2024-01-02 10:00"}},
       Keep(0, 2),
       {"delete D2", "delete D1"},
       {"F1", "F2"}},
      // Above a kept full image nothing merges: an unkept delta a kept one needs stays.
      {"UnkeptDeltaBetweenKeptImagesStays",
       {{"F1", "", "2024-01-01 10:00"},
        {"D1", "F1", "2024-01-01 12:00"},
        {"D2", "D1", "2024-01-02 08:00"},
        {"D3", "D2", "2024-01-02 12:00"}},
       // daily 2: D3 and D1; D2 is needed by D3, F1 by nobody once D1 is full.
       Keep(0, 2),
       {"merge D1"},
       {"D1", "D2", "D3"}},
      // A branching chain (two deltas on one full image), both kept: each merged in turn.
      {"BranchesMergeOldestFirst",
       {{"F1", "", "2024-01-01 10:00"},
        {"B2", "F1", "2024-01-03 10:00"},
        {"B1", "F1", "2024-01-02 10:00"},
        {"B3", "F1", "2024-01-02 11:00"}},
       Keep(0, 2),
       {"delete B1", "merge B3", "merge B2"},
       {"B3", "B2"}},
  };
}

class PrunePlanTableTest : public ::testing::TestWithParam<Case> {};

TEST_P(PrunePlanTableTest, Plans) {
  testing::ScopedTz tz("UTC");  // the policy's days and weeks are of the local clock
  const Case& c = GetParam();
  std::vector<RepoImage> catalog = Catalog(c.images);
  // The catalog's order does not matter.
  for (int pass = 0; pass < 2; ++pass) {
    Result<PrunePlan> plan = PlanPrune(catalog, c.policy);
    ASSERT_TRUE(plan.ok()) << plan.status().message();
    EXPECT_EQ(Steps(plan.value()), c.steps) << "pass " << pass;
    EXPECT_EQ(Kept(plan.value()), c.kept) << "pass " << pass;
    std::reverse(catalog.begin(), catalog.end());
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, PrunePlanTableTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

TEST(PrunePlanTest, ReasonsSayWhy) {
  testing::ScopedTz tz("UTC");
  Result<PrunePlan> plan = PlanPrune(Catalog({{"F1", "", "2024-01-01 10:00"},
                                              {"D1", "F1", "2024-01-01 12:00"},
                                              {"D2", "D1", "2024-01-02 08:00"},
                                              {"D3", "D2", "2024-01-02 12:00"},
                                              {"D4", "D3", "2024-01-02 13:00"}}),
                                     Keep(1, 2));
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  // D4: last + daily; D1: daily (merged, F1 folded in); D2, D3 needed by D4.
  ASSERT_EQ(plan->kept,
            (std::vector<std::string>{"vg0-data/D1", "vg0-data/D2", "vg0-data/D3", "vg0-data/D4"}));
  EXPECT_EQ(plan->kept_reasons[0], std::vector<std::string>{"daily snapshot"});
  EXPECT_EQ(plan->kept_reasons[1], std::vector<std::string>{"needed by kept vg0-data/D4"});
  EXPECT_EQ(plan->kept_reasons[3], (std::vector<std::string>{"last snapshot", "daily snapshot"}));
  ASSERT_EQ(plan->steps.size(), 1u);
  EXPECT_NE(plan->steps[0].reason.find("vg0-data/F1"), std::string::npos) << plan->steps[0].reason;
}

TEST(PrunePlanTest, MergeReasonNamesTheKeptTarget) {
  Result<PrunePlan> plan = PlanPrune(Catalog({{"F1", "", "2024-01-01 10:00"},
                                              {"D1", "F1", "2024-01-02 10:00"},
                                              {"D2", "D1", "2024-01-03 10:00"}}),
                                     Keep(1));
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ASSERT_EQ(plan->steps.size(), 2u);
  EXPECT_NE(plan->steps[0].reason.find("vg0-data/D2"), std::string::npos) << plan->steps[0].reason;
  EXPECT_NE(plan->steps[1].reason.find("full image"), std::string::npos) << plan->steps[1].reason;
}

TEST(PrunePlanTest, EmptyPolicyIsUsage) {
  Result<PrunePlan> plan = PlanPrune(Catalog({{"F1", "", "2024-01-01 10:00"}}), RetentionPolicy{});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), Code::kUsage);
}

TEST(PrunePlanTest, NoImagesNoSteps) {
  Result<PrunePlan> plan = PlanPrune({}, Keep(1));
  ASSERT_TRUE(plan.ok());
  EXPECT_TRUE(plan->steps.empty());
  EXPECT_TRUE(plan->kept.empty());
}

void ExpectIntegrity(const std::vector<RepoImage>& catalog, const std::string& names) {
  Result<PrunePlan> plan = PlanPrune(catalog, Keep(1));
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), Code::kIntegrity) << plan.status().message();
  EXPECT_NE(plan.status().message().find(names), std::string::npos) << plan.status().message();
}

TEST(PrunePlanTest, InconsistentCatalogIsIntegrity) {
  // A delta whose parent is not in the catalog.
  ExpectIntegrity(Catalog({{"F1", "", "2024-01-01 10:00"}, {"D2", "D1", "2024-01-03 10:00"}}),
                  "vg0-data/D2: its parent vg0-data/D1 is not in the catalog");
  // Parents that loop (and never reach a full image).
  ExpectIntegrity(Catalog({{"F1", "", "2024-01-01 10:00"},
                           {"D1", "D2", "2024-01-02 10:00"},
                           {"D2", "D1", "2024-01-03 10:00"}}),
                  "vg0-data/D1");
  ExpectIntegrity(Catalog({{"D1", "D1", "2024-01-02 10:00"}}), "vg0-data/D1");
  // One file listed twice.
  ExpectIntegrity(Catalog({{"F1", "", "2024-01-01 10:00"}, {"F1", "", "2024-01-02 10:00"}}),
                  "vg0-data/F1");
}

TEST(PrunePlanTest, ImagesOfTwoSourcesAreUsage) {
  std::vector<RepoImage> catalog = Catalog({{"F1", "", "2024-01-01 10:00"}});
  std::vector<RepoImage> other = Catalog({{"F1", "", "2024-01-01 10:00"}}, "vg0-logs");
  catalog.push_back(other[0]);
  Result<PrunePlan> plan = PlanPrune(catalog, Keep(1));
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), Code::kUsage);
}

}  // namespace
}  // namespace hotsnap
