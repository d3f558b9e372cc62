// The module interface every layer implements (PyTorch's nn.Module, trimmed to
// what training needs). forward/backward return references to tensors the
// module owns and reuses, so a training step allocates nothing once shapes are
// known. backward must follow the forward whose input it differentiates.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bnlab/tensor.hpp"

namespace bnlab::nn {

// A learnable tensor and its gradient (same shape).
struct Parameter {
  Tensor value;
  Tensor grad;
};

// A named non-learnable state tensor (running_mean, ...) or the int64
// num_batches_tracked counter, as PyTorch's state dict has them.
struct Buffer {
  std::string name;
  Tensor* tensor = nullptr;     // float buffer, or
  int64_t* counter = nullptr;   // an int64 scalar (num_batches_tracked)
};

class Module {
 public:
  virtual ~Module() = default;

  virtual const Tensor& forward(const Tensor& input) = 0;
  // Gradient w.r.t. the last forward's input; adds into parameter grads.
  virtual const Tensor& backward(const Tensor& grad_output) = 0;

  // PyTorch's repr, e.g. "Linear(in_features=784, out_features=512, bias=False)".
  virtual std::string repr() const = 0;
  // Shape out for a shape in; throws bnlab::Error naming the module on a mismatch.
  virtual Shape output_shape(const Shape& input) const = 0;

  // State-dict entries, PyTorch's names relative to this module ("weight", "bias", ...).
  virtual std::vector<std::pair<std::string, Parameter*>> parameters() { return {}; }
  virtual std::vector<Buffer> buffers() { return {}; }

  virtual void train(bool on = true) { training_ = on; }
  void eval() { train(false); }
  bool is_training() const { return training_; }

 protected:
  bool training_ = true;
};

using ModulePtr = std::unique_ptr<Module>;

}  // namespace bnlab::nn
