// Compaction: turn a tracked-layout image into a plain one, which stock `zstd -dc`
// restores byte for byte. Each chunk's final frame is checked against its trailer hash
// and copied as it is (frames are independent: nothing is recompressed).
#ifndef HOTSNAP_AGENT_COMPACT_JOB_H_
#define HOTSNAP_AGENT_COMPACT_JOB_H_

#include <string>

#include "base/status.h"

namespace hotsnap {

struct CompactOptions {
  std::string image;  // a tracked (or plain) image file; random access is needed
  std::string dest;   // a path, or "-" for stdout
  bool overwrite = false;
};

struct CompactReport {
  uint64_t image_bytes = 0;
  uint64_t dropped_frames = 0;  // superseded chunk frames left out
};

Result<CompactReport> RunCompact(const CompactOptions& options);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_COMPACT_JOB_H_
