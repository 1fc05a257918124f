// The subcommands: each parses its own options (Boost.Program_options) and calls one job.
// Parsing only: no work happens here beyond printing the job's report.
#ifndef HOTSNAP_CLI_COMMANDS_H_
#define HOTSNAP_CLI_COMMANDS_H_

#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

struct Command {
  const char* name;
  const char* summary;
  // args excludes the program and command names.
  Status (*run)(const std::vector<std::string>& args);
};

const std::vector<Command>& Commands();

}  // namespace hotsnap

#endif  // HOTSNAP_CLI_COMMANDS_H_
