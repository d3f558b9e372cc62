// Learning-rate schedules as pure functions of the position in the run
// (include/bnlab/optim/lr_schedule.hpp has the formulas and PyTorch's names).
#include "bnlab/optim/lr_schedule.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <numbers>

#include "bnlab/error.hpp"
#include "optim/chunks.hpp"

namespace bnlab::optim {
namespace {

constexpr const char* kForms =
    "constant, step:EPOCHS:GAMMA, multistep:E1,E2,...:GAMMA, cosine or onecycle";

// Long user text is cut in messages.
std::string quoted(const std::string& text) {
  return "\"" + (text.size() > 64 ? text.substr(0, 64) + "..." : text) + "\"";
}

[[noreturn]] void bad(const std::string& text, const std::string& why) {
  throw Error("lr schedule " + quoted(text) + ": " + why + " (expected " + kForms + ")");
}

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  size_t begin = 0;
  for (;;) {
    const size_t at = text.find(separator, begin);
    parts.push_back(text.substr(begin, at - begin));
    if (at == std::string::npos) return parts;
    begin = at + 1;
  }
}

int64_t positive_integer(const std::string& text, const std::string& part, const char* what) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), value);
  if (part.empty() || error != std::errc() || end != part.data() + part.size() || value < 1)
    bad(text, std::string(what) + " must be a positive integer, got " + quoted(part));
  return value;
}

double positive_number(const std::string& text, const std::string& part, const char* what) {
  char* end = nullptr;
  const double value = part.empty() ? 0.0 : std::strtod(part.c_str(), &end);
  if (part.empty() || end != part.c_str() + part.size() || !std::isfinite(value) || !(value > 0.0))
    bad(text, std::string(what) + " must be a finite number > 0, got " + quoted(part));
  return value;
}

}  // namespace

void LrSchedule::check_text(const std::string& text) { LrSchedule(text, 0.0, 1, 0); }

LrSchedule::LrSchedule(const std::string& text, double base_lr, int64_t epochs,
                       int64_t warmup_epochs)
    : text_(text), base_lr_(base_lr), epochs_(epochs), warmup_epochs_(warmup_epochs) {
  const std::vector<std::string> parts = split(text, ':');
  const std::string& name = parts[0];
  const auto expect_parts = [&](size_t count) {
    if (parts.size() != count)
      bad(text, name + " takes " + std::to_string(count - 1) + " ':'-separated values, got " +
                    std::to_string(parts.size() - 1));
  };
  if (name.empty() || name == "constant") {
    expect_parts(1);
    kind_ = Kind::constant;
  } else if (name == "step") {
    expect_parts(3);
    kind_ = Kind::step;
    step_size_ = positive_integer(text, parts[1], "the step size EPOCHS");
    gamma_ = positive_number(text, parts[2], "GAMMA");
  } else if (name == "multistep") {
    expect_parts(3);
    kind_ = Kind::multistep;
    for (const std::string& milestone : split(parts[1], ',')) {
      milestones_.push_back(positive_integer(text, milestone, "each milestone"));
      if (milestones_.size() > 1 && milestones_.back() <= milestones_[milestones_.size() - 2])
        bad(text, "the milestones must increase, got " + quoted(parts[1]));
    }
    gamma_ = positive_number(text, parts[2], "GAMMA");
  } else if (name == "cosine") {
    expect_parts(1);
    kind_ = Kind::cosine;
  } else if (name == "onecycle") {
    expect_parts(1);
    kind_ = Kind::onecycle;
  } else {
    bad(text, "unknown schedule " + quoted(name));
  }
  check_at_least("LrSchedule", "base lr", base_lr, 0.0);
  if (epochs < 1) throw Error("LrSchedule: epochs must be >= 1, got " + std::to_string(epochs));
  if (warmup_epochs < 0 || warmup_epochs >= epochs)
    throw Error("LrSchedule: warmup epochs must be in [0, epochs = " + std::to_string(epochs) +
                "), got " + std::to_string(warmup_epochs));
  if (warmup_epochs > 0 && kind_ == Kind::onecycle)
    throw Error(
        "LrSchedule: onecycle has its own warmup (the first 30% of the steps); warmup "
        "epochs must be 0 with it, got " +
        std::to_string(warmup_epochs));
}

// The schedule's factor of the base lr at epoch e' = e - W (stepped per epoch).
double LrSchedule::main_factor(int64_t e) const {
  switch (kind_) {
    case Kind::step:
      return std::pow(gamma_, static_cast<double>(e / step_size_));
    case Kind::multistep: {
      int64_t passed = 0;
      for (int64_t milestone : milestones_) passed += milestone <= e ? 1 : 0;
      return std::pow(gamma_, static_cast<double>(passed));
    }
    case Kind::cosine:
      return (1.0 + std::cos(std::numbers::pi * static_cast<double>(e) /
                             static_cast<double>(epochs_ - warmup_epochs_))) /
             2.0;
    default:
      return 1.0;
  }
}

/* OneCycleLR's two phases (PyTorch 1.13's get_lr, same operations):
 *   phase 1, t <= 0.3 T - 1:  anneal(lr / 25, lr, t / (0.3 T - 1))
 *   phase 2:                  anneal(lr, lr / 25 / 1e4, (t - (0.3 T - 1)) / (T - 1 - (0.3 T - 1)))
 *   anneal(start, end, pct) = end + (start - end) / 2 * (cos(pi pct) + 1) */
double LrSchedule::one_cycle(int64_t t, int64_t total_steps) const {
  const double initial_lr = base_lr_ / 25.0, max_lr = base_lr_, min_lr = initial_lr / 1e4;
  const double step = static_cast<double>(t);
  const double phase1_end = 0.3 * static_cast<double>(total_steps) - 1.0;
  const double phase2_end = static_cast<double>(total_steps - 1);
  const auto anneal = [](double start, double end, double pct) {
    return end + (start - end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1.0);
  };
  if (step <= phase1_end) return anneal(initial_lr, max_lr, step / phase1_end);
  return anneal(max_lr, min_lr, (step - phase1_end) / (phase2_end - phase1_end));
}

double LrSchedule::lr(int64_t epoch, int64_t step, int64_t steps_per_epoch) const {
  if (epoch < 0 || epoch >= epochs_)
    throw Error("LrSchedule::lr: epoch must be in [0, " + std::to_string(epochs_) + "), got " +
                std::to_string(epoch));
  if (steps_per_epoch < 1 || step < 0 || step >= steps_per_epoch)
    throw Error("LrSchedule::lr: step must be in [0, steps_per_epoch = " +
                std::to_string(steps_per_epoch) + "), got " + std::to_string(step));
  if (kind_ == Kind::onecycle)
    return one_cycle(epoch * steps_per_epoch + step, epochs_ * steps_per_epoch);
  if (epoch < warmup_epochs_)
    return base_lr_ *
           (kWarmupStartFactor + (1.0 - kWarmupStartFactor) * static_cast<double>(epoch) /
                                     static_cast<double>(warmup_epochs_));
  return base_lr_ * main_factor(epoch - warmup_epochs_);
}

}  // namespace bnlab::optim
