// Copying a chain's chunks into a new image without recompressing them: the one verified
// frame copy that `compact` and `merge` share.
#ifndef HOTSNAP_AGENT_CHAIN_COPY_H_
#define HOTSNAP_AGENT_CHAIN_COPY_H_

#include <cstdint>

#include "base/status.h"
#include "io/image_chain.h"
#include "io/image_writer.h"

namespace hotsnap {

struct ChainCopyCounts {
  uint64_t chunks = 0;         // chunks appended
  uint64_t parent_chunks = 0;  // of those, frames read from a parent (not the newest image)
};

// Appends every chunk of `chain`'s newest image to `writer` (after Begin(), before Finish()),
// in order. Each chunk's frame is read from the link holding it (ImageChain::LinkOf),
// decompressed and hashed, and appended verbatim only when its bytes hash to the newest
// trailer's hash of that chunk; otherwise kIntegrity naming the image, chunk and offset, and
// nothing more is appended. kInterrupted on SIGINT/SIGTERM (`job` names the work: "merge").
// Memory: one frame and one chunk buffer.
Result<ChainCopyCounts> AppendChainChunks(const ImageChain& chain, ImageWriter* writer,
                                          const char* job);

// The report a plain image made from a delta (or tracked) image carries: `report` without the
// delta's change fields (how changes were found, chunks changed and unchanged).
RunReport PlainImageReport(RunReport report);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_CHAIN_COPY_H_
