// SIGINT and SIGTERM during bnlab train: the first one sets a flag the
// training loop reads after each step (it then saves and exits with 128 + the
// signal's number); a second one ends the process at once (default action).
#pragma once

#include <atomic>
#include <csignal>

namespace bnlab::cli {

class StopSignals {
 public:
  StopSignals();   // installs the handlers
  ~StopSignals();  // puts the previous ones back
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  const std::atomic<bool>* flag() const;
  // The signal that set the flag (SIGINT, SIGTERM), or 0.
  int signal() const;
  // "SIGINT", "SIGTERM"
  const char* signal_name() const;

 private:
  struct sigaction previous_int_ = {};
  struct sigaction previous_term_ = {};
};

}  // namespace bnlab::cli
