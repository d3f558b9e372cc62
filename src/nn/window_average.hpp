// Average pooling's two passes, shared by AvgPool2d and AdaptiveAvgPool2d:
// they differ only in where each output's window lies and what divides it.
#pragma once

#include <cstdint>

#include "bnlab/tensor.hpp"
#include "core/parallel.hpp"

namespace bnlab::nn {

// One output's window: input rows [h0, h1), columns [w0, w1), and the divisor
// of its sum (0: the window holds no input, the output is 0).
struct PoolWindow {
  int64_t h0, h1, w0, w1;
  int64_t divisor;
};

/* y[n, c, oh, ow] = sum of x[n, c, h0:h1, w0:w1] / divisor, window_at(oh, ow)
 * giving the window; x (N, C, H, W), y already sized (N, C, OH, OW). One
 * (n, c) plane per task. */
template <class WindowAt>
void window_average_forward(const Tensor& input, Tensor& output, WindowAt&& window_at) {
  const int64_t in_h = input.size(2), in_w = input.size(3);
  const int64_t out_h = output.size(2), out_w = output.size(3);
  const float* x = input.data();
  float* y = output.data();
  parallel_for(input.size(0) * input.size(1), input.numel(), [&](int64_t plane) {
    const float* src = x + plane * in_h * in_w;
    float* dst = y + plane * out_h * out_w;
    for (int64_t oh = 0; oh < out_h; ++oh)
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const PoolWindow win = window_at(oh, ow);
        float sum = 0.0f;
        for (int64_t ih = win.h0; ih < win.h1; ++ih)
          for (int64_t iw = win.w0; iw < win.w1; ++iw) sum += src[ih * in_w + iw];
        dst[oh * out_w + ow] = win.divisor == 0 ? 0.0f : sum / static_cast<float>(win.divisor);
      }
  });
}

/* dx = 0, then each dy[n, c, oh, ow] / divisor added over its window (windows
 * may overlap); dx resized to input_shape. */
template <class WindowAt>
void window_average_backward(const Tensor& grad_output, const Shape& input_shape,
                             Tensor& grad_input, WindowAt&& window_at) {
  grad_input.resize(input_shape);
  grad_input.fill(0.0f);
  const int64_t in_h = input_shape[2], in_w = input_shape[3];
  const int64_t out_h = grad_output.size(2), out_w = grad_output.size(3);
  const float* dy = grad_output.data();
  float* dx = grad_input.data();
  parallel_for(input_shape[0] * input_shape[1], grad_input.numel(), [&](int64_t plane) {
    const float* src = dy + plane * out_h * out_w;
    float* dst = dx + plane * in_h * in_w;
    for (int64_t oh = 0; oh < out_h; ++oh)
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const PoolWindow win = window_at(oh, ow);
        if (win.divisor == 0) continue;
        const float g = src[oh * out_w + ow] / static_cast<float>(win.divisor);
        for (int64_t ih = win.h0; ih < win.h1; ++ih)
          for (int64_t iw = win.w0; iw < win.w1; ++iw) dst[ih * in_w + iw] += g;
      }
  });
}

}  // namespace bnlab::nn
