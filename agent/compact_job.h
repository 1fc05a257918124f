// Compaction: turn a tracked-layout image, or a delta image with its chain of parents, into
// a plain one, which stock `zstd -dc` restores byte for byte. Each chunk's final frame (a
// delta's chunk: from the newest image of the chain holding it) is checked against the
// newest image's hash of it and copied as it is (frames are independent: nothing is
// recompressed).
#ifndef HOTSNAP_AGENT_COMPACT_JOB_H_
#define HOTSNAP_AGENT_COMPACT_JOB_H_

#include <string>

#include "base/status.h"
#include "io/image_chain.h"

namespace hotsnap {

struct CompactOptions {
  std::string image;  // a tracked (or plain) image file; random access is needed
  std::string dest;   // a path, or "-" for stdout
  bool overwrite = false;
  ChainOptions chain;  // a delta image: where its parents are (default: beside it)
};

struct CompactReport {
  uint64_t image_bytes = 0;
  uint64_t dropped_frames = 0;  // superseded chunk frames left out (of the newest image)
  uint64_t parent_chunks = 0;   // a delta: chunks whose frame came from a parent
  size_t chain_links = 1;       // images read
};

Result<CompactReport> RunCompact(const CompactOptions& options);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_COMPACT_JOB_H_
