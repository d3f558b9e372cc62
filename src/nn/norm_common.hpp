// What the normalization layers of norm_layers.hpp share: their affine
// parameters, the checks at the top of backward, adding a batch's gradients.
#pragma once

#include <cmath>
#include <string>
#include <utility>
#include <vector>

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

// PyTorch's state-dict entries of an affine norm layer and of running statistics.
inline std::vector<std::pair<std::string, Parameter*>> affine_parameters(Parameter& weight,
                                                                         Parameter& bias) {
  return {{"weight", &weight}, {"bias", &bias}};
}
inline std::vector<Buffer> running_stats_buffers(Tensor& mean, Tensor& var, int64_t& count) {
  return {{"running_mean", &mean, nullptr},
          {"running_var", &var, nullptr},
          {"num_batches_tracked", nullptr, &count}};
}

// BatchNorm's eval map: scale = weight / sqrt(running_var + eps),
// shift = bias - running_mean * scale; weight, bias null mean 1, 0.
inline ChannelAffine running_stats_affine(int64_t channels, const float* weight, const float* bias,
                                          const float* running_mean, const float* running_var,
                                          double eps) {
  ChannelAffine map;
  for (int64_t j = 0; j < channels; ++j) {
    const double gamma = weight ? weight[j] : 1.0, beta = bias ? bias[j] : 0.0;
    const double scale = gamma / std::sqrt(static_cast<double>(running_var[j]) + eps);
    map.scale.push_back(scale);
    map.shift.push_back(beta - running_mean[j] * scale);
  }
  return map;
}

// BatchNorm's shape checks, for the layers named `name` (GhostBatchNorm2d, ...):
// dims 1 takes (N, C) or (N, C, L), dims 2 (N, C, H, W). Returns the
// channels-first kernel shape of the whole input.
inline BatchNormShape batch_norm_like_shape(const std::string& name, int dims, int64_t channels,
                                            const Shape& input) {
  const bool rank_ok = dims == 1 ? (input.size() == 2 || input.size() == 3)
                                 : input.size() == static_cast<size_t>(dims + 2);
  if (!rank_ok)
    throw Error(name + ": expected " +
                (dims == 1 ? std::string("2-D or 3-D") : std::to_string(dims + 2) + "-D") +
                " input, got " + std::to_string(input.size()) + "-D input of shape " +
                shape_string(input));
  if (input[1] != channels)
    throw Error(name + ": input has " + std::to_string(input[1]) + " channels (shape " +
                shape_string(input) + ") but num_features is " + std::to_string(channels));
  BatchNormShape shape;
  shape.n = input[0];
  shape.c = channels;
  for (size_t d = 2; d < input.size(); ++d) shape.s *= input[d];
  return shape;
}

}  // namespace bnlab::nn
