#include "tests/test_util.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace hotsnap::testing {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

bool InCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

std::string PrivilegeProblem() {
  if (geteuid() != 0) return "privileged test needs root";
  if (access("/dev/loop-control", F_OK) != 0) return "privileged test needs /dev/loop-control";
  return "";
}

std::string Quote(const std::string& arg) {
  std::string out = "'";
  for (char c : arg) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

std::string HotsnapBinary() {
  const char* env = std::getenv("HOTSNAP_BINARY");
  if (env != nullptr) return env;
  return HOTSNAP_BINARY;
}

CommandResult Run(const std::string& command) {
  TempDir tmp;
  std::string out_path = tmp.File("out");
  std::string err_path = tmp.File("err");
  std::string full = "(" + command + ") >" + Quote(out_path) + " 2>" + Quote(err_path);
  int status = std::system(full.c_str());
  CommandResult r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) r.exit_code = 128 + WTERMSIG(status);
  r.out = Slurp(out_path);
  r.err = Slurp(err_path);
  return r;
}

CommandResult RunOk(const std::string& command) {
  CommandResult r = Run(command);
  if (r.exit_code != 0) {
    ADD_FAILURE() << "command failed (exit " << r.exit_code << "): " << command << "\nstderr: "
                  << r.err;
  }
  return r;
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/hotsnap-test-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  char* made = mkdtemp(buf.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return;
  }
  path_ = made;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::string cmd = "rm -rf " + Quote(path_);
  if (std::system(cmd.c_str()) != 0) fprintf(stderr, "warning: could not remove %s\n", path_.c_str());
}

LoopDevice::LoopDevice(const std::string& dir, uint64_t size_bytes, const std::string& name)
    : file_(dir + "/" + name) {
  RunOk("truncate -s " + std::to_string(size_bytes) + " " + Quote(file_));
  CommandResult r = RunOk("losetup -f --show " + Quote(file_));
  device_ = r.out.substr(0, r.out.find('\n'));
  if (device_.empty()) ADD_FAILURE() << "losetup gave no device for " << file_;
}

LoopDevice::~LoopDevice() {
  if (!device_.empty()) {
    Run("losetup -d " + Quote(device_));
  }
  unlink(file_.c_str());
}

MountPoint::MountPoint(const std::string& device, const std::string& dir,
                       const std::string& options)
    : path_(dir) {
  mkdir(path_.c_str(), 0755);
  std::string opt = options.empty() ? "" : " -o " + Quote(options);
  CommandResult r = RunOk("mount" + opt + " " + Quote(device) + " " + Quote(path_));
  mounted_ = r.exit_code == 0;
}

MountPoint::~MountPoint() { Unmount(); }

void MountPoint::Unmount() {
  if (!mounted_) return;
  if (Run("umount " + Quote(path_)).exit_code != 0) Run("umount -l " + Quote(path_));
  mounted_ = false;
}

std::string ReadAll(const std::string& path) { return Slurp(path); }

std::string Sha256(const std::string& path) {
  CommandResult r = Run("sha256sum < " + Quote(path));
  return r.out.substr(0, 64);
}

}  // namespace hotsnap::testing
