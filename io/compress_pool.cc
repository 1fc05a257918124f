#include "io/compress_pool.h"

#include <unistd.h>

#include "base/interrupt.h"

namespace hotsnap {

CompressPool::CompressPool(unsigned workers, int level, uint32_t chunk_bytes, const ZeroChunk* zero,
                           int wake_fd)
    : workers_(workers == 0 ? 1 : workers),
      level_(level),
      chunk_bytes_(chunk_bytes),
      zero_(zero),
      wake_fd_(wake_fd) {}

CompressPool::~CompressPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

Status CompressPool::Start() {
  for (unsigned i = 0; i < workers_; ++i) {
    auto c = ChunkCompressor::Create(level_);
    if (!c.ok()) return c.status();
    compressors_.push_back(std::move(c.value()));
  }
  for (unsigned i = 0; i < workers_; ++i) {
    ChunkCompressor* compressor = compressors_[i].get();
    threads_.emplace_back([this, compressor] {
      BlockInterruptSignals();
      Work(compressor);
    });
  }
  return Status::Ok();
}

void CompressPool::Submit(CompressJob* job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back(job);
  }
  cv_.notify_one();
}

void CompressPool::TakeFinished(std::vector<CompressJob*>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  out->insert(out->end(), finished_.begin(), finished_.end());
  finished_.clear();
}

void CompressPool::Work(ChunkCompressor* compressor) {
  for (;;) {
    CompressJob* job = nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      if (stopping_) return;
      job = pending_.front();
      pending_.pop_front();
    }
    job->unchanged = false;
    job->frame = {};
    if (job->input.size() == chunk_bytes_ && zero_ != nullptr &&
        IsAllZero(job->input.data(), job->input.size())) {
      job->zero = true;
      job->hash = zero_->hash;
      job->frame = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(zero_->frame.data()),
                                            zero_->frame.size());
      if (job->base_hash != nullptr && *job->base_hash == job->hash) {
        job->unchanged = true;
        job->frame = {};
      }
    } else {
      job->zero = false;
      job->hash = HashBytes(job->input.data(), job->input.size());
      if (job->base_hash != nullptr && *job->base_hash == job->hash) {
        job->unchanged = true;  // the parent's: hashed, never compressed
      } else {
        auto n = compressor->Compress(job->input, job->output);
        if (n.ok()) {
          job->frame = job->output.first(*n);
        } else {
          job->status = n.status().Wrap("chunk " + std::to_string(job->index));
        }
      }
    }
    Finish(job);
  }
}

void CompressPool::Finish(CompressJob* job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    finished_.push_back(job);
  }
  uint64_t one = 1;
  if (wake_fd_ >= 0) {
    ssize_t n = ::write(wake_fd_, &one, sizeof(one));
    (void)n;  // an eventfd write only fails on counter overflow, which cannot happen here
  }
}

}  // namespace hotsnap
