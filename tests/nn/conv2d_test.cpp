#include <gtest/gtest.h>

#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/threading.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::check_gradients;
using test::random_tensor;

// Direct convolution in double: y[i,o,oh,ow] = b[o] + sum_{c,kh,kw} W[o,c,kh,kw] x[i,c,oh*s-p+kh,ow*s-p+kw].
std::vector<double> conv_reference(const Tensor& x, const Conv2d& conv) {
  const Shape out = conv.output_shape(x.shape());
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t o_count = out[1], oh_count = out[2], ow_count = out[3], k = conv.kernel_size;
  std::vector<double> y(static_cast<size_t>(shape_numel(out)));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < o_count; ++o)
      for (int64_t oh = 0; oh < oh_count; ++oh)
        for (int64_t ow = 0; ow < ow_count; ++ow) {
          double sum = conv.bias ? conv.bias->value[o] : 0.0;
          for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t kh = 0; kh < k; ++kh)
              for (int64_t kw = 0; kw < k; ++kw) {
                const int64_t ih = oh * conv.stride - conv.padding + kh;
                const int64_t iw = ow * conv.stride - conv.padding + kw;
                if (ih < 0 || ih >= h || iw < 0 || iw >= w) continue;
                sum += static_cast<double>(conv.weight.value[((o * c + ch) * k + kh) * k + kw]) *
                       x[((i * c + ch) * h + ih) * w + iw];
              }
          y[static_cast<size_t>(((i * o_count + o) * oh_count + oh) * ow_count + ow)] = sum;
        }
  return y;
}

struct ConvCase {
  int64_t in, out, k, stride, padding;
  bool bias;
  Shape input;
};

TEST(Conv2d, ForwardMatchesDirectConvolution) {
  const ConvCase cases[] = {{1, 4, 3, 1, 1, true, {2, 1, 6, 6}},
                            {3, 5, 3, 2, 0, false, {2, 3, 7, 8}},
                            {2, 3, 5, 2, 2, true, {3, 2, 9, 7}},
                            {4, 2, 1, 1, 0, true, {2, 4, 3, 3}},
                            // Output channels multiples of 16: oneDNN's blocked layouts inside
                            // (backward data too when the input channels are).
                            {3, 16, 3, 1, 1, true, {2, 3, 6, 6}},
                            {16, 32, 3, 1, 1, false, {2, 16, 6, 5}},
                            {32, 16, 3, 2, 1, true, {3, 32, 7, 7}}};
  uint64_t seed = 1;
  for (const ConvCase& cc : cases) {
    Generator gen(seed++);
    Conv2d conv(cc.in, cc.out, cc.k, cc.stride, cc.padding, cc.bias, gen);
    const Tensor x = random_tensor(cc.input, seed++);
    const Tensor& y = conv.forward(x);
    ASSERT_EQ(y.shape(), conv.output_shape(cc.input));
    const auto expected = conv_reference(x, conv);
    for (int64_t i = 0; i < y.numel(); ++i)
      ASSERT_NEAR(y[i], expected[static_cast<size_t>(i)], 1e-5) << conv.repr() << " at " << i;
  }
}

TEST(Conv2d, GradientsWithPaddingAndBias) {
  Generator gen(10);
  Conv2d conv(2, 3, 3, 1, 1, true, gen);
  check_gradients(conv, random_tensor({2, 2, 4, 4}, 11), 12);
}

TEST(Conv2d, GradientsWithStrideAndNoBias) {
  Generator gen(13);
  Conv2d conv(2, 2, 3, 2, 0, false, gen);
  check_gradients(conv, random_tensor({2, 2, 5, 6}, 14), 15);
}

TEST(Conv2d, GradientsWithStrideAndPadding) {
  Generator gen(16);
  Conv2d conv(1, 2, 3, 2, 1, true, gen);
  check_gradients(conv, random_tensor({2, 1, 5, 5}, 17), 18);
}

// The blocked path (16 -> 16 channels): reorders of the input, the weights,
// the output and every gradient, checked against central differences.
TEST(Conv2d, GradientsOfABlockedLayer) {
  Generator gen(23);
  Conv2d conv(16, 16, 3, 1, 1, true, gen);
  check_gradients(conv, random_tensor({2, 16, 4, 3}, 24), 25);
}

// Blocked forward and backward weights, plain backward data (2 input channels).
TEST(Conv2d, GradientsOfABlockedLayerWithFewInputChannels) {
  Generator gen(26);
  Conv2d conv(2, 16, 3, 2, 1, false, gen);
  check_gradients(conv, random_tensor({2, 2, 5, 4}, 27), 28);
}

