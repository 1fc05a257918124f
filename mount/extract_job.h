// ExtractRange (`hotsnap cat`): copies a byte range of the device stored in an image to a
// file or stdout, decoding only the chunks the range touches (ImageRandomReader).
#ifndef HOTSNAP_MOUNT_EXTRACT_JOB_H_
#define HOTSNAP_MOUNT_EXTRACT_JOB_H_

#include <cstdint>
#include <optional>
#include <string>

#include "base/status.h"

#include "io/image_chain.h"

namespace hotsnap {

struct ExtractOptions {
  std::string image;                // a regular file (random access needs one)
  uint64_t offset_bytes = 0;        // device byte offset
  std::optional<uint64_t> length_bytes;  // absent: to the end of the device
  std::string output = "-";         // a file, or "-" for stdout
  bool overwrite = false;           // replace an existing output file
  ChainOptions chain;               // a delta image: where its parents are (default: beside it)
};

struct ExtractReport {
  uint64_t bytes_written = 0;
  uint64_t chunks_decoded = 0;
};

// The range must lie within the device (kUsage otherwise). A corrupt chunk in the range
// fails with kIntegrity naming the chunk and offset; a file output is then removed.
Result<ExtractReport> ExtractRange(const ExtractOptions& options);

}  // namespace hotsnap

#endif  // HOTSNAP_MOUNT_EXTRACT_JOB_H_
