// Elementwise activations: ReLU, LeakyReLU, Sigmoid, Tanh, GELU, ELU, SiLU,
// ReLU6, Hardswish. Each is one pass forward and one pass backward, split in
// chunks over the threads. Where PyTorch's formula has a branch, the branch
// is written with the same comparison, so a NaN takes the same path.
#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "core/parallel.hpp"
#include "nn/init.hpp"
#include "nn/python_repr.hpp"
#include "nn/relu_bf16.hpp"

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
const Tensor& map_backward(const Tensor& grad_output, const Tensor& saved, Tensor& grad_input,
                             G g) {
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
  bf16_ = false;
  if (fused) return input;
  return map_forward(input, output_, [](float x) { return x < 0.0f ? 0.0f : x; });
}

const Tensor& ReLU::backward(const Tensor& grad_output) {
  if (fused) return grad_output;
  check_grad_output(grad_output, output_);
  if (bf16_) {
    grad_input_.resize(grad_output.shape());
    relu_backward_bf16(bf16_data(grad_output), bf16_data(output_), bf16_data(grad_input_),
                       grad_output.numel());
    return grad_input_;
  }
  return map_backward(grad_output, output_, grad_input_,
                      [](float dy, float y) { return y <= 0.0f ? 0.0f : dy; });
}

// ReLU keeps bf16 too (a bf16 chain, see MemoryFormat): the same rule on the
// widened values.
const Tensor& ReLU::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  check_kept_format(input.shape(), in, out);
  if (!is_bf16(in)) return forward(input);
  bf16_ = true;
  if (fused) return input;
  output_.resize(input.shape());
  relu_bf16(bf16_data(input), bf16_data(output_), input.numel());
  return output_;
}

// The float comparisons on the bits, branch-free so that they vectorize on
// 16-bit lanes: with magnitude m = bits & 0x7fff, a value is a NaN when
// m > 0x7f80, and v < 0 when it is negative (sign set), not -0 and not a
// NaN; v <= 0 also when m == 0. Each returns 0xffff to keep a value, 0 to zero it.
inline uint16_t keep_unless_below_zero(uint16_t v) {
  const unsigned m = v & 0x7fffu, sign = v >> 15;
  const unsigned below = sign & unsigned(m != 0) & unsigned(m <= 0x7f80u);
  return static_cast<uint16_t>(below - 1u);
}
inline uint16_t keep_unless_at_most_zero(uint16_t v) {
  const unsigned m = v & 0x7fffu, sign = v >> 15;
  const unsigned at_most = unsigned(m == 0) | (sign & unsigned(m <= 0x7f80u));
  return static_cast<uint16_t>(at_most - 1u);
}

// Pointers captured by value and omp simd: element i reads and writes only
// index i (aliasing outputs included), which GCC cannot prove by itself.
void relu_bf16(const uint16_t* x, uint16_t* y, int64_t count) {
  for_chunks(count, [x, y](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = x[i] & keep_unless_below_zero(x[i]);
  });
}

void relu_backward_bf16(const uint16_t* dy, const uint16_t* y, uint16_t* dx, int64_t count) {
  for_chunks(count, [dy, y, dx](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) dx[i] = dy[i] & keep_unless_at_most_zero(y[i]);
  });
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
  check_grad_output(grad_output, output_);
  return map_backward(grad_output, *input_, grad_input_,
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
  check_grad_output(grad_output, output_);
  return map_backward(grad_output, output_, grad_input_,
                      [](float dy, float y) { return dy * y * (1.0f - y); });
}

/* Tanh: y = tanh(x); dx = dy * (1 - y^2). */
const Tensor& Tanh::forward(const Tensor& input) {
  return map_forward(input, output_, [](float x) { return std::tanh(x); });
}

const Tensor& Tanh::backward(const Tensor& grad_output) {
  check_grad_output(grad_output, output_);
  return map_backward(grad_output, output_, grad_input_,
                      [](float dy, float y) { return dy * (1.0f - y * y); });
}

/* GELU, approximate='none': y = x * Phi(x) = x/2 * (1 + erf(x / sqrt(2)));
 *   dx = dy * (Phi(x) + x * phi(x)), phi(x) = exp(-x^2/2) / sqrt(2 pi).
 * approximate='tanh': y = x/2 * (1 + t), t = tanh(sqrt(2/pi) (x + 0.044715 x^3));
 *   dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)). */
GELU::GELU(const std::string& approximate) : tanh_approximation(approximate == "tanh") {
  if (approximate != "none" && approximate != "tanh")
    throw Error("GELU: approximate must be 'none' or 'tanh', got '" + excerpt(approximate) + "'");
}

namespace {
constexpr float kSqrtHalf = 0.70710678118654752f;     // 1 / sqrt(2)
constexpr float kInvSqrt2Pi = 0.39894228040143268f;   // 1 / sqrt(2 pi)
constexpr float kSqrt2OverPi = 0.79788456080286536f;  // sqrt(2 / pi)
constexpr float kGeluCubic = 0.044715f;
}  // namespace

