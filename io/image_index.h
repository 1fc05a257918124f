// ImageIndex: random access to an image in a regular file, from its seek table.
//
// LoadImageIndex reads the footer, the seek table and the trailer from the end of the
// file and the metadata frame from its start, and checks that they agree with each other
// and with the file size (every frame's compressed size must add up to the file). It
// does not read the chunk frames; a later chunk read is checked against the trailer hash.
// The ranges are read through a RangedReader (io/ranged_reader.h): a local file, or a file
// on another host (io/ssh_ranged_reader.h); the parsing and checks are the same.
#ifndef HOTSNAP_IO_IMAGE_INDEX_H_
#define HOTSNAP_IO_IMAGE_INDEX_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/image_format.h"
#include "io/ranged_reader.h"

namespace hotsnap {

struct ImageIndex {
  ImageMetadata meta;
  Trailer trailer;
  RunReport report;
  std::vector<SeekEntry> entries;        // as in the seek table, one per frame
  std::vector<uint64_t> chunk_offsets;   // image byte offset of each chunk's final frame
  std::vector<uint32_t> chunk_frame_bytes;  // compressed size of that frame; 0: none here
                                            // (a delta image's chunk that is its parent's)
  uint64_t image_bytes = 0;
  uint64_t metadata_offset = 0;          // 13 for the tracked and delta layouts (after the guard)
  uint64_t metadata_frame_bytes = 0;
  uint64_t trailer_offset = 0;
  uint64_t seek_table_offset = 0;

  uint32_t ChunkFrameBytes(uint64_t index) const { return chunk_frame_bytes[index]; }
  // Whether this image holds a frame of chunk `index` (always, except in a delta image).
  bool HasFrame(uint64_t index) const { return chunk_frame_bytes[index] != 0; }
};

// Reads, in order: the 9-byte seek-table footer, the seek table, the leading guard frame
// (tracked and delta layouts), the metadata frame, the trailer and the report — the last
// four at the offsets the seek table gives. kIntegrity when they are malformed or disagree;
// the reader's own errors as they are. `name` is for messages.
Result<ImageIndex> LoadImageIndex(RangedReader& file, const std::string& name);
// The same for `fd`, a regular file opened for reading.
Result<ImageIndex> LoadImageIndex(int fd, const std::string& name);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_IMAGE_INDEX_H_
