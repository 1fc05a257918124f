#include "daemon/metrics_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace hotsnap {
namespace {

// The listener's epoll key; connections use their accept serial, from 0.
constexpr uint64_t kListenerKey = UINT64_MAX;

constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

// Splits "HOST:PORT" or "[V6HOST]:PORT"; false if it is neither.
bool SplitHostPort(const std::string& address, std::string* host, std::string* port) {
  size_t colon;
  if (!address.empty() && address[0] == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return false;
    }
    *host = address.substr(1, close - 1);
    colon = close + 1;
  } else {
    colon = address.rfind(':');
    if (colon == std::string::npos) return false;
    *host = address.substr(0, colon);
  }
  *port = address.substr(colon + 1);
  if (host->empty() || port->empty() || port->size() > 5) return false;
  for (char c : *port) {
    if (c < '0' || c > '9') return false;
  }
  return std::stoul(*port) <= 65535;
}

std::string HttpResponse(const std::string& status, const std::string& content_type,
                         const std::string& body, bool head, const std::string& extra = "") {
  std::string r = "HTTP/1.1 " + status + "\r\nContent-Type: " + content_type +
                  "\r\nContent-Length: " + std::to_string(body.size()) +
                  "\r\nConnection: close\r\n" + extra + "\r\n";
  if (!head) r += body;
  return r;
}

std::string PlainError(const std::string& status, bool head, const std::string& extra = "") {
  return HttpResponse(status, "text/plain; charset=utf-8", status + "\n", head, extra);
}

}  // namespace

Result<MetricsServer> MetricsServer::Listen(const std::string& address, Source source) {
  std::string host, port;
  if (!SplitHostPort(address, &host, &port)) {
    return Status(Code::kUsage,
                  "metrics address '" + address + "' is not HOST:PORT (e.g. 127.0.0.1:9977)");
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
  addrinfo* found = nullptr;
  int gai = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (gai != 0) {
    return Status(Code::kUsage, "metrics address '" + address + "': " + gai_strerror(gai));
  }
  std::string what = "listening for metrics on " + address;
  UniqueFd listener(socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listener.valid()) {
    freeaddrinfo(found);
    return Status::FromErrno(Code::kInternal, errno, what + ": socket");
  }
  int one = 1;
  // A restarted agent must rebind while the old connections sit in TIME_WAIT.
  setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (found->ai_family == AF_INET6) {
    setsockopt(listener.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  }
  // The first address the host resolves to (localhost: /etc/hosts decides which).
  int bound = bind(listener.get(), found->ai_addr, found->ai_addrlen);
  int bind_errno = errno;
  freeaddrinfo(found);
  if (bound != 0) return Status::FromErrno(Code::kInternal, bind_errno, what + ": bind");
  if (listen(listener.get(), static_cast<int>(kMaxConnections)) != 0) {
    return Status::FromErrno(Code::kInternal, errno, what + ": listen");
  }
  sockaddr_storage local{};
  socklen_t local_len = sizeof(local);
  if (getsockname(listener.get(), reinterpret_cast<sockaddr*>(&local), &local_len) != 0) {
    return Status::FromErrno(Code::kInternal, errno, what + ": getsockname");
  }
  uint16_t bound_port = local.ss_family == AF_INET6
                            ? ntohs(reinterpret_cast<sockaddr_in6*>(&local)->sin6_port)
                            : ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);

  UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return Status::FromErrno(Code::kInternal, errno, what + ": epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kListenerKey;
  if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, listener.get(), &ev) != 0) {
    return Status::FromErrno(Code::kInternal, errno, what + ": epoll_ctl");
  }
  return MetricsServer(std::move(epoll), std::move(listener), bound_port, std::move(source));
}

