// ProcessIdentity: which process, on which boot, holds something (an LVM snapshot lease, a
// source lock, a mount server record).
//
// A pid alone is not an identity: pids are reused. The identity is the pid, the process's
// start time (field 22 of /proc/PID/stat, in clock ticks since boot) and the boot id
// (/proc/sys/kernel/random/boot_id). A record naming a process is believed only while all
// three match a live process; a zombie counts as gone.
//
// Its JSON form is three members of an enclosing object: "pid", "pid_start_ticks",
// "boot_id" (the encoder and decoder below). Thread-safe: everything reads /proc afresh.
#ifndef HOTSNAP_BASE_PROCESS_IDENTITY_H_
#define HOTSNAP_BASE_PROCESS_IDENTITY_H_

#include <sys/types.h>

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>

namespace hotsnap {

struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_ticks = 0;  // /proc/PID/stat field 22: clock ticks after boot
  std::string boot_id;

  // The calling process.
  static ProcessIdentity Current();
  // Whether this process still runs: same boot, the pid exists, is not a zombie, and started
  // at the recorded time (so a reused pid is not mistaken for it).
  bool Alive() const;
};

// Start time of `pid` in clock ticks since boot; 0 if there is no such process or it is a
// zombie.
uint64_t ProcessStartTicks(pid_t pid);
// This boot's id (a UUID string); empty if /proc does not say.
std::string BootId();

// Writes the identity as the members "pid", "pid_start_ticks", "boot_id" of `object`.
void AddIdentityTo(const ProcessIdentity& identity, nlohmann::json* object);
// Reads those members back; missing or mistyped ones stay zero/empty (an identity that is
// never Alive()).
ProcessIdentity IdentityFrom(const nlohmann::json& object);

// A fresh random run id: 12 lowercase hex digits.
std::string NewRunId();

// The current time in UTC, ISO 8601 to the second ("2026-12-03T05:40:00Z").
std::string NowUtc();

// This machine's host name, or "" if it cannot be read.
std::string HostName();

}  // namespace hotsnap

#endif  // HOTSNAP_BASE_PROCESS_IDENTITY_H_
