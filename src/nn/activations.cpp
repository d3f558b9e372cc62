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

void check_same_shape(const Module& module, const Tensor& grad_output, const Tensor& output) {
  if (grad_output.shape() != output.shape())
    throw Error(module.repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the output " + shape_string(output.shape()));
}

// output[i] = f(input[i]), one pass.
template <class F>
const Tensor& map_forward(const Tensor& input, Tensor& output, F f) {
  output.resize(input.shape());
  const float* x = input.data();
  float* y = output.data();
  for_chunks(input.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = f(x[i]);
  });
  return output;
}

// grad_input[i] = g(grad_output[i], saved[i]), saved being the forward's input
// or output (whichever the derivative needs), one pass.
template <class G>
const Tensor& map_backward(const Module& module, const Tensor& grad_output,
                           const Tensor& output, const Tensor& saved, Tensor& grad_input, G g) {
  check_same_shape(module, grad_output, output);
  grad_input.resize(grad_output.shape());
  const float* dy = grad_output.data();
  const float* a = saved.data();
  float* dx = grad_input.data();
  for_chunks(grad_output.numel(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dx[i] = g(dy[i], a[i]);
  });
  return grad_input;
}

}  // namespace

/* ReLU: y = 0 where x < 0, else x; dx = 0 where y <= 0, else dy. Written as
 * PyTorch's clamp and threshold_backward are, so a NaN passes through both.
 * fused: the BatchNorm before applied it; input and gradient pass through. */
const Tensor& ReLU::forward(const Tensor& input) {
  if (fused) return input;
  return map_forward(input, output_, [](float x) { return x < 0.0f ? 0.0f : x; });
}

const Tensor& ReLU::backward(const Tensor& grad_output) {
  if (fused) return grad_output;
  return map_backward(*this, grad_output, output_, output_, grad_input_,
                      [](float dy, float y) { return y <= 0.0f ? 0.0f : dy; });
}

/* LeakyReLU: y = x if x > 0 else slope * x; dx = dy if x > 0 else slope * dy
 * (a NaN gives NaN and slope * dy, as in PyTorch). */
const Tensor& LeakyReLU::forward(const Tensor& input) {
  input_ = &input;
  const float slope = static_cast<float>(negative_slope);
  return map_forward(input, output_, [slope](float x) { return x > 0.0f ? x : slope * x; });
}

const Tensor& LeakyReLU::backward(const Tensor& grad_output) {
  const float slope = static_cast<float>(negative_slope);
  return map_backward(*this, grad_output, output_, *input_, grad_input_,
                      [slope](float dy, float x) { return x > 0.0f ? dy : slope * dy; });
}

std::string LeakyReLU::repr() const {
  return "LeakyReLU(negative_slope=" + python_float(negative_slope) + ")";
}

/* Sigmoid: y = 1 / (1 + exp(-x)); dx = dy * y * (1 - y). */
const Tensor& Sigmoid::forward(const Tensor& input) {
  return map_forward(input, output_, [](float x) { return 1.0f / (1.0f + std::exp(-x)); });
}

const Tensor& Sigmoid::backward(const Tensor& grad_output) {
  return map_backward(*this, grad_output, output_, output_, grad_input_,
                      [](float dy, float y) { return dy * y * (1.0f - y); });
}

/* Tanh: y = tanh(x); dx = dy * (1 - y^2). */
const Tensor& Tanh::forward(const Tensor& input) {
  return map_forward(input, output_, [](float x) { return std::tanh(x); });
}

const Tensor& Tanh::backward(const Tensor& grad_output) {
  return map_backward(*this, grad_output, output_, output_, grad_input_,
                      [](float dy, float y) { return dy * (1.0f - y * y); });
}

// An elementwise module computes the same value at every position whatever the
// order the values lie in: it takes any format that fits and keeps it (see
// MemoryFormat).

const Tensor& ReLU::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  check_kept_format(input.shape(), in, out);
  return forward(input);
}
Blocked16Use ReLU::blocked16_use(const Shape& input) const {
  return fits_blocked16(input) ? Blocked16Use::keeps : Blocked16Use::no;
}

const Tensor& LeakyReLU::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  check_kept_format(input.shape(), in, out);
  return forward(input);
}
Blocked16Use LeakyReLU::blocked16_use(const Shape& input) const {
  return fits_blocked16(input) ? Blocked16Use::keeps : Blocked16Use::no;
}

const Tensor& Sigmoid::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  check_kept_format(input.shape(), in, out);
  return forward(input);
}
Blocked16Use Sigmoid::blocked16_use(const Shape& input) const {
  return fits_blocked16(input) ? Blocked16Use::keeps : Blocked16Use::no;
}

const Tensor& Tanh::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  check_kept_format(input.shape(), in, out);
  return forward(input);
}
Blocked16Use Tanh::blocked16_use(const Shape& input) const {
  return fits_blocked16(input) ? Blocked16Use::keeps : Blocked16Use::no;
}

}  // namespace bnlab::nn
