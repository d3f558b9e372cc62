// Optimizers, PyTorch 1.13's update rules exactly (torch.optim.SGD, Adam, AdamW).
//   SGD:   g = grad + wd*p;  if momentum: b = momentum*b + (1-dampening)*g (b = g
//          on the first step), g = nesterov ? g + momentum*b : b;  p -= lr*g
//   Adam:  g = grad + wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
//          p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)
//   AdamW: Adam with g = grad and p *= 1 - lr*wd first (decoupled weight decay)
//   clip_grad_norm_: torch.nn.utils.clip_grad_norm_ over the gradients
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "bnlab/nn/module.hpp"

namespace bnlab::optim {

class Optimizer {
 public:
  explicit Optimizer(std::vector<std::pair<std::string, nn::Parameter*>> params)
      : params_(std::move(params)) {}
  virtual ~Optimizer() = default;
  virtual void step() = 0;
  void zero_grad();
  // step() then zero_grad() in one pass over each gradient (the update reads
  // it, then writes 0 while its cache line is still there): what a training
  // loop does between two batches, cheaper than the two calls.
  void step_and_zero_grad();
  // The parameters it updates, in the order given (clip_grad_norm_ reads their gradients).
  const std::vector<std::pair<std::string, nn::Parameter*>>& parameters() const { return params_; }
  double lr = 0.01;
 protected:
  std::vector<std::pair<std::string, nn::Parameter*>> params_;
  bool zero_after_step_ = false;  // set by step_and_zero_grad for the update loops
};

// PyTorch's checks: lr, momentum, weight_decay >= 0; nesterov needs momentum > 0
// and dampening 0 (dampening here also in [0, 1]). Error names the argument.
class SGD : public Optimizer {
 public:
  SGD(std::vector<std::pair<std::string, nn::Parameter*>> params, double lr, double momentum = 0.0,
      double weight_decay = 0.0, double dampening = 0.0, bool nesterov = false);
  void step() override;
  double momentum, weight_decay, dampening;
  bool nesterov;
 private:
  std::vector<Tensor> momentum_buffers_;
  bool first_ = true;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<std::pair<std::string, nn::Parameter*>> params, double lr = 1e-3,
       double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0.0);
  void step() override;
  double beta1, beta2, eps, weight_decay;
 protected:
  Adam(std::vector<std::pair<std::string, nn::Parameter*>> params, double lr, double beta1,
       double beta2, double eps, double weight_decay, bool decoupled_weight_decay);
 private:
  std::vector<Tensor> m_, v_;
  int64_t t_ = 0;
  bool decoupled_weight_decay_ = false;  // AdamW
};

// torch.optim.AdamW: weight decay shrinks p by lr*wd before the Adam step
// instead of entering the moments (Loshchilov & Hutter, 2019); PyTorch's
// default weight_decay is 0.01.
class AdamW : public Adam {
 public:
  AdamW(std::vector<std::pair<std::string, nn::Parameter*>> params, double lr = 1e-3,
        double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weight_decay = 1e-2);
};

/* torch.nn.utils.clip_grad_norm_(params, max_norm) with the 2-norm:
 *   total = sqrt(sum over every parameter's gradient of g^2)   (summed in double)
 *   coef = max_norm / (total + 1e-6);  coef < 1: every gradient *= coef
 * Returns total (before clipping; NaN or Inf when a gradient is). Throws Error
 * when max_norm is not finite and > 0. The result does not depend on the thread count. */
double clip_grad_norm_(const std::vector<std::pair<std::string, nn::Parameter*>>& params,
                       double max_norm);

}  // namespace bnlab::optim
