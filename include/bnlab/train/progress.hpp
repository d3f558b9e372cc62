// Progress for long work: a bar with a rate and an estimate of the time left
// when stderr is a terminal, plain lines (at most one every few seconds)
// when it is not. Shared by the CLI and the lab.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace bnlab {

// A loss for progress lines and tables: "0.4123", "1.234e+30" from 1e5 up
// (not 31 digits), "nan" / "inf" for a diverged run (printf writes "-nan").
std::string loss_text(double loss);

class Progress {
 public:
  // label: "epoch 3/10"; total: units of work (steps); unit: "img" for the rate.
  Progress(std::string label, int64_t total, std::string unit = "img");
  // done units so far, items processed (for the rate), a status such as "loss 0.412".
  void update(int64_t done, int64_t items, const std::string& status);
  // Final line; `done` units (default: all) for work that stopped early.
  void finish(const std::string& status, int64_t done = -1);
  static bool is_terminal();
 private:
  std::string label_, unit_;
  int64_t total_;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace bnlab
