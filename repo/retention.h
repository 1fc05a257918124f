// Retention: which images of one source a prune keeps, by restic's `forget` rules.
//
// Contract (restic's semantics, https://restic.readthedocs.io "Removing snapshots according
// to a policy"): images are taken newest first; --keep-last N keeps the N newest; each
// --keep-hourly/daily/weekly/monthly/yearly N keeps the newest image of each of the N newest
// hours/days/ISO weeks/months/years (local time) that have one; an image kept by any rule is
// kept. A policy that keeps nothing at all (every count 0) is refused by the caller, never
// applied here as "delete everything".
//
// Exactly restic's ApplyPolicy (internal/restic/snapshot_policy.go) for these options, as in
// restic 0.14 (Debian 12), against which tests/retention_test.cc checks it:
//   - the rules are evaluated in the order last, hourly, daily, weekly, monthly, yearly, each
//     on its own: going newest first, a rule keeps an image when the image's bucket differs
//     from the bucket of the last image that rule kept, and spends one of its N on it; so N
//     counts distinct buckets that had an image, however far apart, and the image kept for a
//     bucket is its newest;
//   - buckets: hour YYYYMMDDHH, day YYYYMMDD, ISO 8601 week (Monday to Sunday, numbered by
//     the year holding its Thursday), month, year, all of the local wall clock (localtime_r,
//     TZ): the two 02:00 hours of a DST fall-back are one hourly bucket, as in restic
//     (which uses the zone each snapshot was taken in: the same while TZ does not change);
//   - a negative count keeps every bucket (restic 0.15+'s `unlimited`, stored as -1);
//   - equal times: the entry later in `created_utc_s` counts as the newer (catalogs list
//     oldest first; restic's order between equal times is its listing order);
//   - not implemented: restic 0.17+'s extra rule that keeps the oldest snapshot when a
//     rule has counts left ("oldest daily snapshot"), and the --keep-within*/--keep-tag
//     options.
// Reasons are restic's strings, one per rule that kept the image, in the order above:
// "last snapshot", "hourly snapshot", "daily snapshot", "weekly snapshot", "monthly
// snapshot", "yearly snapshot". An empty policy keeps everything with the reason "policy is
// empty" (restic's answer; the caller refuses it first).
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
