// Optimizers, PyTorch's update rules exactly.
//   SGD:  g = grad + wd*p;  if momentum: b = momentum*b + g (b = g on the first
//         step), g = b;  p -= lr*g
//   Adam: g = grad + wd*p; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2;
//         p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "bnlab/nn/module.hpp"

namespace bnlab::optim {

// An optimizer's state between two steps, what a resumed run needs to continue
// exactly: per-parameter tensors named "<parameter>.<PyTorch's state name>"
// ("1.weight.momentum_buffer", "1.weight.exp_avg") and counters ("step").
struct OptimizerState {
  std::vector<std::pair<std::string, Tensor>> tensors;
  std::vector<std::pair<std::string, int64_t>> counters;
};

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
  // Export and restore the state (src/optim/optimizer_state.cpp). load_state
  // throws Error naming the entry that is unknown, missing or of another shape.
  virtual OptimizerState state() const;
  virtual void load_state(const OptimizerState& state);
  double lr = 0.01;
 protected:
  std::vector<std::pair<std::string, nn::Parameter*>> params_;
  bool zero_after_step_ = false;  // set by step_and_zero_grad for the update loops
};

class SGD : public Optimizer {
 public:
  SGD(std::vector<std::pair<std::string, nn::Parameter*>> params, double lr, double momentum = 0.0,
      double weight_decay = 0.0);
  void step() override;
  OptimizerState state() const override;
  void load_state(const OptimizerState& state) override;
  double momentum, weight_decay;
 private:
  std::vector<Tensor> momentum_buffers_;
  bool first_ = true;
};

class Adam : public Optimizer {
 public:
  Adam(std::vector<std::pair<std::string, nn::Parameter*>> params, double lr = 1e-3,
       double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8, double weight_decay = 0.0);
  void step() override;
  OptimizerState state() const override;
  void load_state(const OptimizerState& state) override;
  double beta1, beta2, eps, weight_decay;
 private:
  std::vector<Tensor> m_, v_;
  int64_t t_ = 0;
};

}  // namespace bnlab::optim
