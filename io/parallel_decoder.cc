#include "io/parallel_decoder.h"

#include <utility>

#include "base/interrupt.h"

namespace hotsnap {

Result<std::unique_ptr<ParallelDecoder>> ParallelDecoder::Create(unsigned workers, unsigned depth,
                                                                 int window_log,
                                                                 uint32_t chunk_bytes) {
  std::unique_ptr<ParallelDecoder> d(new ParallelDecoder(depth < 1 ? 1 : depth, chunk_bytes));
  d->zero_hash_ = HashZeros(chunk_bytes);
  for (unsigned i = 0; i < (workers < 1 ? 1 : workers); ++i) {
    auto decompressor = ChunkDecompressor::Create(window_log);
    if (!decompressor.ok()) return decompressor.status();
    d->decompressors_.push_back(std::move(decompressor.value()));
  }
  for (auto& decompressor : d->decompressors_) {
    ChunkDecompressor* own = decompressor.get();
    d->threads_.emplace_back([raw = d.get(), own] { raw->Work(own); });
  }
  return d;
}

ParallelDecoder::~ParallelDecoder() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

std::unique_ptr<DecodeJob> ParallelDecoder::NewJob() {
  std::unique_ptr<DecodeJob> job;
  if (!free_.empty()) {
    job = std::move(free_.back());
    free_.pop_back();
  } else {
    job = std::make_unique<DecodeJob>();
    job->chunk.reset(new uint8_t[chunk_bytes_]);
  }
  job->status = Status::Ok();
  job->zero = false;
  job->done = false;
  return job;
}

void ParallelDecoder::Submit(std::unique_ptr<DecodeJob> job) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(job));
  }
  work_cv_.notify_one();
}

std::unique_ptr<DecodeJob> ParallelDecoder::TakeNext() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (queue_.empty()) return nullptr;
  done_cv_.wait(lock, [this] { return queue_.front()->done; });
  std::unique_ptr<DecodeJob> job = std::move(queue_.front());
  queue_.pop_front();
  --next_unclaimed_;  // the front was claimed (it is done), so next_unclaimed_ >= 1
  return job;
}

void ParallelDecoder::Recycle(std::unique_ptr<DecodeJob> job) { free_.push_back(std::move(job)); }

void ParallelDecoder::Work(ChunkDecompressor* decompressor) {
  BlockInterruptSignals();  // signals go to the scanner's thread (base/interrupt.h)
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    work_cv_.wait(lock, [this] { return stopping_ || next_unclaimed_ < queue_.size(); });
    if (stopping_) return;
    DecodeJob* job = queue_[next_unclaimed_++].get();  // stays owned by queue_ until done
    lock.unlock();
    job->status = decompressor->Decompress(
        job->frame, std::span<uint8_t>(job->chunk.get(), chunk_bytes_), job->length);
    if (job->status.ok()) {
      job->hash = HashBytes(job->chunk.get(), job->length);
      job->zero = job->length == chunk_bytes_
                      ? job->hash == zero_hash_ && IsAllZero(job->chunk.get(), job->length)
                      : IsAllZero(job->chunk.get(), job->length);
    }
    lock.lock();
    job->done = true;
    done_cv_.notify_all();
  }
}

}  // namespace hotsnap
