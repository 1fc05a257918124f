// `hotsnap agent SUBCOMMAND`: the agent daemon and its helpers, dispatched from one table in
// cli/agent_commands.cc (check-config; the daemon's run and status join it there).
#ifndef HOTSNAP_CLI_AGENT_COMMANDS_H_
#define HOTSNAP_CLI_AGENT_COMMANDS_H_

#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

// args: what follows "agent". No subcommand or an unknown one is a usage error (kUsage).
Status RunAgentCommand(const std::vector<std::string>& args);

}  // namespace hotsnap

#endif  // HOTSNAP_CLI_AGENT_COMMANDS_H_
