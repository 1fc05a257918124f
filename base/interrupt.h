// Interrupt handling: SIGINT/SIGTERM set a flag that long-running loops poll.
//
// The handlers are installed without SA_RESTART, so a blocking read(), write() or
// poll() in the thread that receives the signal returns EINTR; callers then check
// Interrupted() and unwind through their destructors (which remove temporary files).
// Worker threads block these signals (see BlockInterruptSignals) so that only the
// thread doing I/O receives them.
#ifndef HOTSNAP_BASE_INTERRUPT_H_
#define HOTSNAP_BASE_INTERRUPT_H_

namespace hotsnap {

void InstallInterruptHandlers();
bool Interrupted();
// The signal number that interrupted us (SIGINT or SIGTERM), or 0.
int InterruptSignal();
// Blocks SIGINT/SIGTERM in the calling thread (call at the start of worker threads).
void BlockInterruptSignals();
// For tests: forget a previous interrupt.
void ResetInterruptForTest();

}  // namespace hotsnap

#endif  // HOTSNAP_BASE_INTERRUPT_H_
