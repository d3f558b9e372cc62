// Elementwise activations: ReLU, LeakyReLU, Sigmoid, Tanh. Each is one pass
// forward and one pass backward, split in chunks over the threads.
#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "core/parallel.hpp"
#include "nn/init.hpp"
#include "nn/python_repr.hpp"

namespace bnlab::nn {
namespace {

// Calls body(begin, end) over [0, numel) in chunks, on the threads when large.
template <class Body>
void for_chunks(int64_t numel, Body&& body) {
  const int64_t chunks = (numel + kElementwiseChunk - 1) / kElementwiseChunk;
  parallel_for(chunks, numel, [&](int64_t chunk) {
    const int64_t begin = chunk * kElementwiseChunk;
    const int64_t end = begin + kElementwiseChunk < numel ? begin + kElementwiseChunk : numel;
    body(begin, end);
  });
}

void check_same_shape(const std::string& module, const Tensor& grad_output, const Tensor& output) {
  if (grad_output.shape() != output.shape())
    throw Error(module + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the output " + shape_string(output.shape()));
}

}  // namespace

/* ReLU: y = max(x, 0); dx = dy where y > 0, else 0 (PyTorch's mask: x > 0).
 * fused: the BatchNorm before applied it; input and gradient pass through. */
const Tensor& ReLU::forward(const Tensor& input) {
  if (fused) return input;
  output_.resize(input.shape());
  const float* x = input.data();
  float* y = output_.data();
  for_chunks(input.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
  });
  return output_;
}

const Tensor& ReLU::backward(const Tensor& grad_output) {
  if (fused) return grad_output;
  check_same_shape(repr(), grad_output, output_);
  grad_input_.resize(grad_output.shape());
  const float* y = output_.data();
  const float* dy = grad_output.data();
  float* dx = grad_input_.data();
  for_chunks(grad_output.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
  });
  return grad_input_;
}

/* LeakyReLU: y = x if x > 0 else slope * x; dx = dy if x > 0 else slope * dy. */
const Tensor& LeakyReLU::forward(const Tensor& input) {
  input_ = &input;
  output_.resize(input.shape());
  const float slope = static_cast<float>(negative_slope);
  const float* x = input.data();
  float* y = output_.data();
  for_chunks(input.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = x[i] > 0.0f ? x[i] : slope * x[i];
  });
  return output_;
}

const Tensor& LeakyReLU::backward(const Tensor& grad_output) {
  check_same_shape(repr(), grad_output, output_);
  grad_input_.resize(grad_output.shape());
  const float slope = static_cast<float>(negative_slope);
  const float* x = input_->data();
  const float* dy = grad_output.data();
  float* dx = grad_input_.data();
  for_chunks(grad_output.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = x[i] > 0.0f ? dy[i] : slope * dy[i];
  });
  return grad_input_;
}

std::string LeakyReLU::repr() const {
  return "LeakyReLU(negative_slope=" + python_float(negative_slope) + ")";
}

/* Sigmoid: y = 1 / (1 + exp(-x)); dx = dy * y * (1 - y). */
const Tensor& Sigmoid::forward(const Tensor& input) {
  output_.resize(input.shape());
  const float* x = input.data();
  float* y = output_.data();
  for_chunks(input.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
  });
  return output_;
}

const Tensor& Sigmoid::backward(const Tensor& grad_output) {
  check_same_shape(repr(), grad_output, output_);
  grad_input_.resize(grad_output.shape());
  const float* y = output_.data();
  const float* dy = grad_output.data();
  float* dx = grad_input_.data();
  for_chunks(grad_output.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
  });
  return grad_input_;
}

/* Tanh: y = tanh(x); dx = dy * (1 - y^2). */
const Tensor& Tanh::forward(const Tensor& input) {
  output_.resize(input.shape());
  const float* x = input.data();
  float* y = output_.data();
  for_chunks(input.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = std::tanh(x[i]);
  });
  return output_;
}

const Tensor& Tanh::backward(const Tensor& grad_output) {
  check_same_shape(repr(), grad_output, output_);
  grad_input_.resize(grad_output.shape());
  const float* y = output_.data();
  const float* dy = grad_output.data();
  float* dx = grad_input_.data();
  for_chunks(grad_output.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
  });
  return grad_input_;
}

}  // namespace bnlab::nn
