// The one command-line parser every subcommand uses (Boost.Program_options).
#ifndef HOTSNAP_CLI_PARSE_H_
#define HOTSNAP_CLI_PARSE_H_

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "base/status.h"
#include "io/image_chain.h"

namespace hotsnap {

struct Parsed {
  boost::program_options::variables_map vm;
  bool help = false;  // --help was given and printed; the command does nothing else
};

// Parses `args` against `options` (plus --help) and the named positionals, which are all
// required. A last positional whose name ends in "..." takes every remaining argument (one at
// least) as a std::vector<std::string>. On --help prints "usage: USAGE", the description and the options to stdout.
// Errors are kUsage and end with the usage line.
Result<Parsed> Parse(const std::vector<std::string>& args, const std::string& usage,
                     const std::string& description,
                     boost::program_options::options_description options,
                     const std::vector<std::string>& positionals);

// --chain DIR: where a delta image's parents are (io/image_chain.h). Adds the option with
// `dir` as its target.
void AddChainOption(boost::program_options::options_description* options, std::string* dir);
// The chain options for `dir` as given ("" = beside the image), made absolute so that a
// forked server finds them too; kUsage if DIR is not a directory.
Result<ChainOptions> ChainOptionsFor(const std::string& dir);

}  // namespace hotsnap

#endif  // HOTSNAP_CLI_PARSE_H_
