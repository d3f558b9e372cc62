// The stop flag behind StopSignals (stop_signals.hpp).
#include "stop_signals.hpp"

#include <pthread.h>
#include <time.h>

namespace bnlab::cli {
namespace {

static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler stores a lock-free flag");
std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_signal = 0;

extern "C" void on_stop_signal(int signal) {
  g_signal = signal;
  g_stop.store(true);
}

}  // namespace

StopSignals::StopSignals() {
  g_stop.store(false);
  g_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  // One-shot: a second Ctrl-C kills at once, as a user pressing it twice wants.
  action.sa_flags = SA_RESETHAND | SA_RESTART;
  ::sigaction(SIGINT, &action, &previous_int_);
  ::sigaction(SIGTERM, &action, &previous_term_);
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  ::pthread_sigmask(SIG_BLOCK, &signals_, &previous_mask_);
}

StopSignals::~StopSignals() {
  poll();  // a signal still pending is taken here, not delivered on unblocking
  ::pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
  ::sigaction(SIGINT, &previous_int_, nullptr);
  ::sigaction(SIGTERM, &previous_term_, nullptr);
}

bool StopSignals::poll() {
  sigset_t pending;
  if (::sigpending(&pending) == 0 &&
      (sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1)) {
    const timespec no_wait{};
    const int signal = ::sigtimedwait(&signals_, nullptr, &no_wait);
    if (signal > 0 && !g_stop.load()) {
      g_signal = signal;
      g_stop.store(true);
      // One-shot, as the handler: a second signal ends the process at once.
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::pthread_sigmask(SIG_UNBLOCK, &signals_, nullptr);
    }
  }
  return g_stop.load();
}

const std::atomic<bool>* StopSignals::flag() const { return &g_stop; }
int StopSignals::signal() const { return g_signal; }
const char* StopSignals::signal_name() const { return g_signal == SIGINT ? "SIGINT" : "SIGTERM"; }

}  // namespace bnlab::cli
