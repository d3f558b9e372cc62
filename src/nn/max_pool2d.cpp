// MaxPool2d: k x k windows, stride s, padding p (padded positions count as
// -inf, so they never win), NCHW. The first maximum of a window in row-major
// order wins ties, and NaN wins over numbers, as in PyTorch's CPU kernel.
#include <cmath>
#include <cstring>
#include <limits>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "core/parallel.hpp"
#include "kernels/max_pool2d.hpp"

namespace bnlab::nn {

MaxPool2d::MaxPool2d(int64_t kernel_size, std::optional<int64_t> stride, int64_t padding)
    : kernel_size(kernel_size), stride(stride ? *stride : kernel_size), padding(padding) {
  if (kernel_size <= 0)
    throw Error("MaxPool2d: kernel_size must be positive, got " + std::to_string(kernel_size));
  if (this->stride <= 0)
    throw Error("MaxPool2d: stride must be positive, got " + std::to_string(this->stride));
  if (padding < 0 || 2 * padding > kernel_size)
    throw Error("MaxPool2d: padding should be at most half of kernel_size (" +
                std::to_string(kernel_size) + "), got " + std::to_string(padding));
}

Shape MaxPool2d::output_shape(const Shape& input) const {
  if (input.size() != 4)
    throw Error(repr() + ": expected 4-D input (N, C, H, W), got " + shape_string(input));
  const int64_t h = input[2] + 2 * padding - kernel_size;
  const int64_t w = input[3] + 2 * padding - kernel_size;
  if (h < 0 || w < 0)
    throw Error(repr() + ": input " + shape_string(input) + " is smaller than the window");
  return {input[0], input[1], h / stride + 1, w / stride + 1};
}

/* Forward. y[i, c, oh, ow] = max over the window of x[i, c, oh*s - p + kh, ow*s - p + kw];
 * argmax (the index in the input plane of the winner) is kept for backward.
 * One task per (i, c) plane. */
const Tensor& MaxPool2d::forward(const Tensor& input) {
  if (input.shape() != input_shape_) {
    const Shape out_shape = output_shape(input.shape());
    if (input.size(2) * input.size(3) > std::numeric_limits<int32_t>::max())
      throw Error(repr() + ": input plane " + shape_string(input.shape()) + " is too large");
    output_.resize(out_shape);
    input_shape_ = input.shape();
  }
  const int64_t planes = output_.size(0) * output_.size(1);
  const int64_t h = input_shape_[2], w = input_shape_[3];
  const int64_t out_h = output_.size(2), out_w = output_.size(3);
  argmax_.resize(static_cast<size_t>(output_.numel()));
  const float* x = input.data();
  float* y = output_.data();
  int32_t* argmax = argmax_.data();
  if (kernel_size == 2 && stride == 2 && padding == 0) {
    // The common 2x2 window without padding: the vector row loop of
    // src/kernels/max_pool2d.cpp, the same first-maximum and first-NaN rule.
    parallel_for(planes, input.numel(), [&](int64_t plane) {
      const float* src = x + plane * h * w;
      for (int64_t oh = 0; oh < out_h; ++oh) {
        const int64_t out = plane * out_h * out_w + oh * out_w;
        kernels::max_pool_2x2_row(src + 2 * oh * w, src + (2 * oh + 1) * w, out_w,
                                  static_cast<int32_t>(2 * oh * w), static_cast<int32_t>(w),
                                  y + out, argmax + out);
      }
    });
    return output_;
  }
  parallel_for(planes, input.numel(), [&](int64_t plane) {
    const float* src = x + plane * h * w;
    for (int64_t oh = 0; oh < out_h; ++oh)
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int64_t h0 = oh * stride - padding, w0 = ow * stride - padding;
        float best = -std::numeric_limits<float>::infinity();
        int64_t best_index = -1;
        bool found_nan = false;  // the first NaN is final
        for (int64_t ih = std::max<int64_t>(h0, 0); ih < std::min(h0 + kernel_size, h) && !found_nan; ++ih)
          for (int64_t iw = std::max<int64_t>(w0, 0); iw < std::min(w0 + kernel_size, w) && !found_nan; ++iw) {
            const float v = src[ih * w + iw];
            if (v > best || std::isnan(v) || best_index < 0) {
              best = v;
              best_index = ih * w + iw;
              found_nan = std::isnan(v);
            }
          }
        const int64_t out_index = plane * out_h * out_w + oh * out_w + ow;
        y[out_index] = best;
        argmax[out_index] = static_cast<int32_t>(best_index);
      }
  });
  return output_;
}

/* Backward. dx = 0, then dx[i, c, argmax] += dy[i, c, oh, ow] for each output. */
const Tensor& MaxPool2d::backward(const Tensor& grad_output) {
  if (grad_output.shape() != output_.shape())
    throw Error(repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the output " + shape_string(output_.shape()));
  grad_input_.resize(input_shape_);
  const int64_t plane_in = input_shape_[2] * input_shape_[3];
  const int64_t plane_out = output_.size(2) * output_.size(3);
  const int64_t planes = output_.size(0) * output_.size(1);
  const float* dy = grad_output.data();
  float* dx = grad_input_.data();
  const int32_t* argmax = argmax_.data();
  parallel_for(planes, grad_input_.numel(), [&](int64_t plane) {
    float* dst = dx + plane * plane_in;
    std::memset(dst, 0, sizeof(float) * static_cast<size_t>(plane_in));
    for (int64_t p = 0; p < plane_out; ++p) {
      const int32_t at = argmax[plane * plane_out + p];
      if (at >= 0) dst[at] += dy[plane * plane_out + p];
    }
  });
  return grad_input_;
}

std::string MaxPool2d::repr() const {
  return "MaxPool2d(kernel_size=" + std::to_string(kernel_size) +
         ", stride=" + std::to_string(stride) + ", padding=" + std::to_string(padding) +
         ", dilation=1, ceil_mode=False)";
}

}  // namespace bnlab::nn
