// AvgPool2d: PyTorch 1.13's average pooling (kernel, stride and padding per
// dimension, ceil_mode, count_include_pad, divisor_override), NCHW (the
// passes: window_average.hpp).
#include <algorithm>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "nn/window_average.hpp"

namespace bnlab::nn {

AvgPool2d::AvgPool2d(Size2 kernel_size, std::optional<Size2> stride, Size2 padding, bool ceil_mode,
                     bool count_include_pad, std::optional<int64_t> divisor_override)
    : kernel_size(kernel_size),
      stride(stride ? *stride : kernel_size),
      padding(padding),
      ceil_mode(ceil_mode),
      count_include_pad(count_include_pad),
      divisor_override(divisor_override) {
  if (kernel_size.h <= 0 || kernel_size.w <= 0)
    throw Error("AvgPool2d: kernel_size must be positive, got " + kernel_size.repr());
  if (this->stride.h <= 0 || this->stride.w <= 0)
    throw Error("AvgPool2d: stride must be positive, got " + this->stride.repr());
  if (padding.h < 0 || padding.w < 0 || 2 * padding.h > kernel_size.h ||
      2 * padding.w > kernel_size.w)
    throw Error("AvgPool2d: padding should be at most half of kernel_size (" + kernel_size.repr() +
                "), got " + padding.repr());
  if (divisor_override && *divisor_override == 0)
    throw Error("AvgPool2d: divisor_override must not be zero");
}

std::string AvgPool2d::repr() const {
  return "AvgPool2d(kernel_size=" + kernel_size.repr() + ", stride=" + stride.repr() +
         ", padding=" + padding.repr() + ")";
}

namespace {

// PyTorch's pooling_output_shape (dilation 1): floor, or ceil where the last
// window still starts inside the input or its left padding.
int64_t pooled_size(int64_t in, int64_t k, int64_t s, int64_t p, bool ceil_mode) {
  const int64_t span = in + 2 * p - k + (ceil_mode ? s - 1 : 0);
  // Floor division toward minus infinity (span may be negative).
  int64_t out = (span >= 0 ? span / s : -((-span + s - 1) / s)) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

// The window of output (oh, ow) clipped to the input, and the divisor PyTorch
// uses for it.
PoolWindow window_at(const AvgPool2d& m, int64_t oh, int64_t ow, int64_t in_h, int64_t in_w) {
  int64_t h0 = oh * m.stride.h - m.padding.h, w0 = ow * m.stride.w - m.padding.w;
  int64_t h1 = std::min(h0 + m.kernel_size.h, in_h + m.padding.h);
  int64_t w1 = std::min(w0 + m.kernel_size.w, in_w + m.padding.w);
  const int64_t padded_size = (h1 - h0) * (w1 - w0);
  h0 = std::max<int64_t>(h0, 0);
  w0 = std::max<int64_t>(w0, 0);
  h1 = std::min(h1, in_h);
  w1 = std::min(w1, in_w);
  if (h0 >= h1 || w0 >= w1) return {h0, h1, w0, w1, 0};
  const int64_t divisor = m.divisor_override    ? *m.divisor_override
                          : m.count_include_pad ? padded_size
                                                : (h1 - h0) * (w1 - w0);
  return {h0, h1, w0, w1, divisor};
}

}  // namespace

Shape AvgPool2d::output_shape(const Shape& input) const {
  if (input.size() != 4)
    throw Error(repr() + ": expected 4-D input (N, C, H, W), got " + shape_string(input));
  const int64_t h = pooled_size(input[2], kernel_size.h, stride.h, padding.h, ceil_mode);
  const int64_t w = pooled_size(input[3], kernel_size.w, stride.w, padding.w, ceil_mode);
  if (h < 1 || w < 1)
    throw Error(repr() + ": input " + shape_string(input) + " is smaller than the window");
  return {input[0], input[1], h, w};
}

/* y[n, c, oh, ow] = (sum of x over the window clipped to the input) / divisor
 * (see window_at); 0 for a window with no input. One pass over x. */
const Tensor& AvgPool2d::forward(const Tensor& input) {
  output_.resize(output_shape(input.shape()));
  input_shape_ = input.shape();
  const int64_t in_h = input.size(2), in_w = input.size(3);
  window_average_forward(
      input, output_, [&](int64_t oh, int64_t ow) { return window_at(*this, oh, ow, in_h, in_w); });
  return output_;
}

const Tensor& AvgPool2d::backward(const Tensor& grad_output) {
  check_grad_output(grad_output, output_);
  const int64_t in_h = input_shape_[2], in_w = input_shape_[3];
  window_average_backward(grad_output, input_shape_, grad_input_, [&](int64_t oh, int64_t ow) {
    return window_at(*this, oh, ow, in_h, in_w);
  });
  return grad_input_;
}

}  // namespace bnlab::nn
