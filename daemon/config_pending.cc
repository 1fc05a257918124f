// Stands in for daemon/config.cc (the toml++ parser, on its own branch) so that this branch
// links: every configuration is refused. Delete this file, and its line in CMakeLists.txt,
// when config.cc is merged.
#include "daemon/config.h"

namespace hotsnap {

Result<AgentConfig> ParseAgentConfig(const std::string& text, const std::string& path,
                                     const ScheduleValidator& validate_schedule) {
  return Status(Code::kUnsupported,
                path + ": this build has no configuration parser yet (daemon/config.cc)");
}

Result<AgentConfig> LoadAgentConfig(const std::string& path,
                                    const ScheduleValidator& validate_schedule) {
  return ParseAgentConfig("", path, validate_schedule);
}

}  // namespace hotsnap
