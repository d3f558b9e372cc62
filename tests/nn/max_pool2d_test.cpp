#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::check_gradients;
using test::from_blocked;
using test::to_blocked;

// Distinct values 0.1 apart in a shuffled order, so an h = 0.01 nudge never changes a winner.
Tensor distinct_values(const Shape& shape, uint64_t seed) {
  Tensor x(shape);
  std::vector<int64_t> order(static_cast<size_t>(x.numel()));
  std::iota(order.begin(), order.end(), 0);
  Generator gen(seed);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[gen.below(i)]);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = 0.1f * static_cast<float>(order[i]) - 1.0f;
  return x;
}

// max over the window in double, padded positions skipped.
std::vector<double> pool_reference(const Tensor& x, const MaxPool2d& pool) {
  const Shape out = pool.output_shape(x.shape());
  const int64_t h = x.size(2), w = x.size(3), k = pool.kernel_size;
  std::vector<double> y;
  for (int64_t plane = 0; plane < out[0] * out[1]; ++plane)
    for (int64_t oh = 0; oh < out[2]; ++oh)
      for (int64_t ow = 0; ow < out[3]; ++ow) {
        double best = -std::numeric_limits<double>::infinity();
        for (int64_t kh = 0; kh < k; ++kh)
          for (int64_t kw = 0; kw < k; ++kw) {
            const int64_t ih = oh * pool.stride - pool.padding + kh;
            const int64_t iw = ow * pool.stride - pool.padding + kw;
            if (ih >= 0 && ih < h && iw >= 0 && iw < w) best = std::max(best, double(x[(plane * h + ih) * w + iw]));
          }
        y.push_back(best);
      }
  return y;
}

TEST(MaxPool2d, ForwardMatchesReference) {
  const MaxPool2d pools[] = {MaxPool2d(2), MaxPool2d(3, 2, 1), MaxPool2d(3, 1), MaxPool2d(2, 1, 1)};
  for (MaxPool2d pool : pools) {
    const Tensor x = test::random_tensor({2, 3, 7, 6}, 1);
    const Tensor& y = pool.forward(x);
    const auto expected = pool_reference(x, pool);
    ASSERT_EQ(static_cast<size_t>(y.numel()), expected.size());
    for (int64_t i = 0; i < y.numel(); ++i) EXPECT_EQ(y[i], expected[static_cast<size_t>(i)]) << pool.repr();
  }
}

TEST(MaxPool2d, GradientsMatchCentralDifferences) {
  MaxPool2d pool(2);
  check_gradients(pool, distinct_values({2, 2, 4, 6}, 2), 3);
  MaxPool2d padded(3, 2, 1);
  check_gradients(padded, distinct_values({1, 2, 5, 5}, 4), 5);
}

// Odd sizes leave a last row and column no 2x2 window covers: their gradient
// is 0, also when the module's buffer held a larger input's gradient before.
TEST(MaxPool2d, UncoveredRowAndColumnGetZeroGradient) {
  MaxPool2d pool(2);
  pool.forward(distinct_values({2, 2, 6, 8}, 5));
  pool.backward(Tensor({2, 2, 3, 4}, 1.0f));  // fills the buffer with ones at the winners
  check_gradients(pool, distinct_values({2, 2, 5, 7}, 6), 7);
  const Tensor x = distinct_values({2, 2, 5, 7}, 6);
  pool.forward(x);
  const Tensor& dx = pool.backward(Tensor({2, 2, 2, 3}, 1.0f));
  for (int64_t plane = 0; plane < 4; ++plane)
    for (int64_t r = 0; r < 5; ++r)
      for (int64_t c = 0; c < 7; ++c)
        if (r == 4 || c == 6) {
          EXPECT_EQ(dx[(plane * 5 + r) * 7 + c], 0.0f) << r << "," << c;
        }
  double total = 0.0;
  for (int64_t i = 0; i < dx.numel(); ++i) total += dx[i];
  EXPECT_EQ(total, 4 * 2 * 3);  // one 1 per window
}

