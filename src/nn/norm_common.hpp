// What the normalization layers of norm_layers.hpp share: their affine
// parameters, the checks at the top of backward, adding a batch's gradients.
#pragma once

#include "bnlab/error.hpp"
#include "bnlab/nn/module.hpp"

namespace bnlab::nn {

// Weight 1 and bias 0 of `shape` (PyTorch's reset_parameters), grads zeroed,
// and the tensors the kernels write one batch's gradients into.
inline void init_affine(const Shape& shape, Parameter& weight, Parameter& bias,
                        Tensor& batch_grad_weight, Tensor& batch_grad_bias) {
  weight.value = Tensor(shape, 1.0f);
  weight.grad = Tensor(shape, 0.0f);
  bias.value = Tensor(shape, 0.0f);
  bias.grad = Tensor(shape, 0.0f);
  batch_grad_weight.resize(shape);
  batch_grad_bias.resize(shape);
}

// Throws naming the module when backward comes before any forward or the
// gradient's shape is not the input's.
inline void check_backward_args(const Module& module, const Tensor* input,
                                const Tensor& grad_output) {
  if (input == nullptr) throw Error(module.repr() + ": backward called before forward");
  if (grad_output.shape() != input->shape())
    throw Error(module.repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the input " + shape_string(input->shape()));
}

// grad += this batch's gradient.
inline void add_batch_grad(Parameter& parameter, const Tensor& batch_grad) {
  for (int64_t i = 0; i < batch_grad.numel(); ++i) parameter.grad[i] += batch_grad[i];
}

}  // namespace bnlab::nn
