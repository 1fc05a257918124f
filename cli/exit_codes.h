// Exit codes of the hotsnap command (documented in README.md and hotsnap.1).
#ifndef HOTSNAP_CLI_EXIT_CODES_H_
#define HOTSNAP_CLI_EXIT_CODES_H_

#include "base/status.h"

namespace hotsnap {

constexpr int kExitOk = 0;
constexpr int kExitInternal = 1;
constexpr int kExitUsage = 2;
constexpr int kExitSource = 3;
constexpr int kExitTarget = 4;
constexpr int kExitIntegrity = 5;
constexpr int kExitUnsupported = 6;
constexpr int kExitBusy = 7;  // another hotsnap run holds the source (or restore target)
// Interrupted: 128 + the signal number (130 for SIGINT, 143 for SIGTERM).

int ExitCodeFor(const Status& status, int interrupt_signal);

}  // namespace hotsnap

#endif  // HOTSNAP_CLI_EXIT_CODES_H_
