// The running-statistics update in the training forward, in both conventions:
//  - PyTorch: running = (1 - m) * running + m * batch, var Bessel-corrected
//    (divided by M - 1, M = n*s values per channel);
//  - ONNX BatchNormalization (training_mode=1): running = onnx_momentum * running
//    + (1 - onnx_momentum) * batch, var biased (divided by M). ONNX's momentum is
//    the weight of the OLD value, so bnlab is called with m = 1 - onnx_momentum.
// Each test writes its convention's reference in float64 here.
// Tolerance: |got - ref| <= 1e-5 * (1 + |ref|).
#include <gtest/gtest.h>

#include "bn_reference.hpp"
#include "bnlab/batch_norm.hpp"

namespace bnlab::test {
namespace {

const BatchNormShape kShapes[] = {
    {4, 3, 5, Layout::channels_first},
    {4, 3, 5, Layout::channels_last},
    {2, 17, 1, Layout::channels_first},
    {1, 2, 2, Layout::channels_last},  // M = 2: Bessel's factor is 2
    {3, 6, 200, Layout::channels_first},
};

struct BatchStats {
  std::vector<double> mean, biased_var;
};

BatchStats batch_stats(const std::vector<float>& x, const BatchNormShape& sh) {
  const ReferenceForward f = reference_forward_training(x, sh, static_cast<const float*>(nullptr),
                                                        static_cast<const float*>(nullptr), 1e-5);
  return {f.mean, f.var};
}

TEST(RunningStats, TrainingUpdatesRunningVarWithBesselCorrection) {
  for (const BatchNormShape& sh : kShapes)
    for (double momentum : {0.1, 0.3}) {
      SCOPED_TRACE(describe(sh) + " momentum " + std::to_string(momentum));
      const std::vector<float> x = channel_data(sh, 71);
      std::vector<float> rm = random_vector(sh.c, 72), rv = random_vector(sh.c, 73, 1.0f, 0.1f);
      const std::vector<float> rm0 = rm, rv0 = rv;
      std::vector<float> y(x.size());
      ASSERT_EQ(batch_norm_forward_training(x.data(), sh, nullptr, nullptr,
                                            {rm.data(), rv.data(), momentum, true}, 1e-5, y.data(),
                                            nullptr, nullptr),
                BatchNormStatus::ok);
      const BatchStats b = batch_stats(x, sh);
      const double count = static_cast<double>(sh.per_channel());
      std::vector<double> want_mean(sh.c), want_var(sh.c);
      for (int64_t j = 0; j < sh.c; ++j) {
        want_mean[j] = (1 - momentum) * rm0[j] + momentum * b.mean[j];
        want_var[j] = (1 - momentum) * rv0[j] + momentum * b.biased_var[j] * count / (count - 1);
      }
      EXPECT_TRUE(all_close("running_mean", rm.data(), want_mean, kTolerance));
      EXPECT_TRUE(all_close("running_var", rv.data(), want_var, kTolerance));
    }
}

// ONNX BatchNormalization-15, training_mode = 1, as its specification writes it:
//   running_mean = input_mean * momentum + current_mean * (1 - momentum)
//   running_var  = input_var  * momentum + current_var  * (1 - momentum)
//   current_var  = ReduceMean((X - current_mean)^2)   (biased)
void onnx_running_update(const std::vector<float>& x, const BatchNormShape& sh,
                         double onnx_momentum, std::vector<double>& running_mean,
                         std::vector<double>& running_var) {
  const BatchStats b = batch_stats(x, sh);
  for (int64_t j = 0; j < sh.c; ++j) {
    running_mean[j] = running_mean[j] * onnx_momentum + b.mean[j] * (1 - onnx_momentum);
    running_var[j] = running_var[j] * onnx_momentum + b.biased_var[j] * (1 - onnx_momentum);
  }
}

TEST(RunningStats, OnnxConventionUsesBiasedVarAndOneMinusMomentum) {
  for (const BatchNormShape& sh : kShapes)
    for (double onnx_momentum : {0.9, 0.7}) {
      SCOPED_TRACE(describe(sh) + " onnx momentum " + std::to_string(onnx_momentum));
      std::vector<float> rm = random_vector(sh.c, 74), rv = random_vector(sh.c, 75, 1.0f, 0.1f);
      std::vector<double> want_mean = to_double(rm), want_var = to_double(rv);
      // Three steps with different batches: the update composes as ONNX's does.
      for (uint32_t step = 0; step < 3; ++step) {
        const std::vector<float> x = channel_data(sh, 80 + step);
        std::vector<float> y(x.size());
        ASSERT_EQ(batch_norm_forward_training(x.data(), sh, nullptr, nullptr,
                                              {rm.data(), rv.data(), 1.0 - onnx_momentum, false},
                                              1e-5, y.data(), nullptr, nullptr),
                  BatchNormStatus::ok);
        onnx_running_update(x, sh, onnx_momentum, want_mean, want_var);
      }
      EXPECT_TRUE(all_close("running_mean", rm.data(), want_mean, kTolerance));
      EXPECT_TRUE(all_close("running_var", rv.data(), want_var, kTolerance));
    }
}

TEST(RunningStats, MomentumZeroKeepsAndMomentumOneReplaces) {
  const BatchNormShape sh{5, 4, 3, Layout::channels_last};
  const std::vector<float> x = channel_data(sh, 76);
  const BatchStats b = batch_stats(x, sh);
  const double count = static_cast<double>(sh.per_channel());
  std::vector<float> y(x.size());
  for (bool unbiased : {true, false}) {
    std::vector<float> rm = random_vector(sh.c, 77), rv = random_vector(sh.c, 78, 1.0f, 0.1f);
    const std::vector<float> rm0 = rm, rv0 = rv;
    ASSERT_EQ(batch_norm_forward_training(x.data(), sh, nullptr, nullptr,
                                          {rm.data(), rv.data(), 0.0, unbiased}, 1e-5, y.data(),
                                          nullptr, nullptr),
              BatchNormStatus::ok);
    EXPECT_EQ(rm, rm0);
    EXPECT_EQ(rv, rv0);
    ASSERT_EQ(batch_norm_forward_training(x.data(), sh, nullptr, nullptr,
                                          {rm.data(), rv.data(), 1.0, unbiased}, 1e-5, y.data(),
                                          nullptr, nullptr),
              BatchNormStatus::ok);
    std::vector<double> want_var = b.biased_var;
    if (unbiased)
      for (double& v : want_var) v *= count / (count - 1);
    EXPECT_TRUE(all_close("running_mean", rm.data(), b.mean, kTolerance));
    EXPECT_TRUE(all_close("running_var", rv.data(), want_var, kTolerance));
  }
}

TEST(RunningStats, WithoutRunningStatsTrainingUsesBatchStatisticsOnly) {
  // track_running_stats=False: nothing to update, y from the batch as always.
  const BatchNormShape sh{3, 4, 6, Layout::channels_first};
  const std::vector<float> x = channel_data(sh, 79);
  std::vector<float> y(x.size());
  ASSERT_EQ(batch_norm_forward_training(x.data(), sh, nullptr, nullptr, {}, 1e-5, y.data(), nullptr,
                                        nullptr),
            BatchNormStatus::ok);
  EXPECT_TRUE(all_close("y", y.data(),
                        reference_forward_training(x, sh, static_cast<const float*>(nullptr),
                                                   static_cast<const float*>(nullptr), 1e-5)
                            .y,
                        kTolerance));
}

TEST(RunningStats, InferenceWithOneValuePerChannelIsFine) {
  // n*s == 1 is an error only in training: inference reads the running statistics.
  const BatchNormShape sh{1, 5, 1, Layout::channels_first};
  const std::vector<float> x = random_vector(5, 81), rm = random_vector(5, 82);
  const std::vector<float> rv(5, 4.0f), weight = random_vector(5, 83), bias = random_vector(5, 84);
  std::vector<float> y(5);
  batch_norm_forward_inference(x.data(), sh, weight.data(), bias.data(), rm.data(), rv.data(), 1e-5,
                               y.data());
  EXPECT_TRUE(all_close(
      "y", y.data(),
      reference_forward_inference(x, sh, weight.data(), bias.data(), rm.data(), rv.data(), 1e-5),
      kTolerance));
}

}  // namespace
}  // namespace bnlab::test