const Tensor& GELU::forward(const Tensor& input) {
  input_ = &input;
  if (tanh_approximation)
    return map_forward(input, output_, [](float x) {
      return 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x)));
    });
  return map_forward(input, output_,
                     [](float x) { return 0.5f * x * (1.0f + std::erf(x * kSqrtHalf)); });
}

const Tensor& GELU::backward(const Tensor& grad_output) {
  check_grad_output(grad_output, output_);
  if (tanh_approximation)
    return map_backward(grad_output, *input_, grad_input_, [](float dy, float x) {
      const float t = std::tanh(kSqrt2OverPi * (x + kGeluCubic * x * x * x));
      const float inner_dx = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
      return dy * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * inner_dx);
    });
  return map_backward(grad_output, *input_, grad_input_, [](float dy, float x) {
    const float cdf = 0.5f * (1.0f + std::erf(x * kSqrtHalf));
    return dy * (cdf + x * kInvSqrt2Pi * std::exp(-0.5f * x * x));
  });
}

std::string GELU::repr() const {
  return std::string("GELU(approximate='") + (tanh_approximation ? "tanh" : "none") + "')";
}

/* ELU: y = x if x > 0, else alpha * (exp(x) - 1); dx = dy if x > 0, else
 * dy * alpha * exp(x) (PyTorch's test is x <= 0, so a NaN takes dx = dy). */
const Tensor& ELU::forward(const Tensor& input) {
  input_ = &input;
  const float a = static_cast<float>(alpha);
  return map_forward(input, output_, [a](float x) { return x <= 0.0f ? a * std::expm1(x) : x; });
}

const Tensor& ELU::backward(const Tensor& grad_output) {
  const float a = static_cast<float>(alpha);
  check_grad_output(grad_output, output_);
  return map_backward(grad_output, *input_, grad_input_,
                      [a](float dy, float x) { return x <= 0.0f ? dy * a * std::exp(x) : dy; });
}

std::string ELU::repr() const { return "ELU(alpha=" + python_float(alpha) + ")"; }

/* SiLU: y = x * s, s = sigmoid(x); dx = dy * s * (1 + x * (1 - s)). */
const Tensor& SiLU::forward(const Tensor& input) {
  input_ = &input;
  return map_forward(input, output_, [](float x) { return x / (1.0f + std::exp(-x)); });
}

const Tensor& SiLU::backward(const Tensor& grad_output) {
  check_grad_output(grad_output, output_);
  return map_backward(grad_output, *input_, grad_input_, [](float dy, float x) {
    const float s = 1.0f / (1.0f + std::exp(-x));
    return dy * s * (1.0f + x * (1.0f - s));
  });
}

namespace {
// min(max(v, 0), 6) with a NaN passed through, as PyTorch's clamp does.
float clamp_0_6(float v) { return v < 0.0f ? 0.0f : (v > 6.0f ? 6.0f : v); }
}  // namespace

/* ReLU6: y = min(max(x, 0), 6); dx = 0 where x <= 0 or x >= 6, else dy
 * (PyTorch's hardtanh_backward: a NaN input passes dy). */
const Tensor& ReLU6::forward(const Tensor& input) {
  input_ = &input;
  return map_forward(input, output_, clamp_0_6);
}

const Tensor& ReLU6::backward(const Tensor& grad_output) {
  check_grad_output(grad_output, output_);
  return map_backward(grad_output, *input_, grad_input_, [](float dy, float x) {
    return x <= 0.0f || x >= 6.0f ? 0.0f : dy;
  });
}

/* Hardswish: y = x * min(max(x + 3, 0), 6) / 6;
 * dx = 0 if x < -3, dy * (x / 3 + 0.5) if x <= 3, else dy (a NaN: dy). */
const Tensor& Hardswish::forward(const Tensor& input) {
  input_ = &input;
  return map_forward(input, output_, [](float x) { return x * clamp_0_6(x + 3.0f) / 6.0f; });
}

const Tensor& Hardswish::backward(const Tensor& grad_output) {
  check_grad_output(grad_output, output_);
  return map_backward(grad_output, *input_, grad_input_, [](float dy, float x) {
    if (x < -3.0f) return 0.0f;
    if (x <= 3.0f) return dy * (x / 3.0f + 0.5f);
    return dy;
  });
}

// An elementwise module computes the same value at every position whatever the
// order the values lie in: it takes any format that fits and keeps it (see
// MemoryFormat).
const Tensor& Elementwise::forward_formatted(const Tensor& input, MemoryFormat in,
                                             MemoryFormat out) {
  check_kept_format(input.shape(), in, out);
  return forward(input);
}

Blocked16Use Elementwise::blocked16_use(const Shape& input) const {
  return fits_blocked16(input) ? Blocked16Use::keeps : Blocked16Use::no;
}

}  // namespace bnlab::nn
