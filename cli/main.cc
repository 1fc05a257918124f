// hotsnap: block-level backups of running Linux servers into plain zstd images.
//
// main() only dispatches: it finds the subcommand in the table, runs it, and turns the
// Status into the documented exit code. Nothing below it ever calls exit().
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "agent/events.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"

namespace {

void PrintUsage(FILE* out) {
  std::fprintf(out,
               "usage: hotsnap COMMAND [ARGS]\n\n"
               "Back up Linux block devices into plain, seekable zstd images.\n\n"
               "commands:\n");
  for (const auto& c : hotsnap::Commands()) std::fprintf(out, "  %-9s %s\n", c.name, c.summary);
  std::fprintf(out,
               "\n'hotsnap COMMAND --help' describes a command's options.\n"
               "Exit codes: 0 ok, 1 internal error, 2 usage, 3 source error, 4 target error,\n"
               "5 integrity failure, 6 unsupported, 130/143 interrupted (SIGINT/SIGTERM).\n");
}

}  // namespace

int main(int argc, char** argv) {
  hotsnap::InstallInterruptHandlers();
  if (argc < 2) {
    PrintUsage(stderr);
    return hotsnap::kExitUsage;
  }
  std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintUsage(stdout);
    return hotsnap::kExitOk;
  }
  if (name == "--version" || name == "-V") {
    std::printf("hotsnap %s\n", HOTSNAP_VERSION);
    return hotsnap::kExitOk;
  }
  for (const auto& command : hotsnap::Commands()) {
    if (name != command.name) continue;
    std::vector<std::string> args(argv + 2, argv + argc);
    hotsnap::Status status;
    try {
      status = command.run(args);
    } catch (const std::exception& e) {
      status = hotsnap::Status(hotsnap::Code::kInternal, std::string("unexpected: ") + e.what());
    }
    int code = hotsnap::ExitCodeFor(status, hotsnap::InterruptSignal());
    if (!status.ok()) {
      hotsnap::EmitError(status, code);
      // With --json and no --events-fd, stderr carries JSON only: the error event says it.
      if (!hotsnap::EventsOnStderr()) hotsnap::Error(status.message());
    }
    return code;
  }
  std::fprintf(stderr, "hotsnap: unknown command '%s'\n\n", name.c_str());
  PrintUsage(stderr);
  return hotsnap::kExitUsage;
}
