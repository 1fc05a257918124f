// Test helpers: RAII owners for the real kernel objects tests use (temporary directories,
// loop devices, mounts), a command runner, and the privileged-test gate.
//
// Privileged tests call HOTSNAP_REQUIRE_PRIVILEGED() first. Outside CI they skip (with the
// reason) when not root or without loop devices; under CI=true a missing privilege is a
// test failure, never a skip.
#ifndef HOTSNAP_TESTS_TEST_UTIL_H_
#define HOTSNAP_TESTS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hotsnap::testing {

// Empty string if privileged tests can run here, else the reason they cannot.
std::string PrivilegeProblem();
bool InCi();

#define HOTSNAP_REQUIRE_PRIVILEGED()                                        \
  do {                                                                      \
    std::string problem_ = ::hotsnap::testing::PrivilegeProblem();          \
    if (!problem_.empty()) {                                                \
      if (::hotsnap::testing::InCi()) FAIL() << "CI=true but " << problem_; \
      GTEST_SKIP() << problem_;                                             \
    }                                                                       \
  } while (0)

struct CommandResult {
  int exit_code = -1;     // exit status, or 128+signal if killed
  std::string out;        // stdout
  std::string err;        // stderr
};

// Runs `/bin/sh -c command`, capturing stdout and stderr.
CommandResult Run(const std::string& command);
// Runs the command and fails the current test (ADD_FAILURE) if it exits non-zero.
CommandResult RunOk(const std::string& command);
// Path of the hotsnap binary under test.
std::string HotsnapBinary();
// Shell-quotes one argument.
std::string Quote(const std::string& arg);

// A temporary directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A loop device over a sparse backing file; detached (and the file removed) on destruction.
class LoopDevice {
 public:
  // Creates `size_bytes` sparse backing file in `dir` and attaches it.
  LoopDevice(const std::string& dir, uint64_t size_bytes, const std::string& name = "disk.img");
  ~LoopDevice();
  LoopDevice(const LoopDevice&) = delete;
  LoopDevice& operator=(const LoopDevice&) = delete;
  const std::string& device() const { return device_; }
  const std::string& backing_file() const { return file_; }

 private:
  std::string file_;
  std::string device_;
};

// A mount of `device` at a fresh directory; unmounted (lazily if needed) on destruction.
class MountPoint {
 public:
  MountPoint(const std::string& device, const std::string& dir, const std::string& options = "");
  ~MountPoint();
  MountPoint(const MountPoint&) = delete;
  MountPoint& operator=(const MountPoint&) = delete;
  const std::string& path() const { return path_; }
  void Unmount();

 private:
  std::string path_;
  bool mounted_ = false;
};

// Reads a whole file (or device) into memory; for small test devices only.
std::string ReadAll(const std::string& path);
// sha256sum of a file or device, as hex.
std::string Sha256(const std::string& path);

// ---- Helpers for the image end-to-end tests (backup/restore/verify) -------------------------

// Writes `data` to `path`, creating or truncating it.
void WriteFile(const std::string& path, const std::string& data);
// st_size of a regular file, BLKGETSIZE64 of a block device; 0 if it cannot be opened.
uint64_t SizeOf(const std::string& path);
// XORs the byte at `offset` of `path` with `mask` (in place, no truncation).
void FlipByte(const std::string& path, uint64_t offset, uint8_t mask = 0xFF);
// XORs with `mask` the byte in the middle of chunk `chunk`'s final frame in the image file
// `image` (its offset from the seek table): the chunk then fails its checks, nothing else.
void FlipByteInChunkFrame(const std::string& image, uint64_t chunk, uint8_t mask = 0x01);
// Writes `bytes` bytes from /dev/urandom (or of value `fill` if fill >= 0) at byte `offset`
// of `path` (a file or a block device), without truncating it, and syncs.
void FillRegion(const std::string& path, uint64_t offset, uint64_t bytes, int fill = -1);
// True if `path` exists (lstat: a dangling symlink exists).
bool PathExists(const std::string& path);

