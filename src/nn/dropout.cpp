// Dropout: inverted dropout with the Generator given at construction, so a
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
  if (grad_output.shape() != output_.shape())
    throw Error(repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the output " + shape_string(output_.shape()));
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
