// A small local HTTP server for Prometheus: GET (or HEAD) /metrics answers with the text
// the caller's source renders (daemon/metrics.h); any other path is 404, any other method
// 405, a malformed request 400. One request per connection (Connection: close).
//
// Single-threaded and non-blocking, for the daemon's event loop: poll fd() for POLLIN and
// call HandleReadable() when it is readable. fd() is an epoll descriptor holding the
// listening socket and every open connection, so one fd covers them all and a slow client
// never blocks the loop. At most kMaxConnections are open at once; a new one beyond that
// closes the oldest. A request larger than kMaxRequestBytes is answered 400. Only the request
// head is read: a client that sends a body or a second request may see its connection reset
// after the response (Prometheus sends neither).
//
// The listener binds HOST:PORT ("127.0.0.1:9977", "[::1]:9977", "localhost:9977": the first
// address the name resolves to); port 0 picks a free port, see port(). The metrics carry no
// secrets but the agent's job names: keep it on loopback unless the network is trusted.
// Move-only; the destructor closes the listener and every connection.
#ifndef HOTSNAP_DAEMON_METRICS_SERVER_H_
#define HOTSNAP_DAEMON_METRICS_SERVER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "base/status.h"
#include "base/unique_fd.h"

namespace hotsnap {

class MetricsServer {
 public:
  static constexpr size_t kMaxConnections = 16;
  static constexpr size_t kMaxRequestBytes = 8192;

  // Called for each GET /metrics: the exposition text to send.
  using Source = std::function<std::string()>;

  // kUsage for an address that is not HOST:PORT or does not resolve, kInternal if it
  // cannot be bound.
  static Result<MetricsServer> Listen(const std::string& address, Source source);

  MetricsServer(MetricsServer&&) noexcept = default;
  MetricsServer& operator=(MetricsServer&&) noexcept = default;
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int fd() const { return epoll_.get(); }
  uint16_t port() const { return port_; }  // the bound port (useful after port 0)

  // Accepts waiting connections, reads requests, writes responses, closes finished
  // connections; never blocks. An error on one connection closes it and is not returned:
  // only a failure of the listener or the epoll set itself is.
  Status HandleReadable();

  size_t open_connections() const { return connections_.size(); }

 private:
  struct Connection {
    UniqueFd fd;
    uint64_t key = 0;  // accept serial: the epoll key, and the map's order (oldest first)
    std::string request;
    std::string response;
    size_t sent = 0;
    bool responding = false;
  };

  MetricsServer(UniqueFd epoll, UniqueFd listener, uint16_t port, Source source)
      : epoll_(std::move(epoll)),
        listener_(std::move(listener)),
        port_(port),
        source_(std::move(source)) {}

  Status AcceptAll();
  // Reads and answers; returns false when the connection is finished (to be closed).
  bool Serve(Connection& c, uint32_t events);
  std::string Respond(const std::string& request) const;
  void Close(uint64_t key);

  UniqueFd epoll_;
  UniqueFd listener_;
  uint16_t port_ = 0;
  Source source_;
  uint64_t next_serial_ = 0;
  std::map<uint64_t, Connection> connections_;  // by key
};

}  // namespace hotsnap

#endif  // HOTSNAP_DAEMON_METRICS_SERVER_H_
