// Events: a machine-readable account of a job as line-delimited JSON (--json, --events-fd).
//
// One JSON object per line, written with a single write(2) each so that lines never
// interleave. Every event has "event" (its kind), "command", "time" (UTC, RFC 3339) and
// "elapsed_s" (seconds since EnableEvents). The kinds and their fields are specified by
// docs/events.schema.json; keep the two in step.
//
// Process-wide, like the log: the CLI enables it once, the jobs emit. Thread-safe. Every
// Emit* is a no-op until EnableEvents() is called.
#ifndef HOTSNAP_AGENT_EVENTS_H_
#define HOTSNAP_AGENT_EVENTS_H_

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "base/status.h"

namespace hotsnap {

// Starts writing events to `fd` (not owned; must stay open) and emits the "start" event.
void EnableEvents(int fd, const std::string& command);
bool EventsEnabled();
// Whether the events go to stderr (which then carries nothing else).
bool EventsOnStderr();

// A new phase of the job begins ("open", "map", "read", "publish", "scan", ...); the
// previous phase ends. The result event lists how long each phase took.
void EmitPhase(const std::string& phase);

// Progress of the current phase (`phase` names it only when no EmitPhase came before):
// `done_bytes` of `total_bytes` (for a backup: bytes of the
// used data read; for restore/verify: device bytes processed), `output_bytes` produced so
// far (0 when not meaningful), the rate in bytes per second, and the estimated seconds left.
void EmitProgress(const std::string& phase, uint64_t done_bytes, uint64_t total_bytes,
                  uint64_t output_bytes, double rate_bytes_per_s, double eta_s);

// A filesystem freeze window (snapshot modes that freeze): how long writes were blocked.
void EmitFreezeWindow(const std::string& mountpoint, double frozen_s);

// Snapshot space: `used_bytes` of `size_bytes` of the copy-on-write area.
void EmitSnapshotFill(const std::string& snapshot, uint64_t used_bytes, uint64_t size_bytes);

// The plan of a --dry-run.
void EmitPlan(const nlohmann::ordered_json& plan);

// The job's result; `fields` are the command's sizes, hashes and timings. "ok": true and the
// per-phase timings ("phase_seconds") are added.
void EmitResult(nlohmann::ordered_json fields);

// The job failed with `status`, which the CLI turns into `exit_code`.
void EmitError(const Status& status, int exit_code);

}  // namespace hotsnap

#endif  // HOTSNAP_AGENT_EVENTS_H_
