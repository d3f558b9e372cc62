// Numerics of issue 2 item 3: statistics without E[x^2] - E[x]^2 cancellation
// (mean 1e4, std 1 matches float64 to 1e-3 relative), a constant channel gives
// y = bias (no NaN), and a batch with NaN or Inf is reported as non_finite
// while the running statistics stay exactly as they were; the fused ReLU
// passes NaN through as PyTorch's relu does. Issue 14: y within a few ulps of
// float64 at any offset (mean 1e4 and 1e6, std 1), in every layout and walk.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "bn_reference.hpp"
#include "bnlab/batch_norm.hpp"
#include "kernels/batch_norm_loops.hpp"
#include "ulp_check.hpp"

namespace bnlab::test {
namespace {

class Numerics : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { set_batch_norm_kernel_variant(GetParam()); }
  void TearDown() override { set_batch_norm_kernel_variant("auto"); }
};

const BatchNormShape kStabilityShapes[] = {
    {16, 3, 4099, Layout::channels_first},  // spans of more than one block
    {16, 3, 4099, Layout::channels_last},   // rows view, many row blocks
    {4096, 5, 3, Layout::channels_first},   // rows view of c*s columns
    {3, 7, 1, Layout::channels_last},       // tiny
};

TEST_P(Numerics, MeanTenThousandStdOneMatchesFloat64ToOneInAThousand) {
  for (const BatchNormShape& sh : kStabilityShapes) {
    SCOPED_TRACE(describe(sh));
    std::vector<float> x = random_vector(sh.numel(), 51, 1e4f, 1.0f);
    const std::vector<float> weight = random_vector(sh.c, 52, 1.0f, 0.3f);
    const std::vector<float> bias = random_vector(sh.c, 53);
    std::vector<float> y(x.size()), mean(sh.c), invstd(sh.c), rm(sh.c, 0.0f), rv(sh.c, 1.0f);
    ASSERT_EQ(batch_norm_forward_training(x.data(), sh, weight.data(), bias.data(),
                                          {rm.data(), rv.data(), 0.5, true}, 1e-5, y.data(),
                                          mean.data(), invstd.data()),
              BatchNormStatus::ok);
    const ReferenceForward ref =
        reference_forward_training(x, sh, weight.data(), bias.data(), 1e-5);
    EXPECT_TRUE(all_close("y", y.data(), ref.y, 1e-3));
    EXPECT_TRUE(all_close("save_mean", mean.data(), ref.mean, 1e-3));
    EXPECT_TRUE(all_close("save_invstd", invstd.data(), ref.invstd, 1e-3));
    const double count = static_cast<double>(sh.per_channel());
    std::vector<double> want_rv(sh.c);
    for (int64_t j = 0; j < sh.c; ++j) want_rv[j] = 0.5 + 0.5 * ref.var[j] * count / (count - 1);
    EXPECT_TRUE(all_close("running_var", rv.data(), want_rv, 1e-3));
    // invstd ~ 1: far from 1/sqrt(eps) ~ 316, which is what cancellation gives.
    for (int64_t j = 0; j < sh.c; ++j) EXPECT_LT(invstd[j], 10.0f);
  }
}

// Batches of two and a larger one, in every layout and walk: spans, rows of c*s
// columns (s < 64), rows of c columns, blocked16 units.
const BatchNormShape kOffsetShapes[] = {
    {2, 32, 1, Layout::channels_first},  {2, 32, 1, Layout::channels_last},
    {2, 32, 1, Layout::blocked16},       {2, 16, 49, Layout::channels_first},
    {2, 16, 49, Layout::channels_last},  {2, 16, 49, Layout::blocked16},
    {8, 32, 259, Layout::channels_first}, {8, 32, 259, Layout::channels_last},
    {8, 32, 259, Layout::blocked16},     {64, 24, 9, Layout::channels_first},
};
// 8 ulps: the variance's float block sums cost up to ~3 at any offset (measured).
constexpr double kOffsetUlps = 8.0;

// Channel j's values: offset (negated for odd j) plus N(0, 1), rounded to float.
std::vector<float> offset_data(const BatchNormShape& sh, float offset, uint32_t seed) {
  std::vector<float> x = random_vector(sh.numel(), seed);
  for (int64_t e = 0; e < sh.numel(); ++e)
    x[e] += channel_of(e, sh) % 2 ? -offset : offset;
  return x;
}

// The terms y adds, per element: max(|xhat * weight|, |bias|).
std::vector<double> normalize_terms(const std::vector<float>& x, const BatchNormShape& sh,
                                    const std::vector<double>& mean,
                                    const std::vector<double>& invstd,
                                    const std::vector<float>& weight,
                                    const std::vector<float>& bias) {
  std::vector<double> terms(x.size());
  for (int64_t e = 0; e < sh.numel(); ++e) {
    const int64_t j = channel_of(e, sh);
    terms[e] = std::max(std::fabs((x[e] - mean[j]) * invstd[j] * weight[j]),
                        std::fabs(static_cast<double>(bias[j])));
  }
  return terms;
}

TEST_P(Numerics, NormalizeIsWithinEightUlpsOfFloat64AtAnyOffset) {
  for (const float offset : {0.0f, 1e4f, 1e6f})
    for (const BatchNormShape& sh : kOffsetShapes) {
      SCOPED_TRACE(describe(sh) + " offset " + std::to_string(offset));
      const std::vector<float> x = offset_data(sh, offset, 71);
      const std::vector<float> weight = random_vector(sh.c, 72, 1.0f, 0.3f);
      const std::vector<float> bias = random_vector(sh.c, 73);
      std::vector<float> y(x.size()), mean(sh.c), invstd(sh.c);
      ASSERT_EQ(batch_norm_forward_training(x.data(), sh, weight.data(), bias.data(), {}, 1e-5,
                                            y.data(), mean.data(), invstd.data()),
                BatchNormStatus::ok);
      const ReferenceForward ref =
          reference_forward_training(x, sh, weight.data(), bias.data(), 1e-5);
      EXPECT_TRUE(test_ulps::within_ulps(
          "training y", y.data(), ref.y,
          normalize_terms(x, sh, ref.mean, ref.invstd, weight, bias), kOffsetUlps));

      // Inference from running statistics at the same offset (float, as given).
      std::vector<float> rm(sh.c), rv(sh.c);
      std::vector<double> rm_d(sh.c), invstd_r(sh.c);
      for (int64_t j = 0; j < sh.c; ++j) {
        rm[j] = static_cast<float>(ref.mean[j]) + 0.25f;
        rv[j] = 1.5f;
        rm_d[j] = rm[j];
        invstd_r[j] = 1.0 / std::sqrt(1.5 + 1e-5);
      }
      batch_norm_forward_inference(x.data(), sh, weight.data(), bias.data(), rm.data(), rv.data(),
                                   1e-5, y.data());
      EXPECT_TRUE(test_ulps::within_ulps(
          "inference y", y.data(),
          reference_forward_inference(x, sh, weight.data(), bias.data(), rm.data(), rv.data(),
                                      1e-5),
          normalize_terms(x, sh, rm_d, invstd_r, weight, bias), kOffsetUlps));
    }
}

TEST_P(Numerics, ConstantChannelGivesBiasNotNaN) {
  for (const BatchNormShape& sh : {BatchNormShape{8, 3, 100, Layout::channels_first},
                                   BatchNormShape{8, 3, 100, Layout::channels_last},
                                   BatchNormShape{5, 17, 1, Layout::channels_first},
                                   BatchNormShape{2, 3, 5000, Layout::channels_first}}) {
    SCOPED_TRACE(describe(sh));
    const float constants[] = {3.7f, -1234.567f, 0.0f};  // one per channel, cycled
    std::vector<float> x(sh.numel());
    for (int64_t i = 0; i < sh.n; ++i)
      for (int64_t j = 0; j < sh.c; ++j)
        for (int64_t k = 0; k < sh.s; ++k) x[index_of(i, j, k, sh)] = constants[j % 3];
    const std::vector<float> weight = random_vector(sh.c, 54, 1.0f, 0.3f);
    const std::vector<float> bias = random_vector(sh.c, 55);
    std::vector<float> y(x.size()), mean(sh.c), invstd(sh.c), rm(sh.c, 0.0f), rv(sh.c, 1.0f);
    ASSERT_EQ(batch_norm_forward_training(x.data(), sh, weight.data(), bias.data(),
                                          {rm.data(), rv.data(), 0.1, true}, 1e-5, y.data(),
                                          mean.data(), invstd.data()),
              BatchNormStatus::ok);
    std::vector<double> want(x.size());
    for (int64_t i = 0; i < sh.n; ++i)
      for (int64_t j = 0; j < sh.c; ++j)
        for (int64_t k = 0; k < sh.s; ++k) want[index_of(i, j, k, sh)] = bias[j];
    EXPECT_TRUE(all_close("y", y.data(), want, kTolerance));
    for (int64_t j = 0; j < sh.c; ++j) {
      EXPECT_FLOAT_EQ(mean[j], constants[j % 3]);
      EXPECT_NEAR(invstd[j], 1.0 / std::sqrt(1e-5), 1e-2);  // var = 0
      EXPECT_FLOAT_EQ(rv[j], 0.9f);                         // 0.9 * 1 + 0.1 * 0
    }
    // The backward of a constant channel is finite too.
    const std::vector<float> dy = random_vector(sh.numel(), 56);
    std::vector<float> dx(x.size()), dw(sh.c), db(sh.c);
    batch_norm_backward(x.data(), dy.data(), sh, weight.data(), mean.data(), invstd.data(),
                        dx.data(), dw.data(), db.data());
    for (float v : dx) ASSERT_TRUE(std::isfinite(v));
    for (int64_t j = 0; j < sh.c; ++j) EXPECT_FLOAT_EQ(dw[j], 0.0f);
  }
}

// Puts `bad` at one element of channel 1 and checks the status and the
// untouched running statistics.
void expect_non_finite_leaves_running_stats(const BatchNormShape& sh, float bad) {
  SCOPED_TRACE(describe(sh) + " bad value " + std::to_string(bad));
  std::vector<float> x = channel_data(sh, 61);
  x[index_of(sh.n - 1, 1, sh.s - 1, sh)] = bad;
  const std::vector<float> rm0 = random_vector(sh.c, 62), rv0 = random_vector(sh.c, 63, 2.0f, 0.1f);
  for (bool unbiased : {true, false}) {
    std::vector<float> rm = rm0, rv = rv0, y(x.size()), mean(sh.c), invstd(sh.c);
    EXPECT_EQ(batch_norm_forward_training(x.data(), sh, nullptr, nullptr,
                                          {rm.data(), rv.data(), 0.1, unbiased}, 1e-5, y.data(),
                                          mean.data(), invstd.data()),
              BatchNormStatus::non_finite);
    // Bit for bit: not one running value moved, not even the finite channels'.
    EXPECT_EQ(rm, rm0);
    EXPECT_EQ(rv, rv0);
  }
}

TEST_P(Numerics, NaNOrInfInXIsNonFiniteAndLeavesRunningStatsUntouched) {
  const float bads[] = {std::numeric_limits<float>::quiet_NaN(),
                        std::numeric_limits<float>::infinity(),
                        -std::numeric_limits<float>::infinity()};
  for (float bad : bads) {
    expect_non_finite_leaves_running_stats({4, 3, 100, Layout::channels_first}, bad);
    expect_non_finite_leaves_running_stats({4, 3, 100, Layout::channels_last}, bad);
    expect_non_finite_leaves_running_stats({6, 5, 1, Layout::channels_first}, bad);
    expect_non_finite_leaves_running_stats({3, 2, 7, Layout::channels_first}, bad);
  }
}

TEST_P(Numerics, VarianceBeyondFloatRangeIsNonFinite) {
  // Finite inputs whose variance (~1e76) no float holds: the statistics are not finite.
  const BatchNormShape sh{4, 2, 3, Layout::channels_first};
  std::vector<float> x(sh.numel());
  for (size_t i = 0; i < x.size(); ++i) x[i] = (i % 2 ? 1.0f : -1.0f) * 3e38f;
  std::vector<float> rm(sh.c, 0.5f), rv(sh.c, 2.0f), y(x.size());
  EXPECT_EQ(
      batch_norm_forward_training(x.data(), sh, nullptr, nullptr, {rm.data(), rv.data(), 0.1, true},
                                  1e-5, y.data(), nullptr, nullptr),
      BatchNormStatus::non_finite);
  EXPECT_EQ(rm, std::vector<float>(sh.c, 0.5f));
  EXPECT_EQ(rv, std::vector<float>(sh.c, 2.0f));
}

// PyTorch's relu propagates NaN (relu(NaN) = NaN); the fused BN + ReLU must too,
// in every layout and walk, and -0.0 stays as the plain loop's max(v, 0) leaves it.
TEST_P(Numerics, FusedReluPropagatesNaNLikePyTorch) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const BatchNormShape shapes[] = {{2, 16, 100, Layout::channels_first},  // spans
                                   {3, 16, 5, Layout::channels_first},    // rows of c*s columns
                                   {3, 16, 5, Layout::channels_last},     // rows of c columns
                                   {3, 16, 5, Layout::blocked16}};
  for (const BatchNormShape& sh : shapes) {
    SCOPED_TRACE(describe(sh));
    std::vector<float> x = channel_data(sh, 11);
    // A NaN from the input (either sign: x86's default NaN has its sign bit set).
    x[3] = nan;
    x[x.size() - 2] = -nan;
    const std::vector<float> rm(sh.c, 0.5f), rv(sh.c, 2.0f);
    std::vector<float> y(x.size());
    batch_norm_forward_inference(x.data(), sh, nullptr, nullptr, rm.data(), rv.data(), 1e-5,
                                 y.data(), Activation::relu);
    for (size_t e = 0; e < x.size(); ++e) {
      if (std::isnan(x[e])) {
        EXPECT_TRUE(std::isnan(y[e])) << "element " << e << " got " << y[e];
      } else {
        EXPECT_GE(y[e], 0.0f) << "element " << e;
      }
    }
    // Training: the NaN makes its channel's statistics NaN, so all of that
    // channel's y is NaN (PyTorch's relu(batch_norm(x)) gives the same).
    std::vector<float> rm_t = rm, rv_t = rv;
    EXPECT_EQ(batch_norm_forward_training(x.data(), sh, nullptr, nullptr,
                                          {rm_t.data(), rv_t.data(), 0.1, true}, 1e-5, y.data(),
                                          nullptr, nullptr, Activation::relu),
              BatchNormStatus::non_finite);
    const int64_t bad_channel = channel_of(3, sh);
    for (size_t e = 0; e < x.size(); ++e) {
      if (channel_of(static_cast<int64_t>(e), sh) == bad_channel) {
        EXPECT_TRUE(std::isnan(y[e])) << "element " << e << " got " << y[e];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllVariants, Numerics, ::testing::ValuesIn(kernel_variants()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace bnlab::test

// merge_columns with the ratios shared by columns of equal counts gives the
// bits of Moments::merge column by column, and falls back to it where the
// counts differ; the merged moments are those of all the values together.
TEST(MergeColumns, SharedRatiosGiveMergesBits) {
  using bnlab::kernels::Moments;
  const int64_t width = 7;
  std::vector<double> mean(width), m2(width);
  for (bool equal : {true, false}) {
    std::vector<Moments> shared(width), one_by_one(width);
    for (int64_t w = 0; w < width; ++w) {
      shared[w] = one_by_one[w] = Moments{equal ? 40.0 : 40.0 + w, 1e4 + 0.37 * w, 3.1 + w};
      mean[w] = 1e4 - 0.11 * w * w;
      m2[w] = 0.7 * w;
    }
    bnlab::kernels::merge_columns(shared.data(), width, 24.0, mean.data(), m2.data());
    for (int64_t w = 0; w < width; ++w) {
      one_by_one[w].merge({24.0, mean[w], m2[w]});
      EXPECT_EQ(shared[w].count, one_by_one[w].count) << w;
      EXPECT_EQ(shared[w].mean, one_by_one[w].mean) << w;
      EXPECT_EQ(shared[w].m2, one_by_one[w].m2) << w;
    }
  }
  // Two blocks of known values: 0..39 then 100..123 (as mean and m2 of each).
  const auto moments_of = [](double first, int n) {
    double sum = 0, m2 = 0;
    for (int i = 0; i < n; ++i) sum += first + i;
    for (int i = 0; i < n; ++i) m2 += (first + i - sum / n) * (first + i - sum / n);
    return Moments{static_cast<double>(n), sum / n, m2};
  };
  Moments out[1] = {moments_of(0, 40)};
  const Moments b = moments_of(100, 24);
  bnlab::kernels::merge_columns(out, 1, b.count, &b.mean, &b.m2);
  double sum = 0, all_m2 = 0;
  for (int i = 0; i < 40; ++i) sum += i;
  for (int i = 0; i < 24; ++i) sum += 100 + i;
  const double all_mean = sum / 64;
  for (int i = 0; i < 40; ++i) all_m2 += (i - all_mean) * (i - all_mean);
  for (int i = 0; i < 24; ++i) all_m2 += (100 + i - all_mean) * (100 + i - all_mean);
  EXPECT_EQ(out[0].count, 64.0);
  EXPECT_NEAR(out[0].mean, all_mean, 1e-12 * all_mean);
  EXPECT_NEAR(out[0].m2, all_m2, 1e-12 * all_m2);
}
