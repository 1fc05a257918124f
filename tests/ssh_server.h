// A real sshd for the ssh:// tests: Debian's openssh-server started on 127.0.0.1 with its
// own config, host key and authorized user key, all generated into a test's temporary
// directory, and the process helpers those tests use to find what it spawned.
#ifndef HOTSNAP_TESTS_SSH_SERVER_H_
#define HOTSNAP_TESTS_SSH_SERVER_H_

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "tests/test_util.h"

namespace hotsnap::testing {

inline constexpr char kSshd[] = "/usr/sbin/sshd";

// Empty if sshd and ssh are installed, else what is missing.
inline std::string SshToolsProblem() {
  if (access(kSshd, X_OK) != 0 || Run("command -v ssh").exit_code != 0) {
    return "needs openssh-server and openssh-client (scripts/packages.txt)";
  }
  return "";
}

// Every process's parent (from /proc).
inline std::map<pid_t, pid_t> ParentsOfAll() {
  std::map<pid_t, pid_t> parents;
  DIR* d = opendir("/proc");
  if (d == nullptr) return parents;
  while (dirent* e = readdir(d)) {
    pid_t pid = atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    std::getline(in, stat);
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state;
    pid_t ppid = 0;
    rest >> state >> ppid;
    parents[pid] = ppid;
  }
  closedir(d);
  return parents;
}

inline std::vector<pid_t> DescendantsOf(pid_t root) {
  auto parents = ParentsOfAll();
  std::vector<pid_t> out;
  for (const auto& [pid, ppid] : parents) {
    for (pid_t p = ppid; p > 1; p = parents.count(p) ? parents[p] : 0) {
      if (p == root) {
        out.push_back(pid);
        break;
      }
    }
  }
  return out;
}

inline std::string CommOf(pid_t pid) {
  std::string comm = ReadAll("/proc/" + std::to_string(pid) + "/comm");
  while (!comm.empty() && comm.back() == '\n') comm.pop_back();
  return comm;
}

inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

inline bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

// An sshd on 127.0.0.1:port with its own config, host key and authorized user key, all under
// `dir`. Stopped (with every session it spawned) on destruction.
class SshServer {
 public:
  // `extra_config`: more sshd_config lines (e.g. a ForceCommand that wraps every session).
  explicit SshServer(const std::string& dir, const std::string& extra_config = "") : dir_(dir) {
    RunOk("mkdir -p /run/sshd && chmod 0755 /run/sshd");  // sshd's privilege separation dir
    RunOk("ssh-keygen -q -t ed25519 -N '' -C hotsnap-test-host -f " + Quote(File("host_key")));
    RunOk("ssh-keygen -q -t ed25519 -N '' -C hotsnap-test-user -f " + Quote(File("id")));
    RunOk("cp " + Quote(File("id.pub")) + " " + Quote(File("authorized_keys")));
    port_ = FreePort();
    std::ofstream config(File("sshd_config"));
    config << "Port " << port_ << "\nListenAddress 127.0.0.1\nHostKey " << File("host_key")
           << "\nPidFile " << File("sshd.pid") << "\nAuthorizedKeysFile " << File("authorized_keys")
           << "\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
              "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n"
              "MaxStartups 50\nLogLevel ERROR\n"
           << extra_config;
    config.close();
    std::string host_pub = ReadAll(File("host_key.pub"));
    WriteFile(File("known_hosts"), "[127.0.0.1]:" + std::to_string(port_) + " " +
                                       host_pub.substr(0, host_pub.rfind(' ')) + "\n");
    pid_ = Spawn(std::string(kSshd) + " -D -e -f " + Quote(File("sshd_config")), File("sshd.out"),
                 File("sshd.log"));
    if (!WaitUntil([&] { return Accepts(port_); }, 20)) {
      ADD_FAILURE() << "sshd did not start: " << ReadAll(File("sshd.log"));
    }
  }
  ~SshServer() {
    for (pid_t p : DescendantsOf(pid_)) kill(p, SIGKILL);
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      WaitExit(pid_);
    }
  }
  SshServer(const SshServer&) = delete;
  SshServer& operator=(const SshServer&) = delete;

  std::string File(const std::string& name) const { return dir_ + "/" + name; }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  std::string Url(const std::string& remote_path) const {
    return "ssh://root@127.0.0.1:" + std::to_string(port_) + remote_path;
  }
  // --ssh-option arguments that make ssh trust this server (with `known_hosts`) and log in.
  std::string Options(const std::string& known_hosts = "") const {
    return " --ssh-option " +
           Quote("UserKnownHostsFile=" +
                 (known_hosts.empty() ? File("known_hosts") : known_hosts)) +
           " --ssh-option GlobalKnownHostsFile=/dev/null --ssh-option " +
           Quote("IdentityFile=" + File("id")) + " --ssh-option IdentitiesOnly=yes";
  }
  // Remote processes by name (comm), e.g. "cat".
  std::vector<pid_t> Remote(const std::string& comm) const {
    std::vector<pid_t> out;
    for (pid_t p : DescendantsOf(pid_)) {
      if (CommOf(p) == comm) out.push_back(p);
    }
    return out;
  }
  // The per-connection sshd processes.
  std::vector<pid_t> Sessions() const { return Remote("sshd"); }

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace hotsnap::testing

#endif  // HOTSNAP_TESTS_SSH_SERVER_H_
