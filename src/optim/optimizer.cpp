#include "bnlab/optim/optimizer.hpp"

namespace bnlab::optim {

void Optimizer::zero_grad() {
  for (auto& [name, param] : params_) param->grad.fill(0.0f);
}

void Optimizer::step_and_zero_grad() {
  zero_after_step_ = true;
  try {
    step();
  } catch (...) {
    zero_after_step_ = false;
    throw;
  }
  zero_after_step_ = false;
}

}  // namespace bnlab::optim
