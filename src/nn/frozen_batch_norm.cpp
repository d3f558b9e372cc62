// FrozenBatchNorm2d: torchvision's fixed BatchNorm2d, on BatchNorm's
// inference kernels (the same map in training and eval).
#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/norm_layers.hpp"
#include "nn/init.hpp"
#include "nn/norm_common.hpp"
#include "nn/python_repr.hpp"

namespace bnlab::nn {

FrozenBatchNorm2d::FrozenBatchNorm2d(int64_t num_features, double eps)
    : FrozenBatchNorm2d(num_features, eps, deferred) {
  Generator unused(0);
  reset_parameters(unused);
}

FrozenBatchNorm2d::FrozenBatchNorm2d(int64_t num_features, double eps, Deferred)
    : num_features(num_features), eps(eps) {
  if (num_features <= 0)
    throw Error("FrozenBatchNorm2d: num_features must be positive, got " +
                std::to_string(num_features));
  if (!(eps > 0.0))
    throw Error("FrozenBatchNorm2d: eps must be positive, got " + python_float(eps));
}

// torchvision's initial values: the identity map.
void FrozenBatchNorm2d::reset_parameters(Generator&) {
  weight = Tensor({num_features}, 1.0f);
  bias = Tensor({num_features}, 0.0f);
  running_mean = Tensor({num_features}, 0.0f);
  running_var = Tensor({num_features}, 1.0f);
}

double FrozenBatchNorm2d::state_bytes() const {
  return 4.0 * static_cast<double>(num_features) * sizeof(float);
}

// torchvision's __repr__ writes eps with Python's str(float), which is repr's.
std::string FrozenBatchNorm2d::repr() const {
  return "FrozenBatchNorm2d(" + std::to_string(num_features) + ", eps=" + python_float(eps) + ")";
}

Shape FrozenBatchNorm2d::output_shape(const Shape& input) const {
  if (input.size() != 4)
    throw Error(repr() + ": expected 4-D input, got " + std::to_string(input.size()) +
                "-D input of shape " + shape_string(input));
  if (input[1] != num_features)
    throw Error(repr() + ": input has " + std::to_string(input[1]) + " channels (shape " +
                shape_string(input) + ") but num_features is " + std::to_string(num_features));
  return input;
}

ChannelAffine FrozenBatchNorm2d::eval_channel_affine() const {
  return running_stats_affine(num_features, weight.data(), bias.data(), running_mean.data(),
                              running_var.data(), eps);
}

BatchNormShape FrozenBatchNorm2d::kernel_shape(const Shape& input) const {
  output_shape(input);
  BatchNormShape shape;
  shape.n = input[0];
  shape.c = input[1];
  shape.s = input[2] * input[3];
  shape.layout = format_ == MemoryFormat::blocked16 ? Layout::blocked16 : Layout::channels_first;
  return shape;
}

Blocked16Use FrozenBatchNorm2d::blocked16_use(const Shape& input) const {
  return fits_blocked16(input) ? Blocked16Use::keeps : Blocked16Use::no;
}

const Tensor& FrozenBatchNorm2d::forward(const Tensor& input) {
  return forward_formatted(input, MemoryFormat::plain, MemoryFormat::plain);
}

// y = (x - running_mean) / sqrt(running_var + eps) * weight + bias
// (batch_norm_forward_inference), in training and eval alike.
const Tensor& FrozenBatchNorm2d::forward_formatted(const Tensor& input, MemoryFormat in,
                                                   MemoryFormat out) {
  check_kept_format(input.shape(), in, out);
  format_ = in;
  const BatchNormShape shape = kernel_shape(input.shape());
  input_ = &input;
  output_.resize(input.shape());
  batch_norm_forward_inference(input.data(), shape, weight.data(), bias.data(), running_mean.data(),
                               running_var.data(), eps, output_.data());
  return output_;
}

// Every tensor is a constant: dx = dy * weight / sqrt(running_var + eps)
// (batch_norm_backward_inference without dweight, dbias).
const Tensor& FrozenBatchNorm2d::backward(const Tensor& grad_output) {
  check_backward_args(*this, input_, grad_output);
  grad_input_.resize(compute_grad_input ? input_->shape() : kNoGradInputShape);
  if (!compute_grad_input) return grad_input_;
  batch_norm_backward_inference(input_->data(), grad_output.data(), kernel_shape(input_->shape()),
                                weight.data(), running_mean.data(), running_var.data(), eps,
                                grad_input_.data(), nullptr, nullptr);
  return grad_input_;
}

std::vector<Buffer> FrozenBatchNorm2d::buffers() {
  return {{"weight", &weight, nullptr},
          {"bias", &bias, nullptr},
          {"running_mean", &running_mean, nullptr},
          {"running_var", &running_var, nullptr}};
}

}  // namespace bnlab::nn
