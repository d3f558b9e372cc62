// Softmax and LogSoftmax along one dimension, as PyTorch's nn.Softmax and
// nn.LogSoftmax. Each row along `dim` is independent: rows split over threads.
#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "core/parallel.hpp"

namespace bnlab::nn {
namespace {

// The rows along a dimension: outer * inner rows of `size` values, stride inner.
struct Rows {
  int64_t outer, size, inner;
};

}  // namespace

std::string Softmax::repr() const {
  return std::string(log ? "LogSoftmax" : "Softmax") +
         "(dim=" + (dim ? std::to_string(*dim) : std::string("None")) + ")";
}

namespace {

// PyTorch's _get_softmax_dim for dim=None, and negative dims counted from the end.
int64_t resolve_dim(const Softmax& module, const Shape& input) {
  const auto nd = static_cast<int64_t>(input.size());
  int64_t d = module.dim ? *module.dim : (nd == 0 || nd == 1 || nd == 3 ? 0 : 1);
  if (d < 0) d += nd;
  if (d < 0 || d >= nd)
    throw Error(module.repr() + ": dim out of range for an input of shape " + shape_string(input) +
                " (expected in [" + std::to_string(-nd) + ", " + std::to_string(nd - 1) + "])");
  return d;
}

Rows rows_along(const Shape& shape, int64_t d) {
  Rows r{1, shape[static_cast<size_t>(d)], 1};
  for (int64_t i = 0; i < d; ++i) r.outer *= shape[static_cast<size_t>(i)];
  for (auto i = static_cast<size_t>(d) + 1; i < shape.size(); ++i) r.inner *= shape[i];
  return r;
}

}  // namespace

Shape Softmax::output_shape(const Shape& input) const {
  resolve_dim(*this, input);
  return input;
}

/* Per row x_1..x_K (max m, sums in double):
 *   Softmax:    y_k = exp(x_k - m) / sum_j exp(x_j - m)
 *   LogSoftmax: y_k = x_k - m - log(sum_j exp(x_j - m))
 * A NaN in a row makes the whole row NaN, as in PyTorch. */
const Tensor& Softmax::forward(const Tensor& input) {
  const Rows r = rows_along(input.shape(), resolve_dim(*this, input.shape()));
  output_.resize(input.shape());
  if (input.numel() == 0) return output_;
  const float* x = input.data();
  float* y = output_.data();
  const bool log_output = log;
  parallel_for(r.outer * r.inner, input.numel(), [&](int64_t row) {
    const int64_t base = (row / r.inner) * r.size * r.inner + row % r.inner;
    float m = x[base];
    for (int64_t k = 1; k < r.size; ++k) m = std::fmax(m, x[base + k * r.inner]);
    double sum = 0.0;
    for (int64_t k = 0; k < r.size; ++k)
      sum += std::exp(static_cast<double>(x[base + k * r.inner]) - m);
    if (log_output) {
      const double log_sum = std::log(sum);
      for (int64_t k = 0; k < r.size; ++k)
        y[base + k * r.inner] =
            static_cast<float>(static_cast<double>(x[base + k * r.inner]) - m - log_sum);
    } else {
      for (int64_t k = 0; k < r.size; ++k)
        y[base + k * r.inner] =
            static_cast<float>(std::exp(static_cast<double>(x[base + k * r.inner]) - m) / sum);
    }
  });
  return output_;
}

/* Softmax:    dx_k = y_k * (dy_k - sum_j dy_j y_j)
 * LogSoftmax: dx_k = dy_k - exp(y_k) * sum_j dy_j */
const Tensor& Softmax::backward(const Tensor& grad_output) {
  check_grad_output(grad_output, output_);
  const Rows r = rows_along(output_.shape(), resolve_dim(*this, output_.shape()));
  grad_input_.resize(output_.shape());
  if (output_.numel() == 0) return grad_input_;
  const float* y = output_.data();
  const float* dy = grad_output.data();
  float* dx = grad_input_.data();
  const bool log_output = log;
  parallel_for(r.outer * r.inner, output_.numel(), [&](int64_t row) {
    const int64_t base = (row / r.inner) * r.size * r.inner + row % r.inner;
    double sum = 0.0;
    for (int64_t k = 0; k < r.size; ++k) {
      const int64_t i = base + k * r.inner;
      sum += log_output ? static_cast<double>(dy[i]) : static_cast<double>(dy[i]) * y[i];
    }
    for (int64_t k = 0; k < r.size; ++k) {
      const int64_t i = base + k * r.inner;
      dx[i] = log_output ? static_cast<float>(dy[i] - std::exp(static_cast<double>(y[i])) * sum)
                         : static_cast<float>(y[i] * (dy[i] - sum));
    }
  });
  return grad_input_;
}

}  // namespace bnlab::nn
