// The stop flag behind StopSignals (stop_signals.hpp).
#include "stop_signals.hpp"

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
}

StopSignals::~StopSignals() {
  ::sigaction(SIGINT, &previous_int_, nullptr);
  ::sigaction(SIGTERM, &previous_term_, nullptr);
}

const std::atomic<bool>* StopSignals::flag() const { return &g_stop; }
int StopSignals::signal() const { return g_signal; }
const char* StopSignals::signal_name() const { return g_signal == SIGINT ? "SIGINT" : "SIGTERM"; }

}  // namespace bnlab::cli
