#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::check_gradients;
using test::GradCheckOptions;
using test::random_tensor;

// Per-channel batch statistics of x (N, C, S...) in double: mean and biased var.
struct ChannelStats {
  std::vector<double> mean, var;
};
ChannelStats batch_stats(const Tensor& x) {
  const int64_t n = x.size(0), c = x.size(1), s = x.numel() / (n * c);
  ChannelStats st{std::vector<double>(c, 0.0), std::vector<double>(c, 0.0)};
  for (int64_t j = 0; j < c; ++j) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) sum += x[(i * c + j) * s + k];
    const double mean = sum / static_cast<double>(n * s);
    double sq = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) sq += std::pow(x[(i * c + j) * s + k] - mean, 2);
    st.mean[j] = mean;
    st.var[j] = sq / static_cast<double>(n * s);
  }
  return st;
}

// y = (x - mean) / sqrt(var + eps) * w + b per channel, optionally max(., 0).
std::vector<double> bn_reference(const Tensor& x, const std::vector<double>& mean,
                                 const std::vector<double>& var, const BatchNorm& bn, bool relu) {
  const int64_t n = x.size(0), c = x.size(1), s = x.numel() / (n * c);
  std::vector<double> y(static_cast<size_t>(x.numel()));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j)
      for (int64_t k = 0; k < s; ++k) {
        const int64_t at = (i * c + j) * s + k;
        double v = (x[at] - mean[j]) / std::sqrt(var[j] + bn.eps);
        if (bn.affine) v = v * bn.weight.value[j] + bn.bias.value[j];
        y[at] = relu ? std::max(v, 0.0) : v;
      }
  return y;
}

void randomise_affine(BatchNorm& bn, uint64_t seed) {
  const Tensor w = random_tensor({bn.num_features}, seed, 0.5f, 1.0f);
  const Tensor b = random_tensor({bn.num_features}, seed + 1, 0.5f);
  for (int64_t j = 0; j < bn.num_features; ++j) {
    bn.weight.value[j] = w[j];
    bn.bias.value[j] = b[j];
  }
}

TEST(BatchNorm, TrainingForwardUsesBatchStatistics) {
  for (const Shape& shape : {Shape{8, 5}, Shape{4, 3, 6}}) {
    BatchNorm bn(1, shape[1]);
    randomise_affine(bn, 1);
    const Tensor x = random_tensor(shape, 2, 2.0f, 0.5f);
    const Tensor& y = bn.forward(x);
    const ChannelStats st = batch_stats(x);
    const auto expected = bn_reference(x, st.mean, st.var, bn, false);
    for (int64_t i = 0; i < y.numel(); ++i) EXPECT_NEAR(y[i], expected[i], 1e-5) << shape_string(shape);
  }
}

TEST(BatchNorm, TrainingUpdatesRunningStatsWithMomentumAndBesselCorrection) {
  BatchNorm bn(2, 3, 1e-5, 0.3);
  const Tensor x = random_tensor({4, 3, 2, 5}, 3, 1.5f, 2.0f);
  bn.forward(x);
  const ChannelStats st = batch_stats(x);
  const double m = 4 * 2 * 5;
  for (int64_t j = 0; j < 3; ++j) {
    EXPECT_NEAR(bn.running_mean[j], 0.7 * 0.0 + 0.3 * st.mean[j], 1e-6);
    EXPECT_NEAR(bn.running_var[j], 0.7 * 1.0 + 0.3 * st.var[j] * m / (m - 1), 1e-6);
  }
  EXPECT_EQ(bn.num_batches_tracked, 1);
}

TEST(BatchNorm, MomentumNoneKeepsCumulativeAverage) {
  BatchNorm bn(1, 4, 1e-5, std::nullopt);
  std::vector<double> mean_sum(4, 0.0), var_sum(4, 0.0);
  const int batches = 5;
  for (int t = 0; t < batches; ++t) {
    const Tensor x = random_tensor({6, 4}, 100 + t, 1.0f + t, static_cast<float>(t));
    bn.forward(x);
    const ChannelStats st = batch_stats(x);
    for (int j = 0; j < 4; ++j) {
      mean_sum[j] += st.mean[j];
      var_sum[j] += st.var[j] * 6.0 / 5.0;
    }
    EXPECT_EQ(bn.num_batches_tracked, t + 1);
  }
  for (int j = 0; j < 4; ++j) {
    EXPECT_NEAR(bn.running_mean[j], mean_sum[j] / batches, 1e-5);
    EXPECT_NEAR(bn.running_var[j], var_sum[j] / batches, 1e-4);
  }
}