TEST(MaxPool2d, TiesGoToTheFirstMaximum) {
  MaxPool2d pool(2);
  const Tensor x({1, 1, 2, 2}, 3.0f);
  pool.forward(x);
  const Tensor& dx = pool.backward(Tensor({1, 1, 1, 1}, 1.0f));
  EXPECT_EQ(dx[0], 1.0f);
  EXPECT_EQ(dx[1], 0.0f);
  EXPECT_EQ(dx[2], 0.0f);
  EXPECT_EQ(dx[3], 0.0f);
}

TEST(MaxPool2d, TheFirstNaNOfAWindowWinsAsInPyTorch) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // 2x2 windows without padding (the fast path) and 3x3 with padding (the general one).
  Tensor x({1, 1, 2, 4}, 0.0f);
  const float values[] = {1, nan, 3, 4, 5, 6, nan, 2};
  for (int64_t i = 0; i < 8; ++i) x[i] = values[i];
  MaxPool2d pool(2);
  const Tensor& y = pool.forward(x);
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_TRUE(std::isnan(y[1]));
  const Tensor& dx = pool.backward(Tensor({1, 1, 1, 2}, 1.0f));
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(dx[i], (i == 1 || i == 6) ? 1.0f : 0.0f) << i;

  MaxPool2d padded(3, 2, 1);
  const Tensor& yp = padded.forward(x);
  EXPECT_TRUE(std::isnan(yp[0]));
}

TEST(MaxPool2d, OverlappingWindowsAddTheirGradients) {
  MaxPool2d pool(2, 1);
  Tensor x({1, 1, 2, 3}, 0.0f);
  x[1] = 5.0f;  // the maximum of both windows
  pool.forward(x);
  const Tensor& dx = pool.backward(Tensor({1, 1, 1, 2}, 1.5f));
  EXPECT_EQ(dx[1], 3.0f);
}

TEST(MaxPool2d, ShapesErrorsAndRepr) {
  EXPECT_EQ(MaxPool2d(2).output_shape({64, 32, 28, 28}), (Shape{64, 32, 14, 14}));
  EXPECT_EQ(MaxPool2d(2).output_shape({1, 1, 7, 7}), (Shape{1, 1, 3, 3}));
  EXPECT_THROW(MaxPool2d(2).output_shape({64, 784}), Error);
  EXPECT_THROW(MaxPool2d(2, 2, 2), Error);
  EXPECT_EQ(MaxPool2d(2).repr(), "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  EXPECT_EQ(MaxPool2d(3, 1, 1).repr(), "MaxPool2d(kernel_size=3, stride=1, padding=1, dilation=1, ceil_mode=False)");
}

// nChw16c (MemoryFormat): the plain module is the reference, bit for bit.

// Values from a few integers (many ties in every window), about one in 25 NaN.
Tensor tied_values(const Shape& shape, uint64_t seed) {
  Tensor x(shape);
  Generator gen(seed);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const uint64_t r = gen.below(25);
    x[i] = r == 0 ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>(r % 4);
  }
  return x;
}

// Same shape and the same bits in every element (NaN payloads included);
// names the first element that differs.
::testing::AssertionResult bitwise_equal(const Tensor& got, const Tensor& want) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure()
           << "shape " << shape_string(got.shape()) << " vs " << shape_string(want.shape());
  for (int64_t i = 0; i < got.numel(); ++i)
    if (std::memcmp(&got.data()[i], &want.data()[i], sizeof(float)) != 0)
      return ::testing::AssertionFailure()
             << "element " << i << ": " << got[i] << " vs " << want[i];
  return ::testing::AssertionSuccess();
}

