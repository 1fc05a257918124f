#include <sys/stat.h>
#include <cerrno>
#include <cstdlib>
#include "cli/parse.h"

#include <iostream>

namespace po = boost::program_options;

namespace hotsnap {

Result<Parsed> Parse(const std::vector<std::string>& args, const std::string& usage,
                     const std::string& description, po::options_description options,
                     const std::vector<std::string>& positionals) {
  options.add_options()("help,h", "show this help");
  po::options_description hidden;
  po::positional_options_description pos;
  for (const auto& name : positionals) {
    bool many = name.size() > 3 && name.compare(name.size() - 3, 3, "...") == 0;
    if (many) {
      hidden.add_options()(name.c_str(), po::value<std::vector<std::string>>());
    } else {
      hidden.add_options()(name.c_str(), po::value<std::string>());
    }
    pos.add(name.c_str(), many ? -1 : 1);
  }
  po::options_description all;
  all.add(options).add(hidden);
  Parsed parsed;
  try {
    po::store(po::command_line_parser(args).options(all).positional(pos).run(), parsed.vm);
    po::notify(parsed.vm);
  } catch (const po::error& e) {
    return Status(Code::kUsage, std::string(e.what()) + "\nusage: " + usage);
  }
  if (parsed.vm.count("help")) {
    std::cout << "usage: " << usage << "\n\n" << description << "\n\n" << options << std::flush;
    parsed.help = true;
    return parsed;
  }
  for (const auto& name : positionals) {
    if (!parsed.vm.count(name)) {
      std::string shown = name.substr(0, name.find("..."));
      return Status(Code::kUsage, "missing " + shown + "\nusage: " + usage);
    }
  }
  return parsed;
}

void AddChainOption(boost::program_options::options_description* options, std::string* dir) {
  options->add_options()(
      "chain", boost::program_options::value<std::string>(dir),
      "DIR: where a delta image's parents are (default: the image's own directory); each is "
      "found by the name its child recorded, or by its image hash, and checked before use");
}

Result<ChainOptions> ChainOptionsFor(const std::string& dir) {
  ChainOptions chain;
  if (dir.empty()) return chain;
  char* real = ::realpath(dir.c_str(), nullptr);
  if (real == nullptr) return Status::FromErrno(Code::kUsage, errno, "--chain " + dir);
  chain.dir = real;
  std::free(real);
  struct stat st;
  if (::stat(chain.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return Status(Code::kUsage, "--chain " + dir + " is not a directory");
  }
  return chain;
}

}  // namespace hotsnap
