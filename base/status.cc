#include "base/status.h"

#include <cstring>

namespace hotsnap {

const char* CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "ok";
    case Code::kUsage: return "usage";
    case Code::kSource: return "source";
    case Code::kTarget: return "target";
    case Code::kIntegrity: return "integrity";
    case Code::kInterrupted: return "interrupted";
    case Code::kUnsupported: return "unsupported";
    case Code::kBusy: return "busy";
    case Code::kInternal: return "internal";
  }
  return "unknown";
}

Status Status::FromErrno(Code code, int err, const std::string& context) {
  return Status(code, context + ": " + std::strerror(err), err);
}

Status Status::Wrap(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_, errno_);
}

Status Status::WithCleanup(const Status& cleanup) const {
  if (ok()) return cleanup;
  if (cleanup.ok()) return *this;
  return Status(code_, message_ + "; while cleaning up: " + cleanup.message(), errno_);
}

}  // namespace hotsnap