// Starts `/bin/sh -c 'exec COMMAND'` in the background with stdout and stderr redirected to
// the given files; the returned pid is the command's own (exec keeps it).
int Spawn(const std::string& command, const std::string& out_path, const std::string& err_path);
// Waits for a Spawn()ed process: its exit status, or 128+signal if it was killed.
int WaitExit(int pid);
// Polls `condition` every 10 ms for up to `seconds`; returns whether it became true.
bool WaitUntil(const std::function<bool()>& condition, double seconds);

// One frame of an image file as seen by an independent parser (skippable frames by their
// size field, zstd frames by stock libzstd's ZSTD_findFrameCompressedSize).
struct ImageFrameSpan {
  uint64_t offset = 0;
  uint64_t bytes = 0;
  uint32_t magic = 0;
};
// Splits `image` into frames; fails the test (and returns what it has) on bytes it cannot parse.
std::vector<ImageFrameSpan> SplitImageFrames(const std::string& image);

// Writes `data` at byte `offset` of `path` (a file or a block device) without truncating it.
void WriteAt(const std::string& path, uint64_t offset, const std::string& data);
// `hotsnap ARGS` as a shell command line (ARGS already quoted by the caller).
std::string Hotsnap(const std::string& args);

// Fills `path` (a device or file of `size_bytes`) with data that varies by 4 MiB chunk, in a
// cycle of six: random; compressible text; zeros; 1 MiB random then zeros; zeros; bytes 0x5A
// ending in 4 KiB of random. Chunks 2 and 4 (mod 6) are all zero.
void FillMixedChunks(const std::string& path, uint64_t size_bytes);

}  // namespace hotsnap::testing


// ---- Helpers for the live-consistency tests (freeze, tracked) ------------------------------
// A write to a frozen filesystem blocks uninterruptibly until the thaw. These helpers never
// write to a filesystem that may be frozen from the test process itself: they fork.

namespace hotsnap::testing {

// Thaws the filesystem mounted at `mount_point` on destruction (`fsfreeze -u`; "not frozen"
// is ignored), so a failing test never leaves it frozen. Declare it after anything whose
// destructor waits for a write to that filesystem.
class ThawOnExit {
 public:
  explicit ThawOnExit(std::string mount_point) : mount_point_(std::move(mount_point)) {}
  ~ThawOnExit();
  ThawOnExit(const ThawOnExit&) = delete;
  ThawOnExit& operator=(const ThawOnExit&) = delete;

 private:
  std::string mount_point_;
};

// One write (create `dir`/NAME, write 4 KiB, fsync) in a child process. Done() says whether it
// finished; a write that is still blocked proves the filesystem is frozen.
class WriteProbe {
 public:
  WriteProbe(const std::string& dir, const std::string& name = "probe");
  ~WriteProbe();  // reaps the child; after 5 s of a still-blocked write, leaves it
  WriteProbe(const WriteProbe&) = delete;
  WriteProbe& operator=(const WriteProbe&) = delete;
  bool Done();
  // Waits up to `seconds` for the write to finish; returns whether it did.
  bool Wait(double seconds);
  // The write's exit status (0: it worked); -1 while it runs.
  int status() const { return status_; }

 private:
  int pid_ = -1;
  int status_ = -1;
};

// Whether the filesystem at `mount_point` takes a write within `seconds` (a WriteProbe).
bool WritableWithin(const std::string& mount_point, double seconds);

// A background writer (a forked child) on a mounted filesystem, for consistency oracles:
//   - appends 64-byte records (magic, sequence number from 1, payload, FNV-1a checksum) to
//     DIR/records.log, fdatasync after each;
//   - rewrites 4 KiB blocks in place in DIR/rewrite-K (6 files of 4 MiB, created by the
//     constructor), each block self-describing (file, offset, generation, checksum);
//   - every 16 records creates a 256 KiB churn file (fsynced) and deletes an older one, so
//     the set of used blocks changes too.
// It runs until Stop() (SIGKILL; every completed record is fsynced).
class LiveWriter {
 public:
  static constexpr uint64_t kRecordBytes = 64;
  static constexpr int kRewriteFiles = 6;
  static constexpr uint64_t kRewriteFileBytes = 4u << 20;
  explicit LiveWriter(const std::string& dir);
  ~LiveWriter();
  LiveWriter(const LiveWriter&) = delete;
  LiveWriter& operator=(const LiveWriter&) = delete;
  // Records in DIR/records.log now (its size / 64; a stat, never blocks on a frozen fs).
  uint64_t Records() const;
  // Waits until at least `n` records exist; false after `seconds`.
  bool WaitForRecords(uint64_t n, double seconds) const;
  void Stop();

