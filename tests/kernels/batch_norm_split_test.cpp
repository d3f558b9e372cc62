// The split kernels of a synchronized batch norm (issue 12): a batch cut into
// parts along n (some parts empty), per-part statistics merged, the forward
// and the backward in two steps, against the single fused call, the float64
// reference, central differences and PyTorch on the concatenated batch.
// Tolerance: |got - want| <= 1e-5 * (1 + |want|); channel sums against
// 1e-5 * (1 + sum of |terms|) (bn_reference.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "bn_reference.hpp"
#include "bnlab/batch_norm.hpp"
#include "bnlab/error.hpp"
#include "golden_reader.hpp"

namespace bnlab::test {
namespace {

// The results of the split computation, concatenated in sample order.
struct SplitResult {
  std::vector<float> y, save_mean, save_invstd, running_mean, running_var, dx, dweight, dbias;
  int64_t count = 0;
};

// Runs the split pipeline over parts of `sizes` samples each (summing to sh.n),
// every part's running statistics starting from running_in, as each process's
// copy would; checks that every part ends with the same running statistics.
SplitResult run_split(const std::vector<float>& x, const std::vector<float>& dy,
                      const BatchNormShape& sh, const std::vector<int64_t>& sizes,
                      const float* weight, const float* bias, const std::vector<float>& rm_in,
                      const std::vector<float>& rv_in, double momentum, Activation act) {
  const int64_t parts = static_cast<int64_t>(sizes.size()), c = sh.c, per_sample = sh.c * sh.s;
  std::vector<int64_t> first(parts + 1, 0);
  for (int64_t p = 0; p < parts; ++p) first[p + 1] = first[p] + sizes[p];
  EXPECT_EQ(first[parts], sh.n);
  auto part_shape = [&](int64_t p) { return BatchNormShape{sizes[p], sh.c, sh.s, sh.layout}; };
  auto at = [&](const auto& v, int64_t p) { return v.data() + first[p] * per_sample; };

  // Statistics per part, then the merge.
  std::vector<int64_t> counts(parts);
  std::vector<double> means(parts * c), m2s(parts * c);
  for (int64_t p = 0; p < parts; ++p) {
    const BatchNormShape ps = part_shape(p);
    counts[p] = ps.per_channel();
    batch_norm_stats(at(x, p), ps, &means[p * c], &m2s[p * c]);
  }
  std::vector<double> mean(c), m2(c);
  SplitResult r;
  batch_norm_merge_stats(parts, c, counts.data(), means.data(), m2s.data(), mean.data(), m2.data(),
                         &r.count);

  // The forward of each part with the merged statistics.
  r.y.assign(x.size(), 0.0f);
  r.save_mean.assign(c, 0.0f);
  r.save_invstd.assign(c, 0.0f);
  for (int64_t p = 0; p < parts; ++p) {
    std::vector<float> rm = rm_in, rv = rv_in, sm(c), si(c);
    const RunningStats running{rm.data(), rv.data(), momentum, true};
    EXPECT_EQ(batch_norm_forward_with_stats(
                  at(x, p), part_shape(p), weight, bias, mean.data(), m2.data(), r.count, running,
                  1e-5, r.y.data() + first[p] * per_sample, sm.data(), si.data(), act),
              BatchNormStatus::ok);
    if (p == 0) {
      r.running_mean = rm;
      r.running_var = rv;
      r.save_mean = sm;
      r.save_invstd = si;
    }
    EXPECT_EQ(rm, r.running_mean) << "part " << p;
    EXPECT_EQ(rv, r.running_var) << "part " << p;
    EXPECT_EQ(sm, r.save_mean) << "part " << p;
    EXPECT_EQ(si, r.save_invstd) << "part " << p;
  }

  // The backward: sums per part, added in part order, then dx per part.
  std::vector<double> sum_dy(c, 0.0), sum_dy_xhat(c, 0.0), part_dy(c), part_dy_xhat(c);
  for (int64_t p = 0; p < parts; ++p) {
    batch_norm_backward_reduce(at(x, p), at(dy, p), part_shape(p), r.save_mean.data(),
                               r.save_invstd.data(), part_dy.data(), part_dy_xhat.data(), act,
                               at(r.y, p));
    for (int64_t j = 0; j < c; ++j) {
      sum_dy[j] += part_dy[j];
      sum_dy_xhat[j] += part_dy_xhat[j];
    }
  }
  r.dx.assign(x.size(), 0.0f);
  for (int64_t p = 0; p < parts; ++p)
    batch_norm_backward_with_sums(at(x, p), at(dy, p), part_shape(p), weight, r.save_mean.data(),
                                  r.save_invstd.data(), sum_dy.data(), sum_dy_xhat.data(), r.count,
                                  r.dx.data() + first[p] * per_sample, act, at(r.y, p));
  r.dweight = to_float(sum_dy_xhat);
  r.dbias = to_float(sum_dy);
  return r;
}

// n cut into `parts` sizes at random points (equal points give empty parts).
std::vector<int64_t> random_sizes(int64_t n, int64_t parts, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> point(0, n);
  std::vector<int64_t> cuts(parts - 1);
  for (int64_t& cut : cuts) cut = point(rng);
  cuts.push_back(0);
  cuts.push_back(n);
  std::sort(cuts.begin(), cuts.end());
  std::vector<int64_t> sizes(parts);
  for (int64_t p = 0; p < parts; ++p) sizes[p] = cuts[p + 1] - cuts[p];
  return sizes;
}

std::vector<double> to_double_vec(const std::vector<float>& v) { return to_double(v); }

struct SplitCase {
  int64_t n, c, s;
  Layout layout;
};

class SplitKernels : public ::testing::TestWithParam<SplitCase> {};

TEST_P(SplitKernels, PartsMergedGiveTheFusedResultsForOneToEightParts) {
  const SplitCase& z = GetParam();
  const BatchNormShape sh{z.n, z.c, z.s, z.layout};
  const std::vector<float> x = channel_data(sh, 31), dy = random_vector(sh.numel(), 32);
  const std::vector<float> w = random_vector(sh.c, 33, 1.0f, 0.5f), b = random_vector(sh.c, 34);
  const std::vector<float> rm_in(sh.c, 0.25f), rv_in(sh.c, 2.0f);
  for (const std::string& variant : kernel_variants()) {
    ScopedKernelVariant use(variant);
    for (bool affine : {false, true})
      for (Activation act : {Activation::none, Activation::relu}) {
        const float* wp = affine ? w.data() : nullptr;
        const float* bp = affine ? b.data() : nullptr;
        // The single fused calls.
        std::vector<float> rm = rm_in, rv = rv_in, y(x.size()), sm(sh.c), si(sh.c);
        ASSERT_EQ(
            batch_norm_forward_training(x.data(), sh, wp, bp, {rm.data(), rv.data(), 0.1, true},
                                        1e-5, y.data(), sm.data(), si.data(), act),
            BatchNormStatus::ok);
        std::vector<float> dx(x.size()), dw(sh.c), db(sh.c);
        batch_norm_backward(x.data(), dy.data(), sh, wp, sm.data(), si.data(), dx.data(), dw.data(),
                            db.data(), act, y.data());
        const ReferenceBackward ref = reference_backward(
            x, dy, sh, wp, sm.data(), si.data(), act == Activation::relu ? y.data() : nullptr);
        for (int64_t parts = 1; parts <= 8; ++parts) {
          const std::vector<int64_t> sizes = random_sizes(sh.n, parts, 40 + parts);
          SCOPED_TRACE(describe(sh) + " variant " + variant + (affine ? " affine" : "") +
                       (act == Activation::relu ? " relu" : "") + " parts " +
                       std::to_string(parts));
          const SplitResult r = run_split(x, dy, sh, sizes, wp, bp, rm_in, rv_in, 0.1, act);
          EXPECT_EQ(r.count, sh.per_channel());
          EXPECT_TRUE(all_close("y", r.y.data(), to_double_vec(y), kTolerance));
          EXPECT_TRUE(all_close("save_mean", r.save_mean.data(), to_double_vec(sm), kTolerance));
          EXPECT_TRUE(
              all_close("save_invstd", r.save_invstd.data(), to_double_vec(si), kTolerance));
          EXPECT_TRUE(
              all_close("running_mean", r.running_mean.data(), to_double_vec(rm), kTolerance));
          EXPECT_TRUE(
              all_close("running_var", r.running_var.data(), to_double_vec(rv), kTolerance));
          EXPECT_TRUE(all_close("dx", r.dx.data(), to_double_vec(dx), kTolerance));
          EXPECT_TRUE(
              all_close("dweight", r.dweight.data(), ref.dweight, kTolerance, &ref.dweight_scale));
          EXPECT_TRUE(all_close("dbias", r.dbias.data(), ref.dbias, kTolerance, &ref.dbias_scale));
        }
      }
  }
}

std::vector<SplitCase> split_cases() {
  std::vector<SplitCase> cases;
  // spans (s >= 64), the rows view (small s, and an MLP's (N, C)), blocks of 16
  for (const auto& z : std::vector<std::array<int64_t, 3>>{{9, 3, 70}, {11, 5, 7}, {12, 4, 1}})
    for (Layout layout : {Layout::channels_first, Layout::channels_last})
      cases.push_back({z[0], z[1], z[2], layout});
  for (const auto& z : std::vector<std::array<int64_t, 3>>{{10, 16, 5}, {8, 32, 65}})
    for (Layout layout : layouts_for(z[1])) cases.push_back({z[0], z[1], z[2], layout});
  return cases;
}

std::string split_case_name(const ::testing::TestParamInfo<SplitCase>& info) {
  const SplitCase& z = info.param;
  std::string name = "n";
  name += std::to_string(z.n) + "c" + std::to_string(z.c) + "s" + std::to_string(z.s);
  name += '_';
  name += layout_name(z.layout);
  return name;
}

INSTANTIATE_TEST_SUITE_P(EveryLayout, SplitKernels, ::testing::ValuesIn(split_cases()),
                         split_case_name);

TEST(SplitKernels, StatsAreTheFloat64MeanAndSumOfSquaredDeviations) {
  for (Layout layout : layouts_for(16)) {
    const BatchNormShape sh{5, 16, 9, layout};
    const std::vector<float> x = channel_data(sh, 5);
    std::vector<double> mean(sh.c), m2(sh.c);
    batch_norm_stats(x.data(), sh, mean.data(), m2.data());
    const ReferenceForward ref =
        reference_forward_training(x, sh, (const float*)nullptr, (const float*)nullptr, 1e-5);
    for (int64_t j = 0; j < sh.c; ++j) {
      EXPECT_NEAR(mean[j], ref.mean[j], 1e-6 * (1 + std::fabs(ref.mean[j]))) << j;
      const double want_m2 = ref.var[j] * static_cast<double>(sh.per_channel());
      EXPECT_NEAR(m2[j], want_m2, 1e-5 * (1 + want_m2)) << j;
    }
  }
}

TEST(SplitKernels, AnEmptyPartHasCountZeroAndChangesNothing) {
  const BatchNormShape empty{0, 4, 9, Layout::channels_first};
  std::vector<double> mean(4, 7.0), m2(4, 7.0);
  batch_norm_stats(nullptr, empty, mean.data(), m2.data());
  EXPECT_EQ(mean, std::vector<double>(4, 0.0));
  EXPECT_EQ(m2, std::vector<double>(4, 0.0));
  // Merged with a part of 6 values: that part's statistics exactly.
  const int64_t counts[2] = {0, 6};
  const double means[8] = {0, 0, 0, 0, 1.5, -2.0, 3.0, 0.25};
  const double m2s[8] = {0, 0, 0, 0, 4.0, 1.0, 0.5, 2.0};
  std::vector<double> merged_mean(4), merged_m2(4);
  int64_t count = -1;
  batch_norm_merge_stats(2, 4, counts, means, m2s, merged_mean.data(), merged_m2.data(), &count);
  EXPECT_EQ(count, 6);
  EXPECT_EQ(merged_mean, std::vector<double>(means + 4, means + 8));
  EXPECT_EQ(merged_m2, std::vector<double>(m2s + 4, m2s + 8));
  // Nothing merged at all: count 0, mean and m2 0.
  batch_norm_merge_stats(0, 4, nullptr, nullptr, nullptr, merged_mean.data(), merged_m2.data(),
                         &count);
  EXPECT_EQ(count, 0);
  EXPECT_EQ(merged_mean, std::vector<double>(4, 0.0));
  // The forward of an empty part updates the running statistics only.
  std::vector<float> rm(4, 0.0f), rv(4, 1.0f), sm(4), si(4);
  const double stat_mean[4] = {1, 2, 3, 4}, stat_m2[4] = {9, 9, 9, 9};
  ASSERT_EQ(batch_norm_forward_with_stats(nullptr, empty, nullptr, nullptr, stat_mean, stat_m2, 10,
                                          {rm.data(), rv.data(), 0.5, true}, 1e-5, nullptr,
                                          sm.data(), si.data()),
            BatchNormStatus::ok);
  for (int64_t j = 0; j < 4; ++j) {
    EXPECT_FLOAT_EQ(rm[j], 0.5f * stat_mean[j]);
    EXPECT_FLOAT_EQ(rv[j], static_cast<float>(0.5 + 0.5 * 0.9 * 10.0 / 9.0));
    EXPECT_FLOAT_EQ(sm[j], static_cast<float>(stat_mean[j]));
    EXPECT_FLOAT_EQ(si[j], static_cast<float>(1.0 / std::sqrt(0.9 + 1e-5)));
  }
  std::vector<double> sum_dy(4, 7.0), sum_dy_xhat(4, 7.0);
  batch_norm_backward_reduce(nullptr, nullptr, empty, sm.data(), si.data(), sum_dy.data(),
                             sum_dy_xhat.data());
  EXPECT_EQ(sum_dy, std::vector<double>(4, 0.0));
  EXPECT_EQ(sum_dy_xhat, std::vector<double>(4, 0.0));
  batch_norm_backward_with_sums(nullptr, nullptr, empty, nullptr, sm.data(), si.data(),
                                sum_dy.data(), sum_dy_xhat.data(), 10, nullptr);
}

TEST(SplitKernels, NonFiniteStatisticsLeaveTheRunningStatisticsUntouched) {
  const BatchNormShape sh{2, 2, 3, Layout::channels_last};
  const std::vector<float> x(sh.numel(), 1.0f);
  std::vector<float> rm(2, 0.5f), rv(2, 2.0f), y(x.size());
  const double mean[2] = {0.0, std::numeric_limits<double>::quiet_NaN()}, m2[2] = {1.0, 1.0};
  EXPECT_EQ(batch_norm_forward_with_stats(x.data(), sh, nullptr, nullptr, mean, m2, 12,
                                          {rm.data(), rv.data(), 0.1, true}, 1e-5, y.data(),
                                          nullptr, nullptr),
            BatchNormStatus::non_finite);
  EXPECT_EQ(rm, std::vector<float>(2, 0.5f));
  EXPECT_EQ(rv, std::vector<float>(2, 2.0f));
}

// loss(x) = sum(y * r), y the float64 reference forward of the whole batch.
double split_loss(const std::vector<double>& x, const BatchNormShape& sh,
                  const std::vector<double>& w, const std::vector<double>& b,
                  const std::vector<double>& r) {
  const ReferenceForward f = reference_forward_training(x, sh, w.data(), b.data(), 1e-5);
  return std::inner_product(f.y.begin(), f.y.end(), r.begin(), 0.0);
}

TEST(SplitKernels, BackwardInTwoStepsMatchesCentralDifferences) {
  for (Layout layout : layouts_for(16)) {
    const BatchNormShape sh{5, 16, 3, layout};
    SCOPED_TRACE(describe(sh));
    const std::vector<float> x = channel_data(sh, 61), r = random_vector(sh.numel(), 62);
    const std::vector<float> w = random_vector(sh.c, 63, 1.0f, 0.4f), b = random_vector(sh.c, 64);
    const SplitResult split =
        run_split(x, r, sh, {2, 0, 3}, w.data(), b.data(), std::vector<float>(sh.c, 0.0f),
                  std::vector<float>(sh.c, 1.0f), 0.1, Activation::none);
    std::vector<double> xd = to_double(x), wd = to_double(w), bd = to_double(b);
    const std::vector<double> rd = to_double(r);
    const NumericGradients fd =
        numeric_gradients(xd, wd, bd, [&] { return split_loss(xd, sh, wd, bd, rd); });
    EXPECT_TRUE(all_close("dx", split.dx.data(), fd.dx, 2e-5));
    EXPECT_TRUE(all_close("dweight", split.dweight.data(), fd.dweight, 2e-5));
    EXPECT_TRUE(all_close("dbias", split.dbias.data(), fd.dbias, 2e-5));
  }
}

TEST(SplitKernels, ArgumentErrorsNameTheArgument) {
  const BatchNormShape sh{2, 3, 4, Layout::channels_first};
  const std::vector<float> x(sh.numel(), 1.0f), dy(sh.numel(), 1.0f), ones(sh.c, 1.0f);
  std::vector<float> y(sh.numel()), dx(sh.numel());
  std::vector<double> mean(sh.c, 0.0), m2(sh.c, 1.0);
  auto throws = [](const std::function<void()>& call, const std::string& needle,
                   ErrorCode code = ErrorCode::invalid_argument) {
    try {
      call();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_EQ(e.code(), code) << e.what();
      return;
    }
    ADD_FAILURE() << "no error; expected one naming " << needle;
  };
  throws([&] { batch_norm_stats(x.data(), {-1, 3, 4}, mean.data(), m2.data()); }, "n must be");
  throws([&] { batch_norm_stats(nullptr, sh, mean.data(), m2.data()); }, "x must not be null");
  throws([&] { batch_norm_stats(x.data(), sh, nullptr, m2.data()); }, "mean must not be null");
  throws(
      [&] {
        batch_norm_stats(x.data(), {1, 3, 4, Layout::blocked16}, mean.data(), m2.data());
      },
      "multiple of 16");
  int64_t count = 0;
  const int64_t counts[2] = {3, -1};
  throws(
      [&] {
        batch_norm_merge_stats(-1, 3, counts, mean.data(), m2.data(), mean.data(), m2.data(),
                               &count);
      },
      "parts must be non-negative, got -1");
  throws(
      [&] {
        batch_norm_merge_stats(2, 3, counts, mean.data(), m2.data(), mean.data(), m2.data(),
                               &count);
      },
      "counts[1] must be non-negative, got -1");
  throws(
      [&] {
        batch_norm_merge_stats(1, 3, nullptr, mean.data(), m2.data(), mean.data(), m2.data(),
                               &count);
      },
      "counts must not be null");
  throws(
      [&] {
        batch_norm_merge_stats(1, 3, counts, nullptr, m2.data(), mean.data(), m2.data(), &count);
      },
      "means must not be null");
  const int64_t huge[2] = {std::numeric_limits<int64_t>::max(), 1};
  throws([&] { batch_norm_merge_stats(2, 0, huge, nullptr, nullptr, nullptr, nullptr, &count); },
         "overflows");
  const RunningStats none;
  throws(
      [&] {
        batch_norm_forward_with_stats(x.data(), sh, nullptr, nullptr, mean.data(), m2.data(), 7,
                                      none, 1e-5, y.data(), nullptr, nullptr);
      },
      "count must be at least this part's n*s=8, got 7");
  throws(
      [&] {
        batch_norm_forward_with_stats(nullptr, {0, 3, 4}, nullptr, nullptr, mean.data(), m2.data(),
                                      1, none, 1e-5, nullptr, nullptr, nullptr);
      },
      "expected more than 1 value per channel", ErrorCode::too_few_values);
  throws(
      [&] {
        batch_norm_forward_with_stats(x.data(), sh, nullptr, nullptr, nullptr, m2.data(), 8, none,
                                      1e-5, y.data(), nullptr, nullptr);
      },
      "mean must not be null");
  throws(
      [&] {
        batch_norm_forward_with_stats(x.data(), sh, nullptr, nullptr, mean.data(), m2.data(), 8,
                                      none, 0.0, y.data(), nullptr, nullptr);
      },
      "eps must be positive");
  float rm[3] = {}, rv[3] = {};
  throws(
      [&] {
        batch_norm_forward_with_stats(x.data(), sh, nullptr, nullptr, mean.data(), m2.data(), 8,
                                      {rm, rv, 1.5, true}, 1e-5, y.data(), nullptr, nullptr);
      },
      "momentum must be in [0, 1], got 1.5");
  std::vector<double> s1(sh.c), s2(sh.c);
  throws(
      [&] {
        batch_norm_backward_reduce(x.data(), nullptr, sh, ones.data(), ones.data(), s1.data(),
                                   s2.data());
      },
      "dy must not be null");
  throws(
      [&] {
        batch_norm_backward_reduce(x.data(), dy.data(), sh, ones.data(), ones.data(), s1.data(),
                                   s2.data(), Activation::relu);
      },
      "y (the fused ReLU's output");
  throws(
      [&] {
        batch_norm_backward_with_sums(x.data(), dy.data(), sh, nullptr, ones.data(), ones.data(),
                                      s1.data(), s2.data(), 5, dx.data());
      },
      "count must be at least this part's n*s=8, got 5");
  throws(
      [&] {
        batch_norm_backward_with_sums(x.data(), dy.data(), sh, nullptr, ones.data(), ones.data(),
                                      nullptr, s2.data(), 8, dx.data());
      },
      "sum_dy must not be null");
  throws(
      [&] {
        batch_norm_backward_with_sums(x.data(), dy.data(), sh, nullptr, ones.data(), ones.data(),
                                      s1.data(), s2.data(), 8, nullptr);
      },
      "dx must not be null");
}

// PyTorch on the concatenated batch (tests/golden/make_batch_norm_split_goldens.py).
using GoldenParam = std::tuple<std::string, Layout>;
class SplitGolden : public ::testing::TestWithParam<GoldenParam> {};

TEST_P(SplitGolden, PartsMatchPyTorchOnTheWholeBatch) {
  const auto& [name, layout] = GetParam();
  const Golden g = read_golden(name);
  const std::vector<double>& dims = entry(g, "dims");
  BatchNormShape sh{static_cast<int64_t>(dims[0]), static_cast<int64_t>(dims[1]), 1, layout};
  for (size_t d = 2; d < dims.size(); ++d) sh.s *= static_cast<int64_t>(dims[d]);
  const bool affine = flag(g, "affine");
  const Activation act = flag(g, "relu") ? Activation::relu : Activation::none;
  std::vector<int64_t> sizes;
  for (double v : entry(g, "parts")) sizes.push_back(static_cast<int64_t>(v));
  const std::vector<float> x = to_float(in_layout(entry(g, "x"), sh));
  const std::vector<float> dy = to_float(in_layout(entry(g, "dy"), sh));
  const std::vector<float> w = affine ? to_float(entry(g, "weight")) : std::vector<float>();
  const std::vector<float> b = affine ? to_float(entry(g, "bias")) : std::vector<float>();
  for (const std::string& variant : kernel_variants()) {
    SCOPED_TRACE(name + " " + describe(sh) + " variant " + variant);
    ScopedKernelVariant use(variant);
    const SplitResult r =
        run_split(x, dy, sh, sizes, affine ? w.data() : nullptr, affine ? b.data() : nullptr,
                  to_float(entry(g, "running_mean_in")), to_float(entry(g, "running_var_in")),
                  entry(g, "momentum")[0], act);
    EXPECT_TRUE(all_close("y", r.y.data(), in_layout(entry(g, "y"), sh), kTolerance));
    EXPECT_TRUE(all_close("save_mean", r.save_mean.data(), entry(g, "save_mean"), kTolerance));
    EXPECT_TRUE(
        all_close("save_invstd", r.save_invstd.data(), entry(g, "save_invstd"), kTolerance));
    EXPECT_TRUE(
        all_close("running_mean", r.running_mean.data(), entry(g, "running_mean_out"), kTolerance));
    EXPECT_TRUE(
        all_close("running_var", r.running_var.data(), entry(g, "running_var_out"), kTolerance));
    EXPECT_TRUE(all_close("dx", r.dx.data(), in_layout(entry(g, "dx"), sh), kTolerance));
    if (affine) {
      EXPECT_TRUE(all_close("dweight", r.dweight.data(), entry(g, "dweight"), kTolerance));
      EXPECT_TRUE(all_close("dbias", r.dbias.data(), entry(g, "dbias"), kTolerance));
    }
  }
}

std::vector<GoldenParam> split_golden_params() {
  std::vector<GoldenParam> params;
  for (const char* name : {"split_4d_affine_c3", "split_3d_noaffine_c5", "split_2d_affine_c6"})
    for (Layout layout : {Layout::channels_first, Layout::channels_last})
      params.emplace_back(name, layout);
  for (Layout layout : layouts_for(16)) params.emplace_back("split_4d_affine_relu_c16", layout);
  return params;
}

std::string split_golden_name(const ::testing::TestParamInfo<GoldenParam>& info) {
  std::string name = std::get<0>(info.param);
  name += '_';
  name += layout_name(std::get<1>(info.param));
  return name;
}

INSTANTIATE_TEST_SUITE_P(PyTorch, SplitGolden, ::testing::ValuesIn(split_golden_params()),
                         split_golden_name);

}  // namespace
}  // namespace bnlab::test