TEST(BatchNorm, EvalUsesRunningStatsAndLeavesThemAlone) {
  BatchNorm bn(2, 3);
  randomise_affine(bn, 4);
  const Tensor stats = random_tensor({6}, 5);
  for (int j = 0; j < 3; ++j) {
    bn.running_mean[j] = stats[j];
    bn.running_var[j] = 0.5f + std::abs(stats[3 + j]);
  }
  bn.eval();
  const Tensor x = random_tensor({2, 3, 3, 3}, 6);
  const Tensor& y = bn.forward(x);
  std::vector<double> mean(3), var(3);
  for (int j = 0; j < 3; ++j) {
    mean[j] = bn.running_mean[j];
    var[j] = bn.running_var[j];
  }
  const auto expected = bn_reference(x, mean, var, bn, false);
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_NEAR(y[i], expected[i], 1e-5);
  EXPECT_EQ(bn.num_batches_tracked, 0);
  EXPECT_EQ(bn.running_mean[0], stats[0]);
}

TEST(BatchNorm, EvalWithoutRunningStatsUsesBatchStatistics) {
  BatchNorm bn(1, 3, 1e-5, 0.1, true, false);
  EXPECT_TRUE(bn.buffers().empty());
  bn.eval();
  const Tensor x = random_tensor({5, 3}, 7);
  const Tensor& y = bn.forward(x);
  const ChannelStats st = batch_stats(x);
  const auto expected = bn_reference(x, st.mean, st.var, bn, false);
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_NEAR(y[i], expected[i], 1e-5);
}

TEST(BatchNorm, FusedReluForwardClampsAtZero) {
  BatchNorm bn(1, 4);
  randomise_affine(bn, 8);
  bn.fuse_relu = true;
  const Tensor x = random_tensor({6, 4}, 9);
  const Tensor& y = bn.forward(x);
  const ChannelStats st = batch_stats(x);
  const auto expected = bn_reference(x, st.mean, st.var, bn, true);
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_NEAR(y[i], expected[i], 1e-5);
}

TEST(BatchNorm, GradientsInTrainingMode1d) {
  BatchNorm bn(1, 3);
  randomise_affine(bn, 10);
  check_gradients(bn, random_tensor({5, 3}, 11), 12);
}

TEST(BatchNorm, GradientsInTrainingMode1dWithLength) {
  BatchNorm bn(1, 2);
  randomise_affine(bn, 13);
  check_gradients(bn, random_tensor({3, 2, 4}, 14), 15);
}

TEST(BatchNorm, GradientsInTrainingMode2d) {
  BatchNorm bn(2, 3);
  randomise_affine(bn, 16);
  check_gradients(bn, random_tensor({2, 3, 2, 3}, 17), 18);
}

TEST(BatchNorm, GradientsInTrainingMode3d) {
  BatchNorm bn(3, 2);
  randomise_affine(bn, 19);
  check_gradients(bn, random_tensor({2, 2, 2, 2, 2}, 20), 21);
}

TEST(BatchNorm, GradientsWithoutAffine) {
  BatchNorm bn(2, 3, 1e-5, 0.1, false);
  EXPECT_TRUE(bn.parameters().empty());
  check_gradients(bn, random_tensor({2, 3, 2, 2}, 22), 23);
}

TEST(BatchNorm, GradientsInEvalModeTreatRunningStatsAsConstants) {
  BatchNorm bn(2, 3);
  randomise_affine(bn, 24);
  for (int j = 0; j < 3; ++j) {
    bn.running_mean[j] = 0.2f * j - 0.1f;
    bn.running_var[j] = 0.5f + 0.4f * j;
  }
  bn.eval();
  check_gradients(bn, random_tensor({2, 3, 2, 2}, 25), 26);
}

TEST(BatchNorm, GradientsInEvalModeWithoutRunningStatsUseTheBatch) {
  BatchNorm bn(1, 3, 1e-5, 0.1, true, false);
  randomise_affine(bn, 40);
  bn.eval();
  check_gradients(bn, random_tensor({5, 3}, 41), 42);
}

TEST(BatchNorm, GradientsWithMomentumNone) {
  BatchNorm bn(2, 2, 1e-3, std::nullopt);
  randomise_affine(bn, 43);
  check_gradients(bn, random_tensor({3, 2, 2, 2}, 44), 45);
  EXPECT_GT(bn.num_batches_tracked, 1);
}

