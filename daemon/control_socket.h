// The agent's control socket: a unix stream socket (AgentConfig::socket_path) over which
// `hotsnap agent status`, `hotsnap job list` and `hotsnap job run NAME` talk to the agent.
//
// Protocol: line-delimited JSON. Each request is one object on one line, {"request":
// "status"} | {"request": "job list"} | {"request": "job run", "job": NAME}; each answer is
// one object on one line, with "ok": true and the request's members, or "ok": false and
// "error": MESSAGE. A connection may carry several requests, answered in order.
//
// Access: the socket is created mode 0600 in a directory created 0700, and every peer is
// checked with SO_PEERCRED: only uid 0 is served; any other gets one error line and is
// disconnected (the socket's mode alone could be widened by a mistaken chmod).
//
// Thread-safety: a ControlServer is used by the agent's event loop thread only.
#ifndef HOTSNAP_DAEMON_CONTROL_SOCKET_H_
#define HOTSNAP_DAEMON_CONTROL_SOCKET_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/status.h"
#include "base/unique_fd.h"

namespace hotsnap {

// Answers one request (a parsed object) with one object.
using ControlHandler = std::function<nlohmann::json(const nlohmann::json& request)>;

class ControlServer {
 public:
  // Creates the socket's directory (0700) if missing, removes a stale socket file left by a
  // dead agent (refuses if a live one answers there: kBusy), binds and listens.
  static Result<std::unique_ptr<ControlServer>> Listen(const std::string& path,
                                                       ControlHandler handler);
  ~ControlServer();  // closes every connection and removes the socket file
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // The descriptors to poll for input: the listening socket and every connection.
  std::vector<int> fds() const;
  // Handles input on `fd` (one of fds()): accepts, or reads and answers complete lines.
  void OnReadable(int fd);
  // The peer uid allowed (0). Tests of the refusal need no other setting.
  static constexpr uid_t kAllowedUid = 0;

 private:
  ControlServer(std::string path, UniqueFd listener, ControlHandler handler)
      : path_(std::move(path)), listener_(std::move(listener)), handler_(std::move(handler)) {}
  void Accept();
  void Serve(int fd);

  std::string path_;
  UniqueFd listener_;
  ControlHandler handler_;
  std::map<int, std::pair<UniqueFd, std::string>> clients_;  // fd -> (owner, unread input)
};

// The client side: connects to `path`, sends `request`, returns the answer. kUnsupported
// ("is the agent running?") when nothing listens; kUsage when the agent refuses.
Result<nlohmann::json> ControlRequest(const std::string& path, const nlohmann::json& request);

}  // namespace hotsnap

#endif  // HOTSNAP_DAEMON_CONTROL_SOCKET_H_
