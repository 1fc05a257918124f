// FreezeRendezvous: one freeze shared by the copies of several sources backed up together
// (`hotsnap backup /dev/sda /dev/sdb -o DIR`), so that every filesystem of every source is
// captured at one moment.
//
// Each copy that freezes is a party. A party that has reached its consistency point calls
// Join(): it waits there until every party has joined; the last one to join freezes the union
// of all groups at once (one FreezeView: hooks once, one watchdog, freeze order by mount point
// depth) and wakes the others. Each party then reads what it must under the freeze and calls
// Release() on its share, which waits until every share is released; the last one thaws, and
// every party gets the thaw's status (a failed thaw fails them all).
//
// A party that cannot come (its copy failed) calls Withdraw(): the parties waiting in Join(),
// and every later Join(), fail with that reason, so no copy waits for a party that is gone
// and no source's image claims a moment the others do not share.
//
// Join() with a wait: a party whose writes keep coming (tracked mode) joins with a bounded
// wait and, if the others are not all there yet, gets no share, copies another round, and
// joins again; the freeze is made only when every party is waiting at the same time.
//
// Thread-safe: parties are threads of one process.
#ifndef HOTSNAP_SNAPSHOT_FREEZE_RENDEZVOUS_H_
#define HOTSNAP_SNAPSHOT_FREEZE_RENDEZVOUS_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>

#include "base/status.h"
#include "snapshot/freeze_view.h"

namespace hotsnap {

class FreezeRendezvous {
 public:
  // A party's share of the group's freeze. Release() is idempotent; the destructor releases.
  class Share : public HeldFreeze {
   public:
    ~Share() override;
    Status Check() override;
    Status Release() override;
    std::chrono::milliseconds frozen_for() const override;

   private:
    friend class FreezeRendezvous;
    explicit Share(FreezeRendezvous* r) : r_(r) {}
    FreezeRendezvous* r_;
    bool released_ = false;
    Status status_;
  };

  // Set up later with Configure(); until then Join() fails.
  FreezeRendezvous() = default;
  FreezeRendezvous(const FreezeRendezvous&) = delete;
  FreezeRendezvous& operator=(const FreezeRendezvous&) = delete;

  // `parties` copies will join; `options` is the union freeze (every group's mount points in
  // freeze order, the hooks, the longest freeze). Called once, before any party runs.
  void Configure(size_t parties, FreezeViewOptions options);
  size_t parties() const { return parties_; }

  // Waits up to `wait` (nullopt: without limit) for every party to join. Returns the share, or
  // nullptr if the wait ended first (the party has not joined: it may copy more and join
  // again). Fails if the freeze failed or a party withdrew.
  Result<std::unique_ptr<Share>> Join(std::optional<std::chrono::milliseconds> wait);

  // The party will not join (its copy failed): the others stop waiting for it.
  void Withdraw(const Status& why);

 private:
  Status Leave();  // a share's release: waits for the others; the last one thaws

  std::mutex mutex_;
  std::condition_variable changed_;
  size_t parties_ = 0;
  FreezeViewOptions options_;
  size_t waiting_ = 0;   // parties in Join() now
  size_t leaving_ = 0;   // shares released
  bool frozen_ = false;  // the union freeze was made
  bool thawed_ = false;
  Status failed_;        // a failed freeze or a withdrawal
  Status thaw_status_;
  std::unique_ptr<FreezeView> view_;
  std::chrono::milliseconds frozen_for_{0};
};

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_FREEZE_RENDEZVOUS_H_
