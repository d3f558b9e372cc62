// LayerNorm: the module around layer_norm_forward/backward (layer_norm.hpp),
// PyTorch's nn.LayerNorm semantics (the same in training and eval).
#include "bnlab/layer_norm.hpp"

#include <algorithm>

#include "bnlab/error.hpp"
#include "bnlab/nn/norm_layers.hpp"
#include "nn/init.hpp"
#include "nn/norm_common.hpp"
#include "nn/python_repr.hpp"

namespace bnlab::nn {

LayerNorm::LayerNorm(Shape normalized_shape, double eps, bool elementwise_affine, bool bias)
    : LayerNorm(std::move(normalized_shape), eps, elementwise_affine, bias, deferred) {
  Generator unused(0);
  reset_parameters(unused);
}

LayerNorm::LayerNorm(Shape normalized_shape_in, double eps, bool elementwise_affine, bool bias,
                     Deferred)
    : normalized_shape(std::move(normalized_shape_in)),
      eps(eps),
      elementwise_affine(elementwise_affine),
      has_bias(elementwise_affine && bias) {
  if (normalized_shape.empty())
    throw Error("LayerNorm: normalized_shape must name at least one dimension");
  for (int64_t d : normalized_shape)
    if (d <= 0)
      throw Error("LayerNorm: normalized_shape must be positive sizes, got " +
                  shape_string(normalized_shape));
  if (!(eps > 0.0)) throw Error("LayerNorm: eps must be positive, got " + python_float(eps));
}

int64_t LayerNorm::cols() const {
  int64_t count = 1;
  for (int64_t d : normalized_shape) count *= d;
  return count;
}

void LayerNorm::reset_parameters(Generator&) {
  if (!elementwise_affine) return;
  init_affine(normalized_shape, weight, bias, batch_grad_weight_, batch_grad_bias_);
  if (!has_bias) bias = Parameter{};
}

double LayerNorm::state_bytes() const {
  const double per_value = (elementwise_affine ? 3.0 : 0.0) + (has_bias ? 3.0 : 0.0);
  return per_value * static_cast<double>(cols()) * sizeof(float);
}

// PyTorch prints the shape as a Python tuple: "(4,)", "(3, 4)".
std::string LayerNorm::repr() const {
  std::string dims;
  for (size_t i = 0; i < normalized_shape.size(); ++i)
    dims += (i ? ", " : "") + std::to_string(normalized_shape[i]);
  if (normalized_shape.size() == 1) dims += ",";
  return "LayerNorm((" + dims + "), eps=" + python_float(eps) +
         ", elementwise_affine=" + python_bool(elementwise_affine) + ")";
}

Shape LayerNorm::output_shape(const Shape& input) const {
  const size_t k = normalized_shape.size();
  if (input.size() < k || !std::equal(normalized_shape.begin(), normalized_shape.end(),
                                      input.end() - static_cast<std::ptrdiff_t>(k)))
    throw Error(repr() + ": the input's trailing dimensions must be " +
                shape_string(normalized_shape) + ", got input of shape " + shape_string(input));
  return input;
}

// y = (x - mean_r) * invstd_r * w + b per row r of cols() values (layer_norm_forward).
const Tensor& LayerNorm::forward(const Tensor& input) {
  output_shape(input.shape());
  const LayerNormShape shape{input.numel() / cols(), cols()};
  input_ = &input;
  output_.resize(input.shape());
  save_mean_.resize({shape.rows});
  save_invstd_.resize({shape.rows});
  layer_norm_forward(input.data(), shape, elementwise_affine ? weight.value.data() : nullptr,
                     has_bias ? bias.value.data() : nullptr, eps, output_.data(), save_mean_.data(),
                     save_invstd_.data());
  return output_;
}

// layer_norm_backward from the forward's saved statistics; dw, db added into the grads.
const Tensor& LayerNorm::backward(const Tensor& grad_output) {
  check_backward_args(*this, input_, grad_output);
  const LayerNormShape shape{input_->numel() / cols(), cols()};
  grad_input_.resize(compute_grad_input ? input_->shape() : kNoGradInputShape);
  layer_norm_backward(input_->data(), grad_output.data(), shape,
                      elementwise_affine ? weight.value.data() : nullptr, save_mean_.data(),
                      save_invstd_.data(), compute_grad_input ? grad_input_.data() : nullptr,
                      elementwise_affine ? batch_grad_weight_.data() : nullptr,
                      has_bias ? batch_grad_bias_.data() : nullptr);
  if (elementwise_affine) add_batch_grad(weight, batch_grad_weight_);
  if (has_bias) add_batch_grad(bias, batch_grad_bias_);
  return grad_input_;
}

std::vector<std::pair<std::string, Parameter*>> LayerNorm::parameters() {
  if (!elementwise_affine) return {};
  if (!has_bias) return {{"weight", &weight}};
  return {{"weight", &weight}, {"bias", &bias}};
}

}  // namespace bnlab::nn
