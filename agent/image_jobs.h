// Jobs that read images: restore, verify, info.
#ifndef HOTSNAP_AGENT_IMAGE_JOBS_H_
#define HOTSNAP_AGENT_IMAGE_JOBS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "io/block_writer.h"
#include "io/image_chain.h"
#include "io/image_format.h"
#include "io/image_index.h"
#include "io/ssh_remote.h"

namespace hotsnap {

// An image opened for reading: stdin for "-", a stream from another host for an ssh:// URL
// (read like stdin), else a file. A regular file also gets its index (seek table + trailer)
// loaded up front, which lets readers check every chunk's strong hash before using it.
struct OpenedImage {
  std::string name;
  UniqueFd owned_fd;
  int fd = -1;
  std::optional<ImageIndex> index;
  std::unique_ptr<SshImageStream> remote;  // set for ssh://; owns fd
};
// `ssh_options` apply to ssh:// images (each passed as `ssh -o OPTION`).
Result<OpenedImage> OpenImage(const std::string& path, const std::vector<std::string>& ssh_options = {});

// Reading `image` failed with `status`: for an ssh:// image whose connection or remote
// command failed, a status saying that (kSource) instead of "truncated".
Status ExplainImageReadFailure(OpenedImage& image, const Status& status);

struct RestoreOptions {
  std::string image;   // path or "-"
  std::string target;  // block device or regular file
  bool overwrite = false;  // replace an existing regular file
  bool force = false;      // a target device holding another filesystem (restore_job.cc)
  bool progress = false;
  unsigned queue_depth = 4;
  std::vector<std::string> ssh_options;  // for an ssh:// image
  // Wraps the target's real write queue (io_uring or pwrite); empty: none. Tests inject
  // write faults with it (tests/restore_fault_test.cc).
  WriteQueueWrapper wrap_write_queue;
  // Least bytes written between background flushes of the target (io/background_flush.h);
  // 0: only the final fsync.
  uint64_t flush_every_bytes = uint64_t{16} << 20;
  // Replaces the target's flush (fdatasync); empty: the real one. Tests wrap it to fail.
  TargetFlush flush;
  // A delta image: where its parents are (default: beside it).
  ChainOptions chain;
  // Roll TARGET back to the image in place, writing only the chunks whose bytes differ
  // (agent/changed_restore.h): TARGET must exist and hold the image's filesystem.
  bool changed_only = false;
};

struct RestoreReport {
  ImageMetadata meta;
  std::string writer;
  uint64_t bytes_written = 0;
  uint64_t zero_chunks_skipped = 0;
  unsigned background_flushes = 0;  // flushes of the target while writing, before the last
  double seconds = 0;
  // --changed-only (agent/changed_restore.h): the target's chunks read and hashed, those
  // written (their bytes differed from the image's), and the bytes read from the target.
  bool changed_only = false;
  uint64_t chunks_compared = 0;
  uint64_t chunks_written = 0;
  uint64_t target_bytes_read = 0;
};

// A full restore, or with options.changed_only RunChangedRestore (agent/changed_restore.h).
Result<RestoreReport> RunRestore(const RestoreOptions& options);

struct VerifyReport {
  ImageMetadata meta;
  uint64_t image_bytes = 0;
  std::vector<std::string> chain;  // a delta image: every image verified, newest first
  uint64_t chunks = 0;
  uint64_t zero_chunks = 0;
  Hash128 image_hash;
  double seconds = 0;
};
// A delta image file is verified with its whole chain: each image read in full and checked
// as one image is, and each link against the hashes its child recorded (io/image_chain.h).
Result<VerifyReport> RunVerify(const std::string& image, bool progress,
                               const std::vector<std::string>& ssh_options = {},
                               const ChainOptions& chain = {});

// Human-readable and JSON descriptions of an image (metadata, sizes, hashes; for a delta,
// its parent and whether its chain is complete).
Result<std::string> DescribeImage(const std::string& image, bool json,
                                  const std::vector<std::string>& ssh_options = {},
                                  const ChainOptions& chain = {});

// One paragraph describing the source recorded in an image, for restore's preamble.
std::string DescribeSource(const ImageMetadata& meta);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_IMAGE_JOBS_H_
