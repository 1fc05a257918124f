// CrashPoint: lets tests kill hotsnap at a named phase, to prove what a crash there leaves
// behind (a frozen filesystem, a temporary file, a half-written target).
//
// Compiled in but inert: unless the environment variable HOTSNAP_CRASH_AT names the phase,
// CrashPoint() is one branch on a cached value. HOTSNAP_CRASH_AT=NAME SIGKILLs the process
// at the first CrashPoint(NAME); HOTSNAP_CRASH_AT=NAME:N at the N-th. SIGKILL, not abort():
// no destructor, atexit handler or signal handler runs, exactly like the OOM killer or a
// power cut of the process. Phases in use (see tests/crash_point_test.cc):
//   after-freeze    snapshot/freeze_view.cc  the filesystem was just frozen
//   mid-read        agent/backup_pipeline.cc a chunk was read from the source
//   mid-compress    agent/backup_pipeline.cc a chunk was handed to the compression workers
//   before-rename   io/sink.cc               the image is complete and fsynced, not yet renamed
//   after-link      io/sink.cc               link() made the final name (where renameat2 refuses
//                                            RENAME_NOREPLACE), the temporary name not yet removed
//   during-restore  agent/restore_job.cc     a chunk was written to the restore target
//   keep-retired    snapshot/lvm_kept.cc     replacing a kept thin snapshot: the old one renamed
//                                            hotsnap-prev-<origin> (tests/vm: thin_delta_changes)
//   keep-renamed    snapshot/lvm_kept.cc     the new one renamed hotsnap-keep-<origin>, not committed
//   keep-committed  snapshot/lvm_kept.cc     the new one committed, the old one not yet removed
//   merge-before-unlink  agent/merge_job.cc  the merged image replaced the delta, the old
//                                            parent not yet removed
// Thread-safe.
#ifndef HOTSNAP_BASE_CRASH_POINT_H_
#define HOTSNAP_BASE_CRASH_POINT_H_

namespace hotsnap {

void CrashPoint(const char* name);

}  // namespace hotsnap

#endif  // HOTSNAP_BASE_CRASH_POINT_H_
