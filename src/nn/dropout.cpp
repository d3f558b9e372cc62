// Dropout and Dropout2d: inverted dropout with the Generator given at construction, so a
// seed fixes the masks.
#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "nn/python_repr.hpp"

namespace bnlab::nn {

Dropout::Dropout(double p, Generator& gen) : p(p), gen_(&gen) {
  if (!(p >= 0.0 && p <= 1.0))
    throw Error("Dropout: p must be in [0, 1], got " + python_float(p));
}

/* Training: keep_i = (u_i >= p) with u_i ~ U[0, 1) drawn in order,
 *   y_i = keep_i * x_i / (1 - p)   (0 everywhere when p == 1).
 * Eval or p == 0: y = x (the input itself is returned). */
const Tensor& Dropout::forward(const Tensor& input) {
  identity_ = !training_ || p == 0.0;
  if (identity_) return input;
  output_.resize(input.shape());
  mask_.resize(static_cast<size_t>(input.numel()));
  const float scale = p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f;
  const float* x = input.data();
  float* y = output_.data();
  for (int64_t i = 0; i < input.numel(); ++i) {
    const bool keep = gen_->uniform() >= p;
    mask_[static_cast<size_t>(i)] = keep;
    y[i] = keep ? x[i] * scale : 0.0f;
  }
  return output_;
}

/* dx_i = keep_i * dy_i / (1 - p); identity after an identity forward. */
const Tensor& Dropout::backward(const Tensor& grad_output) {
  if (identity_) return grad_output;
  check_grad_output(grad_output, output_);
  grad_input_.resize(grad_output.shape());
  const float scale = p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f;
  const float* dy = grad_output.data();
  float* dx = grad_input_.data();
  for (int64_t i = 0; i < grad_output.numel(); ++i)
    dx[i] = mask_[static_cast<size_t>(i)] ? dy[i] * scale : 0.0f;
  return grad_input_;
}

std::string Dropout::repr() const {
  return "Dropout(p=" + python_float(p) + ", inplace=False)";
}

}  // namespace bnlab::nn

namespace bnlab::nn {

Dropout2d::Dropout2d(double p, Generator& gen) : p(p), gen_(&gen) {
  if (!(p >= 0.0 && p <= 1.0))
    throw Error("Dropout2d: p must be in [0, 1], got " + python_float(p));
}

std::string Dropout2d::repr() const {
  return "Dropout2d(p=" + python_float(p) + ", inplace=False)";
}

Shape Dropout2d::output_shape(const Shape& input) const {
  if (input.size() != 4)
    throw Error(repr() + ": expected 4-D input (N, C, H, W), got " + shape_string(input));
  return input;
}

/* Training: keep_nc = (u_nc >= p), u_nc ~ U[0, 1) drawn plane by plane in
 * order, y[n, c, :, :] = keep_nc * x[n, c, :, :] / (1 - p) (0 when p == 1).
 * Eval or p == 0: the input itself. */
const Tensor& Dropout2d::forward(const Tensor& input) {
  output_shape(input.shape());
  identity_ = !training_ || p == 0.0;
  if (identity_) return input;
  output_.resize(input.shape());
  const int64_t planes = input.size(0) * input.size(1);
  const int64_t plane_size = planes == 0 ? 0 : input.numel() / planes;
  mask_.resize(static_cast<size_t>(planes));
  const float scale = p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f;
  const float* x = input.data();
  float* y = output_.data();
  for (int64_t plane = 0; plane < planes; ++plane) {
    const bool keep = gen_->uniform() >= p;
    mask_[static_cast<size_t>(plane)] = keep;
    const float factor = keep ? scale : 0.0f;
    for (int64_t i = plane * plane_size; i < (plane + 1) * plane_size; ++i)
      y[i] = keep ? x[i] * factor : 0.0f;
  }
  return output_;
}

/* dx[n, c] = keep_nc * dy[n, c] / (1 - p); identity after an identity forward. */
const Tensor& Dropout2d::backward(const Tensor& grad_output) {
  if (identity_) return grad_output;
  check_grad_output(grad_output, output_);
  grad_input_.resize(grad_output.shape());
  const auto planes = static_cast<int64_t>(mask_.size());
  const int64_t plane_size = planes == 0 ? 0 : grad_output.numel() / planes;
  const float scale = p < 1.0 ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f;
  const float* dy = grad_output.data();
  float* dx = grad_input_.data();
  for (int64_t plane = 0; plane < planes; ++plane) {
    const bool keep = mask_[static_cast<size_t>(plane)];
    for (int64_t i = plane * plane_size; i < (plane + 1) * plane_size; ++i)
      dx[i] = keep ? dy[i] * scale : 0.0f;
  }
  return grad_input_;
}

}  // namespace bnlab::nn
