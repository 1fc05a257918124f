// Diagnostics to stderr, prefixed "hotsnap: ". Thread-safe.
//
// Notices are for the operator (a fallback taken, a summary). Quiet mode suppresses
// notices but never errors.
#ifndef HOTSNAP_BASE_LOG_H_
#define HOTSNAP_BASE_LOG_H_

#include <string>

namespace hotsnap {

void SetQuiet(bool quiet);
// While a filesystem is frozen, stderr may be a file on it and a write would block until
// the thaw: buffer every line in memory instead, and flush when buffering ends.
void SetLogBuffering(bool buffering);
void Notice(const std::string& line);
void Error(const std::string& line);

}  // namespace hotsnap

#endif  // HOTSNAP_BASE_LOG_H_