TEST(MaxPool2d, Nchw16cForwardAndBackwardMatchPlainBitForBit) {
  // 2x2 s2 (the vector rows), 3x3 s2 p1, 2x2 s1 (overlapping), 3x3 s1 p1 (general loop).
  const MaxPool2d pools[] = {MaxPool2d(2), MaxPool2d(3, 2, 1), MaxPool2d(2, 1), MaxPool2d(3, 1, 1)};
  // C in {16, 32, 48}; odd sizes. The first is large enough to run over
  // threads, and leaves its gradient in the buffers the smaller ones reuse.
  const Shape shapes[] = {{4, 32, 28, 28}, {2, 16, 8, 8}, {3, 32, 7, 9},
                          {1, 48, 6, 10},  {2, 16, 5, 5}, {1, 48, 9, 7}};
  uint64_t seed = 10;
  for (const MaxPool2d& window : pools) {
    MaxPool2d blocked = window;
    for (const Shape& shape : shapes) {
      SCOPED_TRACE(window.repr() + " on " + shape_string(shape));
      MaxPool2d plain = window;
      const Tensor x = tied_values(shape, ++seed);
      const Tensor& y = plain.forward(x);
      const Tensor& y_blocked =
          blocked.forward_formatted(to_blocked(x), MemoryFormat::blocked16, MemoryFormat::blocked16);
      EXPECT_TRUE(bitwise_equal(from_blocked(y_blocked), y));

      Tensor dy = test::random_tensor(y.shape(), ++seed);
      for (int64_t i = 0; i < dy.numel(); i += 7) dy[i] = -0.0f;  // +0 once added to dx's zero
      const Tensor& dx = plain.backward(dy);
      const Tensor& dx_blocked = blocked.backward(to_blocked(dy));
      EXPECT_TRUE(bitwise_equal(from_blocked(dx_blocked), dx));
    }
  }
}

// The format is the last forward's: one module serves both, and its backward
// follows the forward before it.
TEST(MaxPool2d, OneModuleSwitchesBetweenPlainAndNchw16c) {
  MaxPool2d reference(2), pool(2);
  const Shape shape{2, 32, 6, 6};
  for (int round = 0; round < 2; ++round) {
    const Tensor x = tied_values(shape, 40 + round);
    const Tensor dy = test::random_tensor({2, 32, 3, 3}, 50 + round);
    const Tensor y = reference.forward(x);
    const Tensor dx = reference.backward(dy);
    EXPECT_TRUE(bitwise_equal(from_blocked(pool.forward_formatted(
                                  to_blocked(x), MemoryFormat::blocked16, MemoryFormat::blocked16)),
                              y));
    EXPECT_TRUE(bitwise_equal(from_blocked(pool.backward(to_blocked(dy))), dx));
    EXPECT_TRUE(bitwise_equal(pool.forward(x), y));
    EXPECT_TRUE(bitwise_equal(pool.backward(dy), dx));
  }
}

TEST(MaxPool2d, Nchw16cNeedsChannelsInBlocksOf16AndTheSameFormatOut) {
  MaxPool2d pool(2);
  const MemoryFormat plain = MemoryFormat::plain, blocked = MemoryFormat::blocked16;
  const Tensor x({2, 16, 4, 4}, 1.0f);
  EXPECT_THROW(pool.forward_formatted(x, blocked, plain), Error);
  EXPECT_THROW(pool.forward_formatted(x, plain, blocked), Error);
  EXPECT_THROW(pool.forward_formatted(Tensor({2, 3, 4, 4}), blocked, blocked), Error);
  EXPECT_THROW(pool.forward_formatted(Tensor({16, 4, 4}), blocked, blocked), Error);
  try {
    pool.forward_formatted(x, blocked, plain);
    ADD_FAILURE() << "nChw16c in, plain out did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MaxPool2d(kernel_size=2"), std::string::npos) << e.what();
  }
  EXPECT_EQ(pool.forward_formatted(x, plain, plain).shape(), (Shape{2, 16, 2, 2}));
}

TEST(MaxPool2d, KeepsNchw16cWhenChannelsAreAMultipleOf16) {
  const MaxPool2d pool(2);
  EXPECT_EQ(pool.blocked16_use({64, 32, 28, 28}), Blocked16Use::keeps);
  EXPECT_EQ(pool.blocked16_use({1, 48, 7, 9}), Blocked16Use::keeps);
  EXPECT_EQ(pool.blocked16_use({64, 3, 28, 28}), Blocked16Use::no);
  EXPECT_EQ(pool.blocked16_use({64, 24, 28, 28}), Blocked16Use::no);
  EXPECT_EQ(pool.blocked16_use({64, 32}), Blocked16Use::no);
}

}  // namespace
}  // namespace bnlab::nn