TEST(BatchNorm, GradientsWithFusedReluInTrainingMode) {
  BatchNorm bn(1, 3);
  randomise_affine(bn, 27);
  bn.fuse_relu = true;
  GradCheckOptions o;
  o.h = 1e-3;
  o.atol = 3e-3;
  check_gradients(bn, random_tensor({6, 3}, 28), 29, o);
}

TEST(BatchNorm, GradientsWithFusedReluInEvalMode) {
  BatchNorm bn(2, 2);
  randomise_affine(bn, 30);
  bn.running_mean[0] = 0.3f;
  bn.running_var[1] = 2.0f;
  bn.fuse_relu = true;
  bn.eval();
  GradCheckOptions o;
  o.h = 1e-3;
  o.atol = 3e-3;
  check_gradients(bn, random_tensor({2, 2, 3, 2}, 31), 32, o);
}

TEST(BatchNorm, NonFiniteBatchLeavesRunningStatsButCountsTheBatch) {
  BatchNorm bn(1, 2);
  Tensor x = random_tensor({4, 2}, 33);
  x[2] = std::numeric_limits<float>::quiet_NaN();
  bn.forward(x);
  EXPECT_TRUE(bn.last_batch_non_finite);
  EXPECT_EQ(bn.running_mean[0], 0.0f);
  EXPECT_EQ(bn.running_var[0], 1.0f);
  EXPECT_EQ(bn.num_batches_tracked, 1);
  bn.forward(random_tensor({4, 2}, 34));
  EXPECT_FALSE(bn.last_batch_non_finite);
}

TEST(BatchNorm, InputRankAndChannelsAreChecked) {
  BatchNorm bn1(1, 512);
  try {
    bn1.output_shape({64, 256});
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("512"), std::string::npos) << msg;
    EXPECT_NE(msg.find("256"), std::string::npos) << msg;
  }
  EXPECT_THROW(bn1.output_shape({64, 512, 2, 2}), Error);
  EXPECT_NO_THROW(bn1.output_shape({64, 512, 7}));
  BatchNorm bn2(2, 8);
  EXPECT_THROW(bn2.output_shape({64, 8}), Error);
  EXPECT_NO_THROW(bn2.output_shape({64, 8, 4, 4}));
  BatchNorm bn3(3, 8);
  EXPECT_THROW(bn3.output_shape({64, 8, 4, 4}), Error);
  EXPECT_NO_THROW(bn3.output_shape({2, 8, 1, 4, 4}));
  EXPECT_THROW(bn2.forward(Tensor({2, 7, 2, 2})), Error);
}

TEST(BatchNorm, ParametersAndBuffersHavePyTorchNames) {
  BatchNorm bn(1, 4);
  const auto params = bn.parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].first, "weight");
  EXPECT_EQ(params[1].first, "bias");
  const auto buffers = bn.buffers();
  ASSERT_EQ(buffers.size(), 3u);
  EXPECT_EQ(buffers[0].name, "running_mean");
  EXPECT_EQ(buffers[1].name, "running_var");
  EXPECT_EQ(buffers[2].name, "num_batches_tracked");
  EXPECT_EQ(buffers[2].counter, &bn.num_batches_tracked);
  EXPECT_EQ(bn.weight.value[0], 1.0f);
  EXPECT_EQ(bn.bias.value[0], 0.0f);
  EXPECT_EQ(bn.running_var[3], 1.0f);
}

TEST(BatchNorm, ReprMatchesPyTorch) {
  EXPECT_EQ(BatchNorm(1, 512).repr(),
            "BatchNorm1d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  EXPECT_EQ(BatchNorm(2, 32, 1e-3, std::nullopt, false, false).repr(),
            "BatchNorm2d(32, eps=0.001, momentum=None, affine=False, track_running_stats=False)");
  EXPECT_EQ(BatchNorm(3, 8, 1e-5, 0.3).repr(),
            "BatchNorm3d(8, eps=1e-05, momentum=0.3, affine=True, track_running_stats=True)");
  EXPECT_EQ(BatchNorm(1, 8, 1.0, 1.0).repr(),
            "BatchNorm1d(8, eps=1.0, momentum=1.0, affine=True, track_running_stats=True)");
}

}  // namespace
}  // namespace bnlab::nn
