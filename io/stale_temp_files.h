// Temporary files that crashed hotsnap processes left behind.
//
// A backup (io/sink.h) and a restore into a file write under ".NAME.hotsnap-PID.tmp" beside
// the final name and rename at the end; a process killed before the rename (SIGKILL, OOM,
// power cut of the process) leaves that file. RemoveStaleTemporaryFiles() removes, in one
// directory, the regular files with such a name whose PID is no longer running — and only
// those: a live run's file (its PID exists) is kept, and so is anything else (a symlink, a
// directory, a name that merely looks similar). A PID reused by an unrelated process keeps
// the file until that process ends; that errs on the safe side.
#ifndef HOTSNAP_IO_STALE_TEMP_FILES_H_
#define HOTSNAP_IO_STALE_TEMP_FILES_H_

#include <string>
#include <vector>

#include "base/status.h"

namespace hotsnap {

struct StaleTempReport {
  std::vector<std::string> removed;  // paths removed
  std::vector<std::string> kept;     // "PATH (reason)" for temporary files left alone
};

// The PID in a temporary file name ".NAME.hotsnap-PID.tmp", or -1 if `name` is not one.
int TemporaryFilePid(const std::string& name);

// Removes the temporary files of dead processes in `dir` (not recursive). kTarget if the
// directory cannot be read or a file cannot be removed.
Status RemoveStaleTemporaryFiles(const std::string& dir, StaleTempReport* report);

}  // namespace hotsnap

#endif  // HOTSNAP_IO_STALE_TEMP_FILES_H_
