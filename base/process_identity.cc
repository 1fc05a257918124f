#include "base/process_identity.h"

#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace hotsnap {
namespace {

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (in) std::getline(in, line);
  return line;
}

}  // namespace

std::string NowUtc() {
  char buf[32];
  time_t now = ::time(nullptr);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string HostName() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "";
  return buf;
}

uint64_t ProcessStartTicks(pid_t pid) {
  if (pid <= 0) return 0;
  std::string stat = ReadFirstLine("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos || paren + 2 > stat.size()) return 0;
  std::istringstream fields(stat.substr(paren + 2));
  std::string state;
  fields >> state;  // field 3
  if (state == "Z" || state == "X") return 0;
  std::string skip;
  for (int field = 4; field < 22 && fields >> skip; ++field) {
  }
  uint64_t start = 0;
  if (!(fields >> start)) return 0;
  return start;
}

std::string BootId() { return ReadFirstLine("/proc/sys/kernel/random/boot_id"); }

ProcessIdentity ProcessIdentity::Current() {
  ProcessIdentity id;
  id.pid = ::getpid();
  id.start_ticks = ProcessStartTicks(id.pid);
  id.boot_id = BootId();
  return id;
}

bool ProcessIdentity::Alive() const {
  if (pid <= 0 || start_ticks == 0 || boot_id.empty() || boot_id != BootId()) return false;
  return ProcessStartTicks(pid) == start_ticks;
}

void AddIdentityTo(const ProcessIdentity& identity, nlohmann::json* object) {
  (*object)["pid"] = identity.pid;
  (*object)["pid_start_ticks"] = identity.start_ticks;
  (*object)["boot_id"] = identity.boot_id;
}

ProcessIdentity IdentityFrom(const nlohmann::json& object) {
  ProcessIdentity id;
  if (!object.is_object()) return id;
  auto pid = object.find("pid");
  if (pid != object.end() && pid->is_number_integer()) id.pid = pid->get<pid_t>();
  auto ticks = object.find("pid_start_ticks");
  if (ticks != object.end() && ticks->is_number_unsigned()) id.start_ticks = ticks->get<uint64_t>();
  auto boot = object.find("boot_id");
  if (boot != object.end() && boot->is_string()) id.boot_id = boot->get<std::string>();
  return id;
}

std::string NewRunId() {
  unsigned char bytes[6];
  if (::getrandom(bytes, sizeof(bytes), 0) != static_cast<ssize_t>(sizeof(bytes))) {
    // getrandom cannot fail for 6 bytes after boot; fall back to pid and time anyway.
    uint64_t v = (static_cast<uint64_t>(::getpid()) << 24) ^ static_cast<uint64_t>(::time(nullptr));
    for (unsigned char& b : bytes) {
      b = v & 0xff;
      v >>= 8;
    }
  }
  char hex[13];
  for (int i = 0; i < 6; ++i) std::snprintf(hex + 2 * i, 3, "%02x", bytes[i]);
  return hex;
}

}  // namespace hotsnap
