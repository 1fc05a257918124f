#include "snapshot/freeze_rendezvous.h"

#include <utility>

namespace hotsnap {

void FreezeRendezvous::Configure(size_t parties, FreezeViewOptions options) {
  std::lock_guard<std::mutex> lock(mutex_);
  parties_ = parties;
  options_ = std::move(options);
}

Result<std::unique_ptr<FreezeRendezvous::Share>> FreezeRendezvous::Join(
    std::optional<std::chrono::milliseconds> wait) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (parties_ == 0) return Status(Code::kInternal, "freeze rendezvous joined before it was set up");
  if (!failed_.ok()) return failed_;
  if (frozen_) return Status(Code::kInternal, "freeze rendezvous joined after its freeze");
  ++waiting_;
  if (waiting_ == parties_) {
    // The last party: every other one is waiting, so this is the group's moment. The freeze is
    // made under the lock; nobody can leave the wait meanwhile.
    auto view = FreezeView::Open(options_);
    if (!view.ok()) {
      failed_ = view.status();
      changed_.notify_all();
      return failed_;
    }
    view_ = std::move(view.value());
    frozen_ = true;
    changed_.notify_all();
  } else {
    auto ready = [this] { return frozen_ || !failed_.ok(); };
    if (wait) {
      if (!changed_.wait_for(lock, *wait, ready)) {
        --waiting_;  // not everyone came in time: this party copies more and joins again
        return std::unique_ptr<Share>();
      }
    } else {
      changed_.wait(lock, ready);
    }
    if (!frozen_) return failed_;
  }
  return std::unique_ptr<Share>(new Share(this));
}

void FreezeRendezvous::Withdraw(const Status& why) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (frozen_ || !failed_.ok()) return;  // a freeze made is ended by its shares' release
  failed_ = Status(why.code(), "another source of this backup failed: " + why.message());
  changed_.notify_all();
}

Status FreezeRendezvous::Leave() {
  std::unique_lock<std::mutex> lock(mutex_);
  ++leaving_;
  if (leaving_ == parties_) {
    thaw_status_ = view_->Release();
    frozen_for_ = view_->frozen_for();
    view_.reset();
    thawed_ = true;
    changed_.notify_all();
  } else {
    changed_.wait(lock, [this] { return thawed_; });
  }
  return thaw_status_;
}

FreezeRendezvous::Share::~Share() { (void)Release(); }

Status FreezeRendezvous::Share::Check() {
  std::lock_guard<std::mutex> lock(r_->mutex_);
  return r_->view_ ? r_->view_->Check() : Status::Ok();
}

Status FreezeRendezvous::Share::Release() {
  if (released_) return status_;
  released_ = true;
  status_ = r_->Leave();
  return status_;
}

std::chrono::milliseconds FreezeRendezvous::Share::frozen_for() const {
  std::lock_guard<std::mutex> lock(r_->mutex_);
  return r_->view_ ? r_->view_->frozen_for() : r_->frozen_for_;
}

}  // namespace hotsnap
