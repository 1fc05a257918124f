// `hotsnap restore IMAGE TARGET --changed-only`: rolls TARGET back to IMAGE in place, writing
// only the chunks whose bytes differ from the image's (of those, only the 4 KiB blocks that
// differ).
//
// The passes:
//   1. Open the image FILE for random access (ImageRandomReader: a delta image through its
//      chain). "-" and ssh:// are refused (kUsage): a stream cannot be read out of order.
//   2. Open TARGET in place (RestoreTarget::OpenInPlace: an existing device, with every check
//      a full restore makes of one, or an existing file at least the image's size) and check
//      that it holds the image's own filesystem, or for a whole-disk image its own partition
//      table (CheckTargetHoldsImageSource). Nothing is written before both pass.
//   3. Map: which blocks the image's own filesystem uses (agent/image_used_map.h: for the image
//      of an ext2/3/4 or xfs filesystem mapped by its bitmap or bnobt, those records read from
//      the image; every block for any other image).
//   4. Compare: of every chunk, the target's bytes that the map marks used are read
//      (io/block_reader.h: io_uring, a few reads in flight; free gaps under 64 KiB are read
//      through), the free ones set to zeros — what the image holds there — and the chunk
//      hashed (XXH3-128, on a few threads) and compared with the image trailer's hash of that
//      chunk. A chunk with nothing used whose image hash is that of zeros needs no read. A
//      chunk that differs is decoded from the image (checked against the same hash) and its
//      4 KiB blocks that differ are written (io/block_writer.h). Chunks are written as they
//      are found, in no particular order.
//   5. fdatasync (BlockWriter::Finish); a whole-disk GPT image on a larger disk gets its backup
//      table moved to the end, as after a full restore.
//
// The rule: afterwards every block the image's filesystem uses equals the image, byte for
// byte, and so does every byte of an image compared whole (bytes past the image on a larger
// target are left alone, as a full restore leaves them). A block free in the image keeps what
// the target held there: the restored filesystem does not use it (its free-space records, used
// blocks, say so), where a full restore would have written zeros. A device is held
// exclusively (O_EXCL) and locked against other hotsnap runs meanwhile; a file target is not,
// so nothing else may write it during the run.
#ifndef HOTSNAP_AGENT_CHANGED_RESTORE_H_
#define HOTSNAP_AGENT_CHANGED_RESTORE_H_

#include <string>

#include "agent/image_jobs.h"
#include "base/status.h"
#include "io/image_format.h"

namespace hotsnap {

// Whether TARGET at `path` holds what `meta` was taken from: for the image of one filesystem,
// the libblkid UUID of what `path` holds equals meta.fs_uuid; for a whole-disk image
// (meta.partition_table non-empty), the partition table's type and PTUUID equal the image's.
// A mismatch is kTarget, naming the path and both UUIDs; an image that records no UUID is
// kUnsupported (there is nothing to compare).
Status CheckTargetHoldsImageSource(const std::string& path, const ImageMetadata& meta);

// Runs passes 1-5 for options.image onto options.target. Uses image, target, progress,
// queue_depth, flush_every_bytes, wrap_write_queue, flush and chain; options.force and
// options.overwrite are refused (kUsage), as is an image that is not a file ("-", ssh://).
// The report's bytes_written, chunks_compared, chunks_written and target_bytes_read say what
// was done (target_bytes_read: the used bytes read, free gaps read through included);
// zero_chunks_skipped stays 0.
Result<RestoreReport> RunChangedRestore(const RestoreOptions& options);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_CHANGED_RESTORE_H_
