// SGD with momentum, dampening, Nesterov and weight decay, PyTorch's
// torch.optim.SGD (1.13, maximize off).
#include <algorithm>

#include "bnlab/error.hpp"
#include "bnlab/optim/optimizer.hpp"
#include "optim/chunks.hpp"

namespace bnlab::optim {

SGD::SGD(std::vector<std::pair<std::string, nn::Parameter*>> params, double lr, double momentum,
         double weight_decay, double dampening, bool nesterov)
    : Optimizer(std::move(params)),
      momentum(momentum),
      weight_decay(weight_decay),
      dampening(dampening),
      nesterov(nesterov) {
  check_at_least("SGD", "lr", lr, 0.0);
  check_at_least("SGD", "momentum", momentum, 0.0);
  check_at_least("SGD", "weight_decay", weight_decay, 0.0);
  check_in_range("SGD", "dampening", dampening, 0.0, 1.0, true);
  // PyTorch's own rule (torch.optim.SGD raises the same).
  if (nesterov && (momentum <= 0.0 || dampening != 0.0))
    throw Error("SGD: nesterov requires momentum > 0 and dampening 0, got momentum " +
                hyperparameter_text(momentum) + " and dampening " + hyperparameter_text(dampening));
  this->lr = lr;
  momentum_buffers_.resize(params_.size());
}

/* Per parameter p with gradient grad, one pass:
 *   g = grad + weight_decay * p
 *   momentum > 0: b = momentum * b + (1 - dampening) * g (b = g on the first step),
 *                 g = nesterov ? g + momentum * b : b
 *   p -= lr * g
 *   grad = 0 (step_and_zero_grad only)
 * Momentum buffers are allocated on the first step, never after. */
void SGD::step() {
  const float lr_f = static_cast<float>(lr), wd = static_cast<float>(weight_decay),
              mom = static_cast<float>(momentum), keep = static_cast<float>(1.0 - dampening);
  for (size_t index = 0; index < params_.size(); ++index) {
    nn::Parameter& param = *params_[index].second;
    check_grad_size("SGD", params_[index].first, param);
    float* p = param.value.data();
    float* grad = param.grad.data();
    const int64_t numel = param.value.numel();
    const bool zero = zero_after_step_;
    if (momentum == 0.0) {
      for_chunks(numel, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) p[i] -= lr_f * (grad[i] + wd * p[i]);
        if (zero) std::fill(grad + begin, grad + end, 0.0f);
      });
      continue;
    }
    Tensor& buffer = momentum_buffers_[index];
    if (first_) buffer.resize(param.value.shape());
    float* b = buffer.data();
    const bool first = first_, look_ahead = nesterov;
    for_chunks(numel, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float g = grad[i] + wd * p[i];
        b[i] = first ? g : mom * b[i] + keep * g;
        p[i] -= lr_f * (look_ahead ? g + mom * b[i] : b[i]);
      }
      if (zero) std::fill(grad + begin, grad + end, 0.0f);
    });
  }
  first_ = false;
}

}  // namespace bnlab::optim
