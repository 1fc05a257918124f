#include "cli/exit_codes.h"

#include <signal.h>

namespace hotsnap {

int ExitCodeFor(const Status& status, int interrupt_signal) {
  switch (status.code()) {
    case Code::kOk: return kExitOk;
    case Code::kUsage: return kExitUsage;
    case Code::kSource: return kExitSource;
    case Code::kTarget: return kExitTarget;
    case Code::kIntegrity: return kExitIntegrity;
    case Code::kUnsupported: return kExitUnsupported;
    case Code::kBusy: return kExitBusy;
    case Code::kInterrupted: return 128 + (interrupt_signal != 0 ? interrupt_signal : SIGINT);
    case Code::kInternal: return kExitInternal;
  }
  return kExitInternal;
}

}  // namespace hotsnap
