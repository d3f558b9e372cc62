// GroupNorm: the module around group_norm_forward/backward (group_norm.hpp),
// PyTorch's nn.GroupNorm semantics (the same in training and eval).
#include "bnlab/group_norm.hpp"

#include "bnlab/error.hpp"
#include "bnlab/nn/norm_layers.hpp"
#include "nn/init.hpp"
#include "nn/norm_common.hpp"
#include "nn/python_repr.hpp"

namespace bnlab::nn {

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, double eps, bool affine)
    : GroupNorm(num_groups, num_channels, eps, affine, deferred) {
  Generator unused(0);
  reset_parameters(unused);
}

GroupNorm::GroupNorm(int64_t num_groups, int64_t num_channels, double eps, bool affine, Deferred)
    : num_groups(num_groups), num_channels(num_channels), eps(eps), affine(affine) {
  if (num_groups <= 0)
    throw Error("GroupNorm: num_groups must be positive, got " + std::to_string(num_groups));
  if (num_channels <= 0 || num_channels % num_groups != 0)
    throw Error("GroupNorm: num_channels must be a positive multiple of num_groups (" +
                std::to_string(num_groups) + "), got " + std::to_string(num_channels));
  if (!(eps > 0.0)) throw Error("GroupNorm: eps must be positive, got " + python_float(eps));
}

void GroupNorm::reset_parameters(Generator&) {
  if (affine) init_affine({num_channels}, weight, bias, batch_grad_weight_, batch_grad_bias_);
}

double GroupNorm::state_bytes() const {
  return (affine ? 6.0 : 0.0) * static_cast<double>(num_channels) * sizeof(float);
}

std::string GroupNorm::repr() const {
  return "GroupNorm(" + std::to_string(num_groups) + ", " + std::to_string(num_channels) +
         ", eps=" + python_float(eps) + ", affine=" + python_bool(affine) + ")";
}

Shape GroupNorm::output_shape(const Shape& input) const {
  if (input.size() < 2)
    throw Error(repr() + ": expected an input (N, C, *), got shape " + shape_string(input));
  if (input[1] != num_channels)
    throw Error(repr() + ": input has " + std::to_string(input[1]) + " channels (shape " +
                shape_string(input) + ") but num_channels is " + std::to_string(num_channels));
  return input;
}

namespace {
GroupNormShape group_norm_shape(const Shape& input, int64_t groups) {
  GroupNormShape shape;
  shape.n = input[0];
  shape.c = input[1];
  for (size_t d = 2; d < input.size(); ++d) shape.s *= input[d];
  shape.groups = groups;
  return shape;
}
}  // namespace

// y = (x - mean_ig) * invstd_ig * w + b per sample i and group g (group_norm_forward).
const Tensor& GroupNorm::forward(const Tensor& input) {
  output_shape(input.shape());
  const GroupNormShape shape = group_norm_shape(input.shape(), num_groups);
  input_ = &input;
  output_.resize(input.shape());
  save_mean_.resize({shape.n * num_groups});
  save_invstd_.resize({shape.n * num_groups});
  group_norm_forward(input.data(), shape, affine ? weight.value.data() : nullptr,
                     affine ? bias.value.data() : nullptr, eps, output_.data(), save_mean_.data(),
                     save_invstd_.data());
  return output_;
}

// group_norm_backward from the forward's saved statistics; dw, db added into the grads.
const Tensor& GroupNorm::backward(const Tensor& grad_output) {
  check_backward_args(*this, input_, grad_output);
  const GroupNormShape shape = group_norm_shape(input_->shape(), num_groups);
  grad_input_.resize(compute_grad_input ? input_->shape() : kNoGradInputShape);
  group_norm_backward(
      input_->data(), grad_output.data(), shape, affine ? weight.value.data() : nullptr,
      save_mean_.data(), save_invstd_.data(), compute_grad_input ? grad_input_.data() : nullptr,
      affine ? batch_grad_weight_.data() : nullptr, affine ? batch_grad_bias_.data() : nullptr);
  if (affine) {
    add_batch_grad(weight, batch_grad_weight_);
    add_batch_grad(bias, batch_grad_bias_);
  }
  return grad_input_;
}

std::vector<std::pair<std::string, Parameter*>> GroupNorm::parameters() {
  if (!affine) return {};
  return affine_parameters(weight, bias);
}

}  // namespace bnlab::nn
