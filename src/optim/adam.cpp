// Adam and AdamW, PyTorch's torch.optim.Adam (amsgrad off, L2 weight decay
// added to the gradient) and torch.optim.AdamW (decoupled decay): one loop.
#include <algorithm>
#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/optim/optimizer.hpp"
#include "optim/chunks.hpp"

namespace bnlab::optim {

Adam::Adam(std::vector<std::pair<std::string, nn::Parameter*>> params, double lr, double beta1,
           double beta2, double eps, double weight_decay)
    : Adam(std::move(params), lr, beta1, beta2, eps, weight_decay, false) {}

Adam::Adam(std::vector<std::pair<std::string, nn::Parameter*>> params, double lr, double beta1,
           double beta2, double eps, double weight_decay, bool decoupled_weight_decay)
    : Optimizer(std::move(params)),
      beta1(beta1),
      beta2(beta2),
      eps(eps),
      weight_decay(weight_decay),
      decoupled_weight_decay_(decoupled_weight_decay) {
  const char* name = decoupled_weight_decay ? "AdamW" : "Adam";
  check_at_least(name, "lr", lr, 0.0);
  check_in_range(name, "beta1", beta1, 0.0, 1.0, false);
  check_in_range(name, "beta2", beta2, 0.0, 1.0, false);
  check_at_least(name, "eps", eps, 0.0);
  check_at_least(name, "weight_decay", weight_decay, 0.0);
  this->lr = lr;
  m_.resize(params_.size());
  v_.resize(params_.size());
}

AdamW::AdamW(std::vector<std::pair<std::string, nn::Parameter*>> params, double lr, double beta1,
             double beta2, double eps, double weight_decay)
    : Adam(std::move(params), lr, beta1, beta2, eps, weight_decay, true) {}

/* Step t (from 1), per parameter, one pass, as PyTorch 1.13's single-tensor Adam
 * and AdamW:
 *   Adam:  g = grad + weight_decay * p          AdamW: p *= 1 - lr * weight_decay, g = grad
 *   m = beta1 * m + (1 - beta1) * g,   v = beta2 * v + (1 - beta2) * g^2
 *   p -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
 * m and v start at zero and are allocated on the first step. */
void Adam::step() {
  ++t_;
  const double bias_correction1 = 1.0 - std::pow(beta1, static_cast<double>(t_));
  const double bias_correction2 = 1.0 - std::pow(beta2, static_cast<double>(t_));
  const float step_size = static_cast<float>(lr / bias_correction1);
  const float sqrt_bc2 = static_cast<float>(std::sqrt(bias_correction2));
  const float b1 = static_cast<float>(beta1), b2 = static_cast<float>(beta2);
  const float eps_f = static_cast<float>(eps);
  // One of the two decays is the identity: l2 = 0 (AdamW) or shrink = 1 (Adam), both exact.
  const float l2 = decoupled_weight_decay_ ? 0.0f : static_cast<float>(weight_decay);
  const float shrink = decoupled_weight_decay_ ? static_cast<float>(1.0 - lr * weight_decay) : 1.0f;
  const char* name = decoupled_weight_decay_ ? "AdamW" : "Adam";
  for (size_t index = 0; index < params_.size(); ++index) {
    nn::Parameter& param = *params_[index].second;
    check_grad_size(name, params_[index].first, param);
    const int64_t numel = param.value.numel();
    if (t_ == 1) {
      m_[index] = Tensor(param.value.shape(), 0.0f);
      v_[index] = Tensor(param.value.shape(), 0.0f);
    }
    float* p = param.value.data();
    float* grad = param.grad.data();
    const bool zero = zero_after_step_;
    float* m = m_[index].data();
    float* v = v_[index].data();
    for_chunks(numel, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        p[i] *= shrink;
        const float g = grad[i] + l2 * p[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        p[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + eps_f);
      }
      if (zero) std::fill(grad + begin, grad + end, 0.0f);  // step_and_zero_grad
    });
  }
}

}  // namespace bnlab::optim
