// The agent's subcommands: `hotsnap agent run|status` and `hotsnap job list|run`. The daemon
// is daemon/agent.h; these parse arguments and talk to it over its control socket
// (daemon/control_socket.h). Registered in the table in cli/commands.cc.
#ifndef HOTSNAP_CLI_AGENT_COMMANDS_H_
#define HOTSNAP_CLI_AGENT_COMMANDS_H_

#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

Status RunAgentCommand(const std::vector<std::string>& args);  // agent run|status
Status RunJobCommand(const std::vector<std::string>& args);    // job list|run NAME

Status RunAgentRunCommand(const std::vector<std::string>& args);
Status RunAgentStatusCommand(const std::vector<std::string>& args);
Status RunJobListCommand(const std::vector<std::string>& args);
Status RunJobRunCommand(const std::vector<std::string>& args);

}  // namespace hotsnap

#endif  // HOTSNAP_CLI_AGENT_COMMANDS_H_
