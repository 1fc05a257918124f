// BackupPipeline: the data path of a backup — read chunks, compress them in parallel,
// append the frames to the image in order.
//
// One thread (the caller's) issues reads through a BlockReader and writes frames through
// the ImageWriter; a CompressPool does the CPU work. Memory is bounded by the number of
// slots (queue depth + workers + 2), each holding one chunk and one compressed frame:
// with 4 MiB chunks, a queue depth of 4 and 2 workers that is 8 slots ≈ 64 MiB, whatever
// the device size.
#ifndef HOTSNAP_AGENT_BACKUP_PIPELINE_H_
#define HOTSNAP_AGENT_BACKUP_PIPELINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "agent/progress.h"
#include "base/status.h"
#include "fsmap/used_block_map.h"
#include "io/block_reader.h"
#include "io/image_writer.h"
#include "io/source_device.h"

namespace hotsnap {

// Says which parts of chunk `index` hold data worth reading. Appends to *out the used
// ranges inside the chunk (absolute byte offsets, sorted, non-overlapping); appends nothing
// when the chunk holds no used data (it becomes a zero frame without any read). Bytes of the
// chunk outside the ranges are written as zeros. Not set: every byte is read.
using ChunkPlanner = std::function<void(uint64_t index, uint64_t chunk_offset_bytes,
                                        uint32_t chunk_length_bytes, std::vector<ByteExtent>* out)>;

struct PipelineOptions {
  int level = 3;
  unsigned workers = 0;      // 0: one per core
  unsigned queue_depth = 4;  // reads in flight
  bool allow_io_uring = true;
  ChunkPlanner planner;  // empty: read everything
  // Which chunks to copy, in this order; empty: every chunk of the device in order.
  std::vector<uint64_t> chunks;
  // Makes the reader; empty: io_uring (or pread) on the source. Tests and the tracked mode's
  // in-memory capture of the last written chunks supply their own.
  std::function<Result<std::unique_ptr<BlockReader>>(const ReaderOptions&, std::string* fallback)>
      make_reader;
  uint64_t rate_limit_bytes_per_s = 0;  // reads paced to this rate (--rate-limit); 0: no limit
  // Called before each chunk is started; a non-OK status aborts the run (e.g. a view that
  // became invalid or a freeze past its deadline).
  std::function<Status()> check;
  // Polled throughout the run, like SIGINT; a non-OK status aborts it (another source of a
  // backup set failed, so this copy is of no use). May be empty.
  std::function<Status()> stop;
  // Advanced after each chunk is written, from the pipeline's thread; may be null.
  CopyProgress* progress = nullptr;
  // A delta image: the parent's hash of every chunk. A chunk that hashes to its parent's is
  // not compressed; it reaches the emitter with an empty frame. Not owned; may be null.
  const std::vector<Hash128>* base_hashes = nullptr;
  // With base_hashes: chunks known to be the parent's (a trusted change log says nothing
  // changed there): neither read nor hashed; they reach the emitter with the parent's hash and
  // an empty frame. Indexed by chunk; not owned; may be null.
  const std::vector<bool>* unchanged = nullptr;
};

struct PipelineStats {
  std::string reader;        // "io_uring" or "pread"
  uint64_t bytes_read = 0;   // from the source
  uint64_t zero_chunks = 0;  // written as the precomputed zero frame
  uint64_t unchanged_chunks = 0;  // equal to the parent's (base_hashes): not compressed
  uint64_t skipped_chunks = 0;    // of those, known unchanged (PipelineOptions::unchanged): not read
  uint64_t chunks = 0;
};

// Receives each finished chunk, in the order of PipelineOptions::chunks (`frame` is empty
// for a chunk equal to its parent's, PipelineOptions::base_hashes).
using ChunkEmitter = std::function<Status(uint64_t index, std::span<const uint8_t> frame,
                                          uint32_t length_bytes, const Hash128& hash)>;

// A pipeline kept across runs: its chunk buffers, zero frames and compression workers (with
// their zstd contexts) are set up once, so later runs start warm. A tracked backup copies
// in several rounds, and on virtual machines the first touch of fresh memory is costly.
// Every run must use the level, workers and queue depth given to Create. After a failed run
// the pipeline refuses further runs.
class ChunkPipeline {
 public:
  static Result<std::unique_ptr<ChunkPipeline>> Create(const SourceDevice& source,
                                                       const ImageMetadata& meta,
                                                       const PipelineOptions& options);
  ~ChunkPipeline();
  ChunkPipeline(const ChunkPipeline&) = delete;
  ChunkPipeline& operator=(const ChunkPipeline&) = delete;

  Result<PipelineStats> Run(const PipelineOptions& options, const ChunkEmitter& emit);

 private:
  ChunkPipeline();
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// One run of a fresh pipeline.
Result<PipelineStats> RunChunkPipeline(const SourceDevice& source, const ImageMetadata& meta,
                                       const PipelineOptions& options, const ChunkEmitter& emit);

// Runs the pipeline over every chunk of `source`. The writer must have had Begin() called;
// the caller calls Finish() afterwards.
Result<PipelineStats> RunBackupPipeline(const SourceDevice& source, const ImageMetadata& meta,
                                        const PipelineOptions& options, ImageWriter* writer);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_BACKUP_PIPELINE_H_
