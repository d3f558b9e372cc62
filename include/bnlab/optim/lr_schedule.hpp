// Learning-rate schedules, PyTorch's torch.optim.lr_scheduler definitions.
//
// The learning rate is a pure function of (epoch, step within the epoch, steps
// per epoch) and of the schedule's settings (its text, the base lr, the run's
// total epochs, the warmup epochs): no state moves from step to step, so a run
// resumed at any epoch and step (with the same settings and --epochs) uses
// exactly the learning rates an uninterrupted run would.
//
// Schedules (the text of --lr-schedule; E = total epochs, W = warmup epochs,
// e = epoch from 0, lr = the base learning rate):
//   constant (or "")        lr                                 no scheduler
//   step:N:GAMMA            lr * GAMMA^floor(e' / N)           StepLR(step_size=N, gamma=GAMMA)
//   multistep:M1,M2,..:GAMMA lr * GAMMA^(count of Mi <= e')    MultiStepLR(milestones, gamma)
//   cosine                  lr * (1 + cos(pi e' / (E - W))) / 2 CosineAnnealingLR(T_max=E-W, eta_min=0)
//   onecycle                per step, see below                OneCycleLR(max_lr=lr, epochs=E,
//                                                               steps_per_epoch, cycle_momentum=False)
// where e' = e - W. These four are stepped once per epoch (scheduler.step()
// after each epoch, the usual PyTorch loop): every step of an epoch has the
// same lr. onecycle is stepped after every batch: with t = e * steps_per_epoch
// + step and T = E * steps_per_epoch, lr rises from lr/25 to lr over the first
// 0.3 T - 1 steps and falls to lr/25/1e4 at step T - 1, both by cosine
// annealing (PyTorch's defaults: pct_start 0.3, anneal_strategy 'cos',
// div_factor 25, final_div_factor 1e4). Momentum is not cycled: --momentum
// and --betas stay as given (PyTorch's cycle_momentum=False).
//
// Warmup (W > 0, not with onecycle), torchvision's reference recipe:
//   e < W:  lr * (0.01 + 0.99 * e / W)       LinearLR(start_factor=0.01, total_iters=W)
//   e >= W: the schedule above at e' = e - W SequentialLR([warmup, schedule], milestones=[W])
// so a cosine with warmup anneals over the E - W epochs after it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bnlab::optim {

class LrSchedule {
 public:
  // The warmup's first factor (torchvision's --lr-warmup-decay default).
  static constexpr double kWarmupStartFactor = 0.01;

  // Throws Error naming the text and what is wrong: an unknown name, a step
  // size or milestone that is not a positive integer (milestones increasing),
  // a gamma that is not a finite number > 0, base_lr not finite and >= 0,
  // epochs < 1, warmup_epochs outside [0, epochs), warmup with onecycle.
  LrSchedule(const std::string& text, double base_lr, int64_t epochs, int64_t warmup_epochs = 0);

  // Checks the text alone (what the constructor checks of it), for option parsing.
  static void check_text(const std::string& text);

  // The lr of step `step` (from 0) of epoch `epoch` (from 0) when an epoch has
  // steps_per_epoch steps. Throws Error for an epoch outside [0, epochs) or a
  // step outside [0, steps_per_epoch).
  double lr(int64_t epoch, int64_t step, int64_t steps_per_epoch) const;

  // True when the lr changes within an epoch (onecycle).
  bool per_step() const { return kind_ == Kind::onecycle; }
  const std::string& text() const { return text_; }

 private:
  enum class Kind { constant, step, multistep, cosine, onecycle };
  double main_factor(int64_t epoch_after_warmup) const;
  double one_cycle(int64_t t, int64_t total_steps) const;

  std::string text_;
  Kind kind_ = Kind::constant;
  double base_lr_ = 0.0;
  int64_t epochs_ = 1, warmup_epochs_ = 0;
  int64_t step_size_ = 1;
  std::vector<int64_t> milestones_;
  double gamma_ = 1.0;
};

}  // namespace bnlab::optim