 private:
  std::string dir_;
  int pid_ = -1;
};

// Checks DIR/records.log (as written by LiveWriter): whole records, each checksum right,
// sequence numbers 1, 2, 3, ... Adds a test failure naming the first bad record; returns the
// number of records.
uint64_t CheckRecordLog(const std::string& dir);
// Checks that every 4 KiB block of DIR/rewrite-K is one whole, self-consistent block (no torn
// writes). Adds a test failure naming the first bad block; returns the number checked.
uint64_t CheckRewriteFiles(const std::string& dir);

// Byte ranges [first, second) the filesystem in `image` (a file or device holding ext4 or xfs)
// uses, computed from its own free-space records with dumpe2fs / xfs_db (not hotsnap's).
std::vector<std::pair<uint64_t, uint64_t>> UsedRangesOf(const std::string& image,
                                                        const std::string& fs_type);

// The consistency oracle: `restored` equals `reference` on every byte of every block the
// filesystem in `reference` uses; both mount (read-only, without log replay) to identical
// trees with identical file contents; fsck finds `restored` clean; its record log is a valid
// prefix. Adds test failures; returns the restored record count.
uint64_t CheckAgainstReference(const std::string& fs_type, const std::string& reference,
                               const std::string& restored, const std::string& scratch_dir);

// mkfs for "ext4" or "xfs" (quiet, forced).
void MakeFilesystem(const std::string& fs_type, const std::string& device);
// `options` for a read-only mount that replays no log: "ro,noload" or "ro,norecovery,nouuid".
std::string ReadOnlyNoReplayOptions(const std::string& fs_type);

// A loop device with partition scanning over a file holding an MBR with the given primary
// partitions (first byte, bytes; 1 MiB aligned). Partition N is device() + "pN". Detached on
// destruction.
class PartitionedLoopDevice {
 public:
  PartitionedLoopDevice(const std::string& dir, uint64_t size_bytes,
                        const std::vector<std::pair<uint64_t, uint64_t>>& partitions);
  ~PartitionedLoopDevice();
  PartitionedLoopDevice(const PartitionedLoopDevice&) = delete;
  PartitionedLoopDevice& operator=(const PartitionedLoopDevice&) = delete;
  const std::string& device() const { return device_; }
  std::string partition(int n) const { return device_ + "p" + std::to_string(n); }

 private:
  std::string file_;
  std::string device_;
};

// Pids of this process's live children (from /proc), e.g. to prove a watchdog is gone.
std::vector<int> ChildPids();

// A loop device of `bytes` holding a fresh `fs_type` ("ext4" or "xfs") filesystem, mounted
// read-write at DIR/mnt. On destruction: thawed (if a test left it frozen), unmounted, detached.
class MountedLoopFs {
 public:
  MountedLoopFs(const std::string& dir, const std::string& fs_type, uint64_t bytes);
  MountedLoopFs(const MountedLoopFs&) = delete;
  MountedLoopFs& operator=(const MountedLoopFs&) = delete;
  const std::string& device() const { return loop_.device(); }
  const std::string& mount_point() const { return mount_.path(); }
  const std::string& fs_type() const { return fs_type_; }

 private:
  std::string fs_type_;
  LoopDevice loop_;
  MountPoint mount_;
  ThawOnExit thaw_;
};

// Names in directory `path` (without . and ..), sorted; empty if it cannot be read.
std::vector<std::string> ListDir(const std::string& path);

}  // namespace hotsnap::testing

#endif  // HOTSNAP_TESTS_TEST_UTIL_H_