// A layer where oneDNN picks Winograd for the forward and backward data on
// an AVX-512 CPU at 2 threads (32 -> 64, 3x3, stride 1, 14x14, batch 32, as
// cnn-bn's second layer; from batch 24 up there): the output and both
// gradients against the direct formulas in double, to 1e-4 * (1 + |ref|)
// (Winograd rounds a little more than the direct convolution); dweight, a sum
// of 6272 products per element, to 1e-4 + 1e-6 * (sum of their |terms|):
// oneDNN's AVX2 weights gradient sums in float chains long enough to reach
// 2.3e-7 of that sum (Zen 3); a lost term (0.55 on average) is off by 100x more.
TEST(Conv2d, WinogradLayerMatchesTheDirectFormulas) {
  set_num_threads(2);
  Generator gen(30);
  Conv2d conv(32, 64, 3, 1, 1, false, gen);
  const int64_t n = 32;
  const Tensor x = random_tensor({n, 32, 14, 14}, 31);
  const Tensor dy = random_tensor({n, 64, 14, 14}, 32);
  const Tensor& y = conv.forward(x);
  const std::vector<double> y_ref = conv_reference(x, conv);
  for (int64_t i = 0; i < y.numel(); ++i)
    ASSERT_NEAR(y[i], y_ref[size_t(i)], 1e-4 * (1 + std::fabs(y_ref[size_t(i)]))) << "y " << i;
  conv.weight.grad.fill(0.0f);
  const Tensor& dx = conv.backward(dy);
  // dx[i,c,ih,iw] = sum dy[i,o,oh,ow] W[o,c,kh,kw], dW[o,c,kh,kw] = sum dy[i,o,oh,ow] x[i,c,ih,iw]
  // over ih = oh - 1 + kh, iw = ow - 1 + kw inside the image.
  std::vector<double> dx_ref(size_t(x.numel()), 0.0), dw_ref(size_t(conv.weight.value.numel()), 0.0);
  std::vector<double> dw_scale(dw_ref.size(), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < 64; ++o)
      for (int64_t oh = 0; oh < 14; ++oh)
        for (int64_t ow = 0; ow < 14; ++ow) {
          const double g = dy[((i * 64 + o) * 14 + oh) * 14 + ow];
          for (int64_t c = 0; c < 32; ++c)
            for (int64_t kh = 0; kh < 3; ++kh)
              for (int64_t kw = 0; kw < 3; ++kw) {
                const int64_t ih = oh - 1 + kh, iw = ow - 1 + kw;
                if (ih < 0 || ih >= 14 || iw < 0 || iw >= 14) continue;
                const int64_t xi = ((i * 32 + c) * 14 + ih) * 14 + iw, wi = ((o * 32 + c) * 3 + kh) * 3 + kw;
                dx_ref[size_t(xi)] += g * conv.weight.value[wi];
                dw_ref[size_t(wi)] += g * x[xi];
                dw_scale[size_t(wi)] += std::fabs(g * x[xi]);
              }
        }
  for (int64_t i = 0; i < dx.numel(); ++i)
    ASSERT_NEAR(dx[i], dx_ref[size_t(i)], 1e-4 * (1 + std::fabs(dx_ref[size_t(i)]))) << "dx " << i;
  for (int64_t i = 0; i < conv.weight.grad.numel(); ++i)
    ASSERT_NEAR(conv.weight.grad[i], dw_ref[size_t(i)], 1e-4 + 1e-6 * dw_scale[size_t(i)])
        << "dweight " << i;
  set_num_threads(0);
}

// oneDNN sizes its buffers for the thread count at creation; a change of
// bnlab::set_num_threads between calls rebuilds the primitives.
TEST(Conv2d, ChangingTheThreadCountKeepsResults) {
  Generator gen(20);
  Conv2d conv(3, 8, 3, 1, 1, true, gen);
  const Tensor x = random_tensor({4, 3, 10, 10}, 21);
  const Tensor dy = random_tensor({4, 8, 10, 10}, 22);
  set_num_threads(1);
  const Tensor y1 = conv.forward(x);
  const Tensor dx1 = conv.backward(dy);
  set_num_threads(2);
  const Tensor& y2 = conv.forward(x);
  const Tensor& dx2 = conv.backward(dy);
  set_num_threads(0);
  for (int64_t i = 0; i < y1.numel(); ++i) ASSERT_NEAR(y1[i], y2[i], 1e-5) << i;
  for (int64_t i = 0; i < dx1.numel(); ++i) ASSERT_NEAR(dx1[i], dx2[i], 1e-5) << i;
}

TEST(Conv2d, OutputShapeAndErrors) {
  Generator gen(0);
  Conv2d conv(1, 32, 3, 1, 1, false, gen);
  EXPECT_EQ(conv.output_shape({64, 1, 28, 28}), (Shape{64, 32, 28, 28}));
  EXPECT_THROW(conv.output_shape({64, 3, 28, 28}), Error);
  EXPECT_THROW(conv.output_shape({64, 784}), Error);
  Conv2d big(1, 1, 5, 1, 0, true, gen);
  EXPECT_THROW(big.output_shape({1, 1, 4, 4}), Error);
  EXPECT_THROW(Conv2d(1, 1, 3, 0, 0, true, gen), Error);
}

TEST(Conv2d, ReprMatchesPyTorch) {
  Generator gen(0);
  EXPECT_EQ(Conv2d(1, 32, 3, 1, 1, false, gen).repr(),
            "Conv2d(1, 32, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)");
  EXPECT_EQ(Conv2d(32, 64, 5, 2, 0, true, gen).repr(),
            "Conv2d(32, 64, kernel_size=(5, 5), stride=(2, 2))");
}

}  // namespace
}  // namespace bnlab::nn
