#include "bnlab/optim.hpp"

namespace bnlab::optim {

void Optimizer::zero_grad() {
  for (auto& [name, param] : params_) param->grad.fill(0.0f);
}

}  // namespace bnlab::optim
