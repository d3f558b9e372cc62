#include <gtest/gtest.h>

#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::check_gradients;
using test::random_tensor;

// y[i, o] = sum_k x[i, k] * W[o, k] + b[o], in double.
std::vector<double> linear_reference(const Tensor& x, const Linear& layer) {
  const int64_t n = x.size(0), in = layer.in_features, out = layer.out_features;
  std::vector<double> y(static_cast<size_t>(n * out));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double sum = layer.bias ? layer.bias->value[o] : 0.0;
      for (int64_t k = 0; k < in; ++k)
        sum += static_cast<double>(x[i * in + k]) * layer.weight.value[o * in + k];
      y[static_cast<size_t>(i * out + o)] = sum;
    }
  return y;
}

TEST(Linear, ForwardMatchesFloat64Reference) {
  Generator gen(1);
  Linear layer(37, 19, true, gen);
  const Tensor x = random_tensor({13, 37}, 2);
  const Tensor& y = layer.forward(x);
  ASSERT_EQ(y.shape(), (Shape{13, 19}));
  const auto expected = linear_reference(x, layer);
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_NEAR(y[i], expected[static_cast<size_t>(i)], 1e-5);
}

TEST(Linear, InitialisationIsUniformWithinOneOverSqrtFanIn) {
  Generator gen(3);
  Linear layer(100, 50, true, gen);
  const float bound = 0.1f;
  float lo = 1, hi = -1;
  for (int64_t i = 0; i < layer.weight.value.numel(); ++i) {
    lo = std::min(lo, layer.weight.value[i]);
    hi = std::max(hi, layer.weight.value[i]);
  }
  EXPECT_GE(lo, -bound);
  EXPECT_LE(hi, bound);
  EXPECT_LT(lo, -0.09f);  // the draws fill the interval
  EXPECT_GT(hi, 0.09f);
  for (int64_t i = 0; i < layer.bias->value.numel(); ++i) EXPECT_LE(std::abs(layer.bias->value[i]), bound);
}

TEST(Linear, GradientsMatchCentralDifferencesWithBias) {
  Generator gen(4);
  Linear layer(6, 5, true, gen);
  check_gradients(layer, random_tensor({4, 6}, 5), 6);
}

TEST(Linear, GradientsMatchCentralDifferencesWithoutBias) {
  Generator gen(7);
  Linear layer(7, 3, false, gen);
  EXPECT_EQ(layer.parameters().size(), 1u);
  check_gradients(layer, random_tensor({5, 7}, 8), 9);
}

TEST(Linear, BackwardAddsIntoParameterGradients) {
  Generator gen(10);
  Linear layer(4, 3, true, gen);
  const Tensor x = random_tensor({2, 4}, 11);
  const Tensor dy = random_tensor({2, 3}, 12);
  layer.forward(x);
  layer.backward(dy);
  const Tensor once = layer.weight.grad;
  const Tensor once_bias = layer.bias->grad;
  layer.forward(x);
  layer.backward(dy);
  for (int64_t i = 0; i < once.numel(); ++i) EXPECT_FLOAT_EQ(layer.weight.grad[i], 2 * once[i]);
  for (int64_t i = 0; i < once_bias.numel(); ++i) EXPECT_FLOAT_EQ(layer.bias->grad[i], 2 * once_bias[i]);
}

TEST(Linear, ReprMatchesPyTorch) {
  Generator gen(0);
  EXPECT_EQ(Linear(784, 512, false, gen).repr(), "Linear(in_features=784, out_features=512, bias=False)");
  EXPECT_EQ(Linear(256, 10, true, gen).repr(), "Linear(in_features=256, out_features=10, bias=True)");
}

TEST(Linear, WrongInputWidthNamesTheLayer) {
  Generator gen(0);
  Linear layer(784, 10, true, gen);
  try {
    layer.output_shape({64, 783});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Linear(in_features=784"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("(64, 783)"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace bnlab::nn
