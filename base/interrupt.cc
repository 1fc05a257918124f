#include "base/interrupt.h"

#include <signal.h>

#include <atomic>
#include <cstring>

namespace hotsnap {
namespace {

std::atomic<int> g_signal{0};

void OnSignal(int signo) { g_signal.store(signo); }

}  // namespace

void InstallInterruptHandlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls must return EINTR
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  // A closed stdout pipe must become an EPIPE error we report, not a silent death.
  signal(SIGPIPE, SIG_IGN);
}

bool Interrupted() { return g_signal.load(std::memory_order_relaxed) != 0; }
int InterruptSignal() { return g_signal.load(); }

void BlockInterruptSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void ResetInterruptForTest() { g_signal.store(0); }

}  // namespace hotsnap
