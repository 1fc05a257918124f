// Retention: which images of one source a prune keeps, by restic's `forget` rules.
//
// Contract (restic's semantics, https://restic.readthedocs.io "Removing snapshots according
// to a policy"): images are taken newest first; --keep-last N keeps the N newest; each
// --keep-hourly/daily/weekly/monthly/yearly N keeps the newest image of each of the N newest
// hours/days/ISO weeks/months/years (local time) that have one; an image kept by any rule is
// kept. A policy that keeps nothing at all (every count 0) is refused by the caller, never
// applied here as "delete everything".
//
// Chains are the caller's concern (repo/prune.h): this decides by time only.
#ifndef HOTSNAP_REPO_RETENTION_H_
#define HOTSNAP_REPO_RETENTION_H_

#include <cstdint>
#include <string>
#include <vector>

namespace hotsnap {

struct RetentionPolicy {
  int keep_last = 0;
  int keep_hourly = 0;
  int keep_daily = 0;
  int keep_weekly = 0;
  int keep_monthly = 0;
  int keep_yearly = 0;
  bool Empty() const {
    return keep_last == 0 && keep_hourly == 0 && keep_daily == 0 && keep_weekly == 0 &&
           keep_monthly == 0 && keep_yearly == 0;
  }
};

struct RetentionDecision {
  bool keep = false;
  std::vector<std::string> reasons;  // e.g. "last snapshot", "daily snapshot" (restic's words)
};

// One decision per entry of `created_utc_s` (seconds since the epoch, any order; the
// result is in the same order). Buckets use the local time zone (TZ), like restic.
std::vector<RetentionDecision> ApplyRetention(const std::vector<int64_t>& created_utc_s,
                                              const RetentionPolicy& policy);

}  // namespace hotsnap

#endif  // HOTSNAP_REPO_RETENTION_H_
