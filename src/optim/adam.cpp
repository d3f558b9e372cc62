// Adam, PyTorch's torch.optim.Adam (amsgrad off, L2 weight decay added to the
// gradient, not AdamW's decoupled decay).
#include <algorithm>
#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/optim/optimizer.hpp"
#include "optim/chunks.hpp"

namespace bnlab::optim {

Adam::Adam(std::vector<std::pair<std::string, nn::Parameter*>> params, double lr, double beta1,
           double beta2, double eps, double weight_decay)
    : Optimizer(std::move(params)), beta1(beta1), beta2(beta2), eps(eps), weight_decay(weight_decay) {
  if (!(lr >= 0.0)) throw Error("Adam: lr must be >= 0, got " + std::to_string(lr));
  if (!(beta1 >= 0.0 && beta1 < 1.0)) throw Error("Adam: beta1 must be in [0, 1), got " + std::to_string(beta1));
  if (!(beta2 >= 0.0 && beta2 < 1.0)) throw Error("Adam: beta2 must be in [0, 1), got " + std::to_string(beta2));
  if (!(eps >= 0.0)) throw Error("Adam: eps must be >= 0, got " + std::to_string(eps));
  if (!(weight_decay >= 0.0))
    throw Error("Adam: weight_decay must be >= 0, got " + std::to_string(weight_decay));
  this->lr = lr;
  m_.resize(params_.size());
  v_.resize(params_.size());
}

/* Step t (from 1), per parameter, one pass, as PyTorch 1.13's single-tensor Adam:
 *   g = grad + weight_decay * p
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
  const float eps_f = static_cast<float>(eps), wd = static_cast<float>(weight_decay);
  for (size_t index = 0; index < params_.size(); ++index) {
    nn::Parameter& param = *params_[index].second;
    check_grad_size("Adam", params_[index].first, param);
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
        const float g = grad[i] + wd * p[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        p[i] -= step_size * m[i] / (std::sqrt(v[i]) / sqrt_bc2 + eps_f);
      }
      if (zero) std::fill(grad + begin, grad + end, 0.0f);  // step_and_zero_grad
    });
  }
}

}  // namespace bnlab::optim
