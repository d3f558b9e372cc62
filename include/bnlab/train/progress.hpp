// Progress for long work: a bar with a rate and an estimate of the time left
// when stderr is a terminal, plain lines (at most one every few seconds)
// when it is not. Shared by the CLI and the lab.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace bnlab {

class Progress {
 public:
  // label: "epoch 3/10"; total: units of work (steps); unit: "img" for the rate.
  Progress(std::string label, int64_t total, std::string unit = "img");
  // done units so far, items processed (for the rate), a status such as "loss 0.412".
  void update(int64_t done, int64_t items, const std::string& status);
  void finish(const std::string& status);  // final line
  static bool is_terminal();
 private:
  std::string label_, unit_;
  int64_t total_;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace bnlab
