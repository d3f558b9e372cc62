#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "bnlab/nn/layers.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::check_gradients;
using test::random_tensor;

// Normal values moved away from 0 by at least 0.1, so central differences with
// h = 0.01 never straddle a kink.
Tensor away_from_zero(const Shape& shape, uint64_t seed) {
  Tensor x = random_tensor(shape, seed);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] += x[i] >= 0 ? 0.1f : -0.1f;
  return x;
}

TEST(ReLU, ForwardClampsNegativesToZero) {
  ReLU relu;
  const Tensor x = random_tensor({3, 7}, 1);
  const Tensor& y = relu.forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(y[i], x[i] > 0 ? x[i] : 0.0f);
}

TEST(ReLU, GradientsMatchCentralDifferences) {
  ReLU relu;
  check_gradients(relu, away_from_zero({4, 5}, 2), 3);
}

TEST(ReLU, FusedPassesInputAndGradientThrough) {
  ReLU relu;
  relu.fused = true;
  const Tensor x = random_tensor({2, 3}, 4);
  EXPECT_EQ(&relu.forward(x), &x);
  const Tensor dy = random_tensor({2, 3}, 5);
  EXPECT_EQ(&relu.backward(dy), &dy);
}

// PyTorch 1.13: torch.relu(x) and its backward with dy = 1 for
// x = [nan, -1, 2, -0.0] give y = [nan, 0, 2, -0.0] and dx = [1, 0, 1, 0];
// leaky_relu(x, 0.01) gives y = [nan, -0.01, 2, -0.0], dx = [0.01, 0.01, 1, 0.01].
const float kNan = std::nanf("");
const std::vector<float> kNanInput = {kNan, -1.0f, 2.0f, -0.0f};

Tensor nan_input() {
  Tensor x({1, 4});
  for (int64_t i = 0; i < 4; ++i) x[i] = kNanInput[static_cast<size_t>(i)];
  return x;
}

Tensor ones(const Shape& shape) { return Tensor(shape, 1.0f); }

TEST(ReLU, PropagatesNaNAsPyTorchDoes) {
  ReLU relu;
  const Tensor x = nan_input();
  const Tensor& y = relu.forward(x);
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_EQ(y[2], 2.0f);
  EXPECT_EQ(y[3], 0.0f);
  const Tensor& dx = relu.backward(ones(x.shape()));
  const float expected[] = {1.0f, 0.0f, 1.0f, 0.0f};
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(dx[i], expected[i]) << i;
}

TEST(LeakyReLU, PropagatesNaNAsPyTorchDoes) {
  LeakyReLU leaky(0.01);
  const Tensor x = nan_input();
  const Tensor& y = leaky.forward(x);
  EXPECT_TRUE(std::isnan(y[0]));
  EXPECT_FLOAT_EQ(y[1], -0.01f);
  EXPECT_EQ(y[2], 2.0f);
  EXPECT_EQ(y[3], 0.0f);
  const Tensor& dx = leaky.backward(ones(x.shape()));
  const float expected[] = {0.01f, 0.01f, 1.0f, 0.01f};
  for (int64_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(dx[i], expected[i]) << i;
}

TEST(LeakyReLU, ForwardScalesNegatives) {
  LeakyReLU leaky(0.2);
  const Tensor x = random_tensor({3, 4}, 6);
  const Tensor& y = leaky.forward(x);
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_FLOAT_EQ(y[i], x[i] > 0 ? x[i] : static_cast<float>(0.2 * x[i]));
}

TEST(LeakyReLU, GradientsMatchCentralDifferences) {
  LeakyReLU leaky(0.05);
  check_gradients(leaky, away_from_zero({3, 6}, 7), 8);
}

TEST(Sigmoid, ForwardMatchesFloat64) {
  Sigmoid sigmoid;
  const Tensor x = random_tensor({4, 4}, 9, 3.0f);
  const Tensor& y = sigmoid.forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(y[i], 1.0 / (1.0 + std::exp(-double(x[i]))), 1e-6);
}

TEST(Sigmoid, GradientsMatchCentralDifferences) {
  Sigmoid sigmoid;
  check_gradients(sigmoid, random_tensor({3, 5}, 10, 2.0f), 11);
}

TEST(Tanh, ForwardMatchesFloat64) {
  Tanh tanh_module;
  const Tensor x = random_tensor({4, 4}, 12, 2.0f);
  const Tensor& y = tanh_module.forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_NEAR(y[i], std::tanh(double(x[i])), 1e-6);
}

TEST(Tanh, GradientsMatchCentralDifferences) {
  Tanh tanh_module;
  check_gradients(tanh_module, random_tensor({3, 5}, 13), 14);
}

TEST(Activations, LargeTensorsUseEveryChunk) {
  ReLU relu;
  const Tensor x = random_tensor({64, 3000}, 15);
  const Tensor& y = relu.forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(y[i], x[i] > 0 ? x[i] : 0.0f) << i;
}

TEST(Activations, ReprsMatchPyTorch) {
  EXPECT_EQ(ReLU().repr(), "ReLU()");
  EXPECT_EQ(LeakyReLU().repr(), "LeakyReLU(negative_slope=0.01)");
  EXPECT_EQ(LeakyReLU(0.2).repr(), "LeakyReLU(negative_slope=0.2)");
  EXPECT_EQ(Sigmoid().repr(), "Sigmoid()");
  EXPECT_EQ(Tanh().repr(), "Tanh()");
  EXPECT_EQ(Flatten().repr(), "Flatten(start_dim=1, end_dim=-1)");
}

TEST(Flatten, KeepsValuesAndRestoresTheShapeBackward) {
  Flatten flatten;
  const Tensor x = random_tensor({2, 3, 2, 2}, 16);
  const Tensor& y = flatten.forward(x);
  ASSERT_EQ(y.shape(), (Shape{2, 12}));
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(y[i], x[i]);
  check_gradients(flatten, x, 17);
}

TEST(Flatten, PassesAFlatInputAndItsGradientThrough) {
  Flatten flatten;
  const Tensor x = random_tensor({3, 5}, 18);
  EXPECT_EQ(&flatten.forward(x), &x);  // no copy: the input is already (N, features)
  const Tensor dy = random_tensor({3, 5}, 19);
  EXPECT_EQ(&flatten.backward(dy), &dy);
  // After a 4-D input the copy (and its gradient) is back.
  const Tensor x4 = random_tensor({3, 5, 1, 1}, 20);
  const Tensor& y4 = flatten.forward(x4);
  EXPECT_NE(&y4, &x4);
  EXPECT_EQ(flatten.backward(dy).shape(), x4.shape());
}

}  // namespace
}  // namespace bnlab::nn
