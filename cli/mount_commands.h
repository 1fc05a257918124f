// The subcommands that read images at random: cat, mount, umount, cleanup. Registered in
// the table in cli/commands.cc; kept here so that file stays small.
#ifndef HOTSNAP_CLI_MOUNT_COMMANDS_H_
#define HOTSNAP_CLI_MOUNT_COMMANDS_H_

#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

Status RunCatCommand(const std::vector<std::string>& args);
Status RunMountCommand(const std::vector<std::string>& args);
Status RunUmountCommand(const std::vector<std::string>& args);
Status RunCleanupCommand(const std::vector<std::string>& args);

}  // namespace hotsnap

#endif  // HOTSNAP_CLI_MOUNT_COMMANDS_H_
