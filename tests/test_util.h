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

}  // namespace hotsnap::testing

#endif  // HOTSNAP_TESTS_TEST_UTIL_H_
