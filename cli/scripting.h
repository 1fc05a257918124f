// Options shared by the commands for scripting and remote use, and the JSON result events:
//   --json, --events-fd N         line-delimited JSON events (agent/events.h)
//   --ssh-option OPT              passed to ssh as -o OPT for ssh:// images and destinations
//   --io-priority CLASS, --nice N lower hotsnap's I/O and CPU priority
//   --rate-limit MB/s             (backup) pace the reads
#ifndef HOTSNAP_CLI_SCRIPTING_H_
#define HOTSNAP_CLI_SCRIPTING_H_

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include "agent/backup_job.h"
#include "agent/image_jobs.h"
#include "base/status.h"

namespace hotsnap {

void AddEventOptions(boost::program_options::options_description* d);
// Starts the events for `command` when --json or --events-fd was given. With events on
// stderr, notices and the progress line are turned off (stderr carries only JSON); returns
// whether that happened in *events_on_stderr.
Status SetUpEvents(const boost::program_options::variables_map& vm, const std::string& command,
                   bool* events_on_stderr);

void AddSshOptions(boost::program_options::options_description* d, std::vector<std::string>* out);
// Checks --ssh-option values and, if `location` is an ssh:// URL, the URL (kUsage).
Status CheckSshArguments(const std::vector<std::string>& ssh_options, const std::string& location);

void AddPriorityOptions(boost::program_options::options_description* d);
// Applies --io-priority and --nice; call before the job starts any thread.
Status ApplyPriorityOptions(const boost::program_options::variables_map& vm);

void AddRateLimitOption(boost::program_options::options_description* d);
// --rate-limit in bytes per second (0: none).
Result<uint64_t> RateLimitBytesPerSecond(const boost::program_options::variables_map& vm);

// The "result" events.
void EmitBackupResult(const BackupReport& r);
void EmitRestoreResult(const RestoreOptions& o, const RestoreReport& r);
void EmitVerifyResult(const std::string& image, const VerifyReport& r);

// --dry-run: prints the plan on stdout and emits it as a "plan" event.
void PrintPlan(const BackupPlan& plan);

}  // namespace hotsnap

#endif  // HOTSNAP_CLI_SCRIPTING_H_
