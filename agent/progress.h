// ProgressLine: a one-line progress display on stderr for long work.
//
// Shown only when enabled (the CLI enables it when stderr is a TTY, or with --progress),
// redrawn at most 4 times a second: phase, bytes done of total, rate, ratio, ETA. With
// events enabled (--json), the same figures also go out as "progress" events, at most once a
// second and once at the end, whether or not the line is shown.
#ifndef HOTSNAP_AGENT_PROGRESS_H_
#define HOTSNAP_AGENT_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <string>

namespace hotsnap {

class ProgressLine {
 public:
  ProgressLine(std::string phase, uint64_t total_bytes, bool enabled);
  ~ProgressLine();
  void Update(uint64_t done_bytes, uint64_t output_bytes);
  void SetTotal(uint64_t total_bytes) { total_ = total_bytes; }
  void Done();  // ends the line

 private:
  std::string phase_;
  uint64_t total_;
  bool enabled_;
  bool drawn_ = false;
  bool finished_ = false;  // Done() was called
  uint64_t done_ = 0;
  uint64_t output_ = 0;
  uint64_t drawn_done_ = 0;  // done_ when the line was last drawn
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_;
  std::chrono::steady_clock::time_point last_event_;
};

// The progress of a backup's copy, the same for every snapshot mode: the flow makes one and
// hands it to every pipeline run through PipelineOptions::progress. Counts the bytes read of
// the bytes to read; tracked mode adds to the latter when it finds chunks to copy again.
// Single-threaded (the pipeline's thread).
class CopyProgress {
 public:
  CopyProgress(uint64_t total_bytes, bool line_enabled);
  void AddWork(uint64_t bytes);
  // The bytes to read, exactly, once the used-block map is made (the plan may have estimated).
  void SetTotal(uint64_t bytes);
  // Another `read_bytes` read from the source and `image_bytes` appended to the image.
  void Advance(uint64_t read_bytes, uint64_t image_bytes);
  void Done();
  uint64_t total_bytes() const { return total_; }

 private:
  ProgressLine line_;
  uint64_t total_;
  uint64_t done_ = 0;
  uint64_t output_ = 0;
};

std::string HumanBytes(uint64_t bytes);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_PROGRESS_H_
