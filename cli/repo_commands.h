// The repository subcommands: list, check, prune (repo/). Registered in the table in
// cli/commands.cc; parsing and printing only.
#ifndef HOTSNAP_CLI_REPO_COMMANDS_H_
#define HOTSNAP_CLI_REPO_COMMANDS_H_

#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

Status RunListCommand(const std::vector<std::string>& args);
Status RunCheckCommand(const std::vector<std::string>& args);
Status RunPruneCommand(const std::vector<std::string>& args);

}  // namespace hotsnap

#endif  // HOTSNAP_CLI_REPO_COMMANDS_H_
