// ParseThinDeltaXml: reads what `thin_delta` (thin-provisioning-tools) prints, the mapping
// differences between two thin devices of one pool. Pure: text in, ranges out; no I/O.
//
// The format (see kernel-notes/thin-delta.md for the versions it was checked on):
//
//   <superblock uuid="" time="1" transaction="5" data_block_size="128" nr_data_blocks="1024">
//     <diff left="2" right="3">
//       <same begin="0" length="34"/>
//       <different begin="34" length="1"/>
//       <right_only begin="40" length="2"/>
//       <left_only begin="50" length="1"/>
//     </diff>
//   </superblock>
//
// begin/length are in blocks of the pool (data_block_size 512-byte sectors each, the pool's
// chunk size), counted from the start of the thin devices: virtual addresses, not where the
// data lies in the pool. `same` is mapped to the same pool block on both sides; `different`
// mapped on both, to other blocks; `left_only`/`right_only` mapped on one side only. Blocks
// unmapped on both sides are not listed. --verbose prints the same kinds as open elements
// holding one <range begin=".." length=".." .../> per mapping run; both forms are accepted.
//
// Anything else — an unknown element inside <diff>, a range outside one, a missing or
// non-numeric attribute, a second <diff> — is an error: a report we do not fully understand
// could hide changed blocks.
#ifndef HOTSNAP_SNAPSHOT_THIN_DELTA_XML_H_
#define HOTSNAP_SNAPSHOT_THIN_DELTA_XML_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

// A run of pool blocks (data_block_size sectors each) of the thin devices' address space.
struct ThinBlockRange {
  uint64_t begin_blocks = 0;
  uint64_t length_blocks = 0;
  bool operator==(const ThinBlockRange&) const = default;
};

struct ThinDeltaReport {
  uint64_t data_block_sectors = 0;  // superblock data_block_size: 512-byte sectors per block
  uint64_t left_id = 0;             // <diff left=..>: the thin id of --snap1
  uint64_t right_id = 0;            // <diff right=..>: the thin id of --snap2
  // Blocks that differ: `different`, `left_only` and `right_only`, in the order printed
  // (ascending begin from thin_delta), not merged. `same` ranges are not kept.
  std::vector<ThinBlockRange> changed;
  uint64_t same_blocks = 0;  // total length of the `same` ranges
};

// Errors: kInternal naming what was unexpected and where (byte offset in `xml`).
Result<ThinDeltaReport> ParseThinDeltaXml(const std::string& xml);

}  // namespace hotsnap

#endif  // HOTSNAP_SNAPSHOT_THIN_DELTA_XML_H_
