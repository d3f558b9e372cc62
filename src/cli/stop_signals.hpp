// SIGINT and SIGTERM during bnlab train: the first one sets a flag the
// training loop reads after each step (it then saves and exits with 128 + the
// signal's number); a second one ends the process at once (default action).
//
// The signals are blocked in the thread that makes StopSignals (and so in the
// threads it starts later: OpenMP's, oneDNN's) and polled with poll(): a
// handler running in the middle of a oneDNN kernel was seen to corrupt its
// heap (an abort in dnnl_sgemm's free). Threads started before (MPI's) keep
// them unblocked and run the handler, which only sets the flag.
#pragma once

#include <atomic>
#include <csignal>

namespace bnlab::cli {

class StopSignals {
 public:
  StopSignals();   // installs the handler, blocks the signals in this thread
  ~StopSignals();  // unblocks them and puts the previous handlers back
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // Takes a pending SIGINT or SIGTERM (setting the flag); returns the flag.
  bool poll();
  const std::atomic<bool>* flag() const;
  // The signal that set the flag (SIGINT, SIGTERM), or 0.
  int signal() const;
  // "SIGINT", "SIGTERM"
  const char* signal_name() const;

 private:
  struct sigaction previous_int_ = {};
  struct sigaction previous_term_ = {};
  sigset_t signals_ = {}, previous_mask_ = {};
};

}  // namespace bnlab::cli
