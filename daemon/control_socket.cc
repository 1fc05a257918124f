#include "daemon/control_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace hotsnap {
namespace {

Status SetAddress(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr->sun_path)) {
    return Status(Code::kUsage, "socket path " + path + " is longer than " +
                                    std::to_string(sizeof(addr->sun_path) - 1) + " bytes");
  }
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return Status::Ok();
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Writes all of `text` (a blocking socket; answers are small).
void WriteAll(int fd, const std::string& text) {
  for (size_t done = 0; done < text.size();) {
    ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the peer went away: nothing to tell it
    done += static_cast<size_t>(n);
  }
}

bool SomeoneListens(const std::string& path) {
  sockaddr_un addr;
  if (!SetAddress(path, &addr).ok()) return false;
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  return fd.valid() && ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::Listen(const std::string& path,
                                                             ControlHandler handler) {
  sockaddr_un addr;
  HOTSNAP_RETURN_IF_ERROR(SetAddress(path, &addr));
  const std::string dir = DirOf(path);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno(Code::kTarget, errno, "creating " + dir);
  }
  if (SomeoneListens(path)) return Status(Code::kBusy, "another agent answers on " + path);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno(Code::kTarget, errno, "removing the stale socket " + path);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Status::FromErrno(Code::kInternal, errno, "socket");
  // Bound under a umask that leaves the owner alone, then 0600 for certain.
  mode_t old = ::umask(0177);
  int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  ::umask(old);
  if (bound != 0) return Status::FromErrno(Code::kTarget, err, "binding " + path);
  if (::chmod(path.c_str(), 0600) != 0)
    return Status::FromErrno(Code::kTarget, errno, "chmod of " + path);
  if (::listen(fd.get(), 16) != 0)
    return Status::FromErrno(Code::kInternal, errno, "listening on " + path);
  return std::unique_ptr<ControlServer>(new ControlServer(path, std::move(fd), std::move(handler)));
}

ControlServer::~ControlServer() {
  clients_.clear();
  if (listener_.valid()) (void)::unlink(path_.c_str());
}

std::vector<int> ControlServer::fds() const {
  std::vector<int> v{listener_.get()};
  for (const auto& [fd, client] : clients_) v.push_back(fd);
  return v;
}

void ControlServer::OnReadable(int fd) {
  if (fd == listener_.get()) {
    Accept();
  } else {
    Serve(fd);
  }
}

void ControlServer::Accept() {
  for (;;) {
    UniqueFd c(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c.valid()) return;  // EAGAIN: none left
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(c.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        cred.uid != kAllowedUid) {
      nlohmann::json refused = {
          {"ok", false},
          {"error", "permission denied: the hotsnap agent answers only root (uid " +
                        std::to_string(cred.uid) + " asked)"}};
      WriteAll(c.get(), refused.dump() + "\n");
      continue;  // closed here
    }
    int raw = c.get();
    clients_[raw] = {std::move(c), std::string()};
  }
}

void ControlServer::Serve(int fd) {
  auto it = clients_.find(fd);
  if (it == clients_.end()) return;
  char buf[4096];
  ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    clients_.erase(it);
    return;
  }
  std::string& pending = it->second.second;
  pending.append(buf, static_cast<size_t>(n));
  if (pending.size() > (1 << 20)) {  // no request is that long
    clients_.erase(it);
    return;
  }
  for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
    std::string line = pending.substr(0, nl);
    pending.erase(0, nl + 1);
    nlohmann::json answer;
    try {
      nlohmann::json request = nlohmann::json::parse(line);
      if (!request.is_object()) throw std::runtime_error("a request is a JSON object");
      answer = handler_(request);
    } catch (const std::exception& e) {
      answer = {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
    }
    WriteAll(fd, answer.dump() + "\n");
  }
}

Result<nlohmann::json> ControlRequest(const std::string& path, const nlohmann::json& request) {
  sockaddr_un addr;
  HOTSNAP_RETURN_IF_ERROR(SetAddress(path, &addr));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno(Code::kInternal, errno, "socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::FromErrno(Code::kUnsupported, errno,
                             "connecting to the agent at " + path + " (is it running?)");
  }
  WriteAll(fd.get(), request.dump() + "\n");
  std::string in;
  char buf[4096];
  while (in.find('\n') == std::string::npos) {
    ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return Status::FromErrno(Code::kInternal, errno, "reading from the agent at " + path);
    if (n == 0)
      return Status(Code::kInternal,
                    "the agent at " + path + " closed the connection without an answer");
    in.append(buf, static_cast<size_t>(n));
  }
  try {
    nlohmann::json answer = nlohmann::json::parse(in.substr(0, in.find('\n')));
    if (!answer.value("ok", false)) {
      // The agent's code, when it gives one ("busy": the job already runs); else a refusal.
      Code code = Code::kUsage;
      const std::string name = answer.value("code", std::string());
      for (Code c : {Code::kSource, Code::kTarget, Code::kInterrupted, Code::kUnsupported,
                     Code::kBusy, Code::kInternal}) {
        if (name == CodeName(c)) code = c;
      }
      return Status(code, answer.value("error", std::string("refused")));
    }
    return answer;
  } catch (const std::exception& e) {
    return Status(Code::kInternal, std::string("unreadable answer from the agent: ") + e.what());
  }
}

}  // namespace hotsnap
