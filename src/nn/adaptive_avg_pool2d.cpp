// AdaptiveAvgPool2d: average pooling to a fixed output size with PyTorch's
// window rule, NCHW (the passes: window_average.hpp).
#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "nn/window_average.hpp"

namespace bnlab::nn {

AdaptiveAvgPool2d::AdaptiveAvgPool2d(Size2 output_size) : output_size(output_size) {
  if (output_size.h < 0 || output_size.w < 0 || (!output_size.pair && output_size.h == 0))
    throw Error("AdaptiveAvgPool2d: output_size must be positive, got " + output_size.repr());
}

std::string AdaptiveAvgPool2d::repr() const {
  return "AdaptiveAvgPool2d(output_size=" + output_size.repr() + ")";
}

Shape AdaptiveAvgPool2d::output_shape(const Shape& input) const {
  if (input.size() != 4)
    throw Error(repr() + ": expected 4-D input (N, C, H, W), got " + shape_string(input));
  if (input[2] < 1 || input[3] < 1)
    throw Error(repr() + ": input " + shape_string(input) + " has an empty plane");
  return {input[0], input[1], output_size.h == 0 ? input[2] : output_size.h,
          output_size.w == 0 ? input[3] : output_size.w};
}

namespace {
// PyTorch's start_index and end_index: cell i of `out` over `in` covers
// [floor(i * in / out), ceil((i + 1) * in / out)).
int64_t start_index(int64_t i, int64_t out, int64_t in) { return i * in / out; }
int64_t end_index(int64_t i, int64_t out, int64_t in) { return ((i + 1) * in + out - 1) / out; }

// Output cell (oh, ow)'s window over an input of in_h x in_w.
PoolWindow window_at(int64_t oh, int64_t ow, int64_t out_h, int64_t out_w, int64_t in_h,
                     int64_t in_w) {
  const int64_t h0 = start_index(oh, out_h, in_h), h1 = end_index(oh, out_h, in_h);
  const int64_t w0 = start_index(ow, out_w, in_w), w1 = end_index(ow, out_w, in_w);
  return {h0, h1, w0, w1, (h1 - h0) * (w1 - w0)};
}
}  // namespace

/* y[n, c, oh, ow] = mean of x[n, c, h, w] over h in the window of oh, w in that of ow. */
const Tensor& AdaptiveAvgPool2d::forward(const Tensor& input) {
  const Shape out = output_shape(input.shape());
  output_.resize(out);
  input_shape_ = input.shape();
  window_average_forward(input, output_, [&](int64_t oh, int64_t ow) {
    return window_at(oh, ow, out[2], out[3], input_shape_[2], input_shape_[3]);
  });
  return output_;
}

const Tensor& AdaptiveAvgPool2d::backward(const Tensor& grad_output) {
  check_grad_output(grad_output, output_);
  const int64_t out_h = output_.size(2), out_w = output_.size(3);
  window_average_backward(grad_output, input_shape_, grad_input_, [&](int64_t oh, int64_t ow) {
    return window_at(oh, ow, out_h, out_w, input_shape_[2], input_shape_[3]);
  });
  return grad_input_;
}

}  // namespace bnlab::nn
