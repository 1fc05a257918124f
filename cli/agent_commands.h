// `hotsnap agent SUBCOMMAND`: the agent daemon and its helpers, dispatched from one table in
// cli/agent_commands.cc (run, status, check-config), and `hotsnap job list|run` that ask the
// running agent.
#ifndef HOTSNAP_CLI_AGENT_COMMANDS_H_
#define HOTSNAP_CLI_AGENT_COMMANDS_H_

#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

// args: what follows "agent". No subcommand or an unknown one is a usage error (kUsage).
Status RunAgentCommand(const std::vector<std::string>& args);
// args: what follows "job": list | run NAME.
Status RunJobCommand(const std::vector<std::string>& args);

// The subcommands talking to (or being) the daemon, daemon/agent.h.
Status RunAgentRunCommand(const std::vector<std::string>& args);
Status RunAgentStatusCommand(const std::vector<std::string>& args);
Status RunJobListCommand(const std::vector<std::string>& args);
Status RunJobRunCommand(const std::vector<std::string>& args);

}  // namespace hotsnap

#endif  // HOTSNAP_CLI_AGENT_COMMANDS_H_