Status MetricsServer::HandleReadable() {
  epoll_event events[32];
  int n = epoll_wait(epoll_.get(), events, 32, 0);
  if (n < 0) {
    if (errno == EINTR) return Status::Ok();
    return Status::FromErrno(Code::kInternal, errno, "metrics server: epoll_wait");
  }
  // Events beyond these 32 keep fd() readable: the loop calls again.
  for (int i = 0; i < n; ++i) {
    uint64_t key = events[i].data.u64;
    if (key == kListenerKey) {
      HOTSNAP_RETURN_IF_ERROR(AcceptAll());
      continue;
    }
    // Keyed by accept serial, not fd: an fd evicted earlier in this batch and reused by a
    // new connection must not receive the old connection's events.
    auto it = connections_.find(key);
    if (it == connections_.end()) continue;
    if (!Serve(it->second, events[i].events)) Close(key);
  }
  return Status::Ok();
}

Status MetricsServer::AcceptAll() {
  for (;;) {
    int fd = accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::Ok();
      if (errno == EINTR || errno == ECONNABORTED) continue;
      // EMFILE and the like: the pending connection stays queued; report it.
      return Status::FromErrno(Code::kInternal, errno, "metrics server: accept");
    }
    UniqueFd owned(fd);
    // Serials only grow: the first entry is the oldest connection.
    if (connections_.size() >= kMaxConnections) Close(connections_.begin()->first);
    uint64_t key = next_serial_++;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = key;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      return Status::FromErrno(Code::kInternal, errno, "metrics server: epoll_ctl");
    }
    Connection& c = connections_[key];
    c.fd = std::move(owned);
    c.key = key;
  }
}

bool MetricsServer::Serve(Connection& c, uint32_t events) {
  if (!c.responding) {
    char buf[2048];
    bool eof = false;
    for (;;) {
      ssize_t n = recv(c.fd.get(), buf, sizeof(buf), 0);
      if (n > 0) {
        c.request.append(buf, static_cast<size_t>(n));
        if (c.request.size() > kMaxRequestBytes) break;
        continue;
      }
      if (n == 0) {  // the peer shut its side: answer what we have, if complete
        eof = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return false;
    }
    bool complete = c.request.find("\r\n\r\n") != std::string::npos ||
                    c.request.find("\n\n") != std::string::npos;
    if (c.request.size() > kMaxRequestBytes) {
      c.response = PlainError("400 Bad Request", false);
    } else if (complete) {
      c.response = Respond(c.request);
    } else if (eof || (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
      return false;  // gone before a whole request arrived
    } else {
      return true;  // wait for the rest
    }
    c.responding = true;
    epoll_event ev{};
    ev.events = EPOLLOUT;
    ev.data.u64 = c.key;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, c.fd.get(), &ev) != 0) return false;
  }
  while (c.sent < c.response.size()) {
    // MSG_NOSIGNAL: a client gone away is an EPIPE here, not a SIGPIPE for the agent.
    ssize_t n =
        send(c.fd.get(), c.response.data() + c.sent, c.response.size() - c.sent, MSG_NOSIGNAL);
    if (n > 0) {
      c.sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;  // when writable
    return false;
  }
  shutdown(c.fd.get(), SHUT_WR);
  return false;
}

std::string MetricsServer::Respond(const std::string& request) const {
  // Request line: METHOD SP TARGET SP HTTP-VERSION
  size_t eol = request.find('\n');
  std::string line = request.substr(0, eol);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  size_t sp1 = line.find(' ');
  size_t sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
  if (sp2 == std::string::npos || line.compare(sp2 + 1, 5, "HTTP/") != 0) {
    return PlainError("400 Bad Request", false);
  }
  std::string method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string path = target.substr(0, target.find('?'));
  bool head = method == "HEAD";
  if (path != "/metrics") return PlainError("404 Not Found", head);
  if (method != "GET" && !head)
    return PlainError("405 Method Not Allowed", false, "Allow: GET, HEAD\r\n");
  return HttpResponse("200 OK", kContentType, source_(), head);
}

void MetricsServer::Close(uint64_t key) {
  auto it = connections_.find(key);
  if (it == connections_.end()) return;
  epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.fd.get(), nullptr);
  connections_.erase(it);  // the UniqueFd closes it
}

}  // namespace hotsnap
