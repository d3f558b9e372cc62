// The C API (include/bnlab/bnlab.h): results against the float64 reference of
// tests/kernels/bn_reference.hpp, and every error path: the status, and a
// bnlab_last_error() message that names the argument.
// Tolerance: |got - ref| <= 1e-5 * (1 + |ref|); channel sums against
// 1e-5 * (1 + sum of |terms|).
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "../kernels/bn_reference.hpp"
#include "bnlab/bnlab.h"

namespace bnlab::test {
namespace {

BatchNormShape shape(int64_t n, int64_t c, int64_t s, bnlab_layout layout) {
  switch (layout) {
    case BNLAB_CHANNELS_FIRST: return {n, c, s, Layout::channels_first};
    case BNLAB_CHANNELS_LAST: return {n, c, s, Layout::channels_last};
    case BNLAB_BLOCKED16: return {n, c, s, Layout::blocked16};
  }
  return {};
}

class CApiLayouts : public ::testing::TestWithParam<bnlab_layout> {};

TEST_P(CApiLayouts, TrainingInferenceAndBackwardMatchFloat64) {
  const bnlab_layout layout = GetParam();
  const std::vector<std::array<int64_t, 3>> sizes =
      layout == BNLAB_BLOCKED16
          ? std::vector<std::array<int64_t, 3>>{{2, 16, 1}, {1, 32, 7}, {3, 48, 65}}
          : std::vector<std::array<int64_t, 3>>{{2, 3, 1}, {1, 5, 7}, {3, 17, 65}, {6, 33, 2}};
  for (const auto& z : sizes) {
    const BatchNormShape sh = shape(z[0], z[1], z[2], layout);
    SCOPED_TRACE(describe(sh));
    const std::vector<float> x = channel_data(sh, 91), dy = random_vector(sh.numel(), 92);
    const std::vector<float> w = random_vector(sh.c, 93, 1.0f, 0.5f), b = random_vector(sh.c, 94);
    std::vector<float> rm(sh.c, 0.25f), rv(sh.c, 2.0f), y(x.size()), mean(sh.c), invstd(sh.c);
    ASSERT_EQ(bnlab_batch_norm_forward_training(x.data(), sh.n, sh.c, sh.s, layout, w.data(),
                                                b.data(), rm.data(), rv.data(), 0.3, 1, 1e-5,
                                                y.data(), mean.data(), invstd.data()),
              BNLAB_OK);
    const ReferenceForward ref = reference_forward_training(x, sh, w.data(), b.data(), 1e-5);
    EXPECT_TRUE(all_close("y", y.data(), ref.y, kTolerance));
    EXPECT_TRUE(all_close("save_mean", mean.data(), ref.mean, kTolerance));
    EXPECT_TRUE(all_close("save_invstd", invstd.data(), ref.invstd, kTolerance));
    const double m = static_cast<double>(sh.per_channel());
    std::vector<double> want_rm(sh.c), want_rv(sh.c);
    for (int64_t j = 0; j < sh.c; ++j) {
      want_rm[j] = 0.7 * 0.25 + 0.3 * ref.mean[j];
      want_rv[j] = 0.7 * 2.0 + 0.3 * ref.var[j] * m / (m - 1);
    }
    EXPECT_TRUE(all_close("running_mean", rm.data(), want_rm, kTolerance));
    EXPECT_TRUE(all_close("running_var", rv.data(), want_rv, kTolerance));

    std::vector<float> y_eval(x.size());
    ASSERT_EQ(
        bnlab_batch_norm_forward_inference(x.data(), sh.n, sh.c, sh.s, layout, w.data(), b.data(),
                                           rm.data(), rv.data(), 1e-5, y_eval.data()),
        BNLAB_OK);
    EXPECT_TRUE(all_close(
        "inference y", y_eval.data(),
        reference_forward_inference(x, sh, w.data(), b.data(), rm.data(), rv.data(), 1e-5),
        kTolerance));

    std::vector<float> dx(x.size()), dw(sh.c), db(sh.c);
    ASSERT_EQ(
        bnlab_batch_norm_backward(x.data(), dy.data(), sh.n, sh.c, sh.s, layout, w.data(),
                                  mean.data(), invstd.data(), dx.data(), dw.data(), db.data()),
        BNLAB_OK);
    const ReferenceBackward rb =
        reference_backward(x, dy, sh, w.data(), mean.data(), invstd.data());
    EXPECT_TRUE(all_close("dx", dx.data(), rb.dx, kTolerance));
    EXPECT_TRUE(all_close("dweight", dw.data(), rb.dweight, kTolerance, &rb.dweight_scale));
    EXPECT_TRUE(all_close("dbias", db.data(), rb.dbias, kTolerance, &rb.dbias_scale));
  }
}

TEST_P(CApiLayouts, OutputMayAliasInputAndOptionalPointersMayBeNull) {
  const bnlab_layout layout = GetParam();
  const BatchNormShape sh = shape(4, layout == BNLAB_BLOCKED16 ? 16 : 5, 9, layout);
  const std::vector<float> x = channel_data(sh, 95);
  // Training: affine=False, no running statistics, no save_*, y == x.
  std::vector<float> inout = x;
  ASSERT_EQ(bnlab_batch_norm_forward_training(inout.data(), sh.n, sh.c, sh.s, layout, nullptr,
                                              nullptr, nullptr, nullptr, 0.1, 1, 1e-5, inout.data(),
                                              nullptr, nullptr),
            BNLAB_OK);
  const ReferenceForward ref = reference_forward_training(x, sh, static_cast<const float*>(nullptr),
                                                          static_cast<const float*>(nullptr), 1e-5);
  EXPECT_TRUE(all_close("y aliasing x", inout.data(), ref.y, kTolerance));
  // Inference, y == x.
  const std::vector<float> rm = random_vector(sh.c, 96), rv(sh.c, 3.0f);
  inout = x;
  ASSERT_EQ(bnlab_batch_norm_forward_inference(inout.data(), sh.n, sh.c, sh.s, layout, nullptr,
                                               nullptr, rm.data(), rv.data(), 1e-5, inout.data()),
            BNLAB_OK);
  EXPECT_TRUE(
      all_close("inference y aliasing x", inout.data(),
                reference_forward_inference(x, sh, nullptr, nullptr, rm.data(), rv.data(), 1e-5),
                kTolerance));
  // Backward with every output null does nothing and succeeds.
  const std::vector<float> mean = to_float(ref.mean), invstd = to_float(ref.invstd);
  EXPECT_EQ(bnlab_batch_norm_backward(x.data(), x.data(), sh.n, sh.c, sh.s, layout, nullptr,
                                      mean.data(), invstd.data(), nullptr, nullptr, nullptr),
            BNLAB_OK);
}

INSTANTIATE_TEST_SUITE_P(EveryLayout, CApiLayouts,
                         ::testing::Values(BNLAB_CHANNELS_FIRST, BNLAB_CHANNELS_LAST,
                                           BNLAB_BLOCKED16),
                         [](const ::testing::TestParamInfo<bnlab_layout>& info) {
                           return std::string(info.param == BNLAB_CHANNELS_FIRST ? "ChannelsFirst"
                                              : info.param == BNLAB_CHANNELS_LAST ? "ChannelsLast"
                                                                                 : "Blocked16");
                         });

// ---- error paths ----
// An invalid layout value (3, -1) is tested from C, in c_api_from_c.c: in C++
// no bnlab_layout can hold it (static_cast to an enum without a fixed
// underlying type outside its range is undefined behaviour).

// Valid buffers for a (2, 3, 4) tensor; each error case spoils one argument.
struct Buffers {
  static constexpr int64_t n = 2, c = 3, s = 4;
  std::vector<float> x = random_vector(n * c * s, 97), dy = random_vector(n * c * s, 98);
  std::vector<float> y = std::vector<float>(n * c * s), dx = std::vector<float>(n * c * s);
  std::vector<float> w = std::vector<float>(c, 1.0f), b = std::vector<float>(c, 0.0f);
  std::vector<float> rm = std::vector<float>(c, 0.0f), rv = std::vector<float>(c, 1.0f);
  std::vector<float> mean = std::vector<float>(c, 0.0f), invstd = std::vector<float>(c, 1.0f);
  std::vector<float> dw = std::vector<float>(c), db = std::vector<float>(c);
};

struct TrainingArgs {
  const float* x;
  int64_t n, c, s;
  bnlab_layout layout;
  const float *weight, *bias;
  float *running_mean, *running_var;
  double momentum;
  int unbiased;
  double eps;
  float *y, *save_mean, *save_invstd;
};

TrainingArgs valid_training(Buffers& k) {
  return {k.x.data(), k.n,        k.c,         k.s,           BNLAB_CHANNELS_FIRST,
          k.w.data(), k.b.data(), k.rm.data(), k.rv.data(),   0.1,
          1,          1e-5,       k.y.data(),  k.mean.data(), k.invstd.data()};
}

bnlab_status call(const TrainingArgs& a) {
  return bnlab_batch_norm_forward_training(a.x, a.n, a.c, a.s, a.layout, a.weight, a.bias,
                                           a.running_mean, a.running_var, a.momentum, a.unbiased,
                                           a.eps, a.y, a.save_mean, a.save_invstd);
}

struct ErrorCase {
  const char* name;
  std::function<void(TrainingArgs&)> spoil;
  bnlab_status status;
  const char* message_part;  // what bnlab_last_error() must contain
};

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

std::vector<ErrorCase> training_errors() {
  return {
      {"NullX", [](TrainingArgs& a) { a.x = nullptr; }, BNLAB_INVALID_ARGUMENT,
       "x must not be null"},
      {"NullY", [](TrainingArgs& a) { a.y = nullptr; }, BNLAB_INVALID_ARGUMENT,
       "y must not be null"},
      {"NegativeN", [](TrainingArgs& a) { a.n = -1; }, BNLAB_INVALID_ARGUMENT,
       "n must be non-negative"},
      {"NegativeC", [](TrainingArgs& a) { a.c = -3; }, BNLAB_INVALID_ARGUMENT,
       "c must be non-negative"},
      {"NegativeS", [](TrainingArgs& a) { a.s = -2; }, BNLAB_INVALID_ARGUMENT,
       "s must be non-negative"},
      {"SizesOverflow",
       [](TrainingArgs& a) {
         a.n = int64_t{1} << 40;
         a.c = int64_t{1} << 30;
       },
       BNLAB_INVALID_ARGUMENT, "n*c*s overflows"},
      {"SizesOverflowThroughS",
       [](TrainingArgs& a) {
         a.c = 3;
         a.s = std::numeric_limits<int64_t>::max() / 2;
       },
       BNLAB_INVALID_ARGUMENT, "n*c*s overflows"},
      {"EpsZero", [](TrainingArgs& a) { a.eps = 0.0; }, BNLAB_INVALID_ARGUMENT, "eps"},
      {"EpsNegative", [](TrainingArgs& a) { a.eps = -1e-5; }, BNLAB_INVALID_ARGUMENT, "eps"},
      {"EpsNaN", [](TrainingArgs& a) { a.eps = kNaN; }, BNLAB_INVALID_ARGUMENT, "eps"},
      {"EpsInf", [](TrainingArgs& a) { a.eps = kInf; }, BNLAB_INVALID_ARGUMENT, "eps"},
      {"MomentumBelowZero", [](TrainingArgs& a) { a.momentum = -0.1; }, BNLAB_INVALID_ARGUMENT,
       "momentum"},
      {"MomentumAboveOne", [](TrainingArgs& a) { a.momentum = 1.5; }, BNLAB_INVALID_ARGUMENT,
       "momentum"},
      {"MomentumNaN", [](TrainingArgs& a) { a.momentum = kNaN; }, BNLAB_INVALID_ARGUMENT,
       "momentum"},
      {"OnlyRunningMean", [](TrainingArgs& a) { a.running_var = nullptr; }, BNLAB_INVALID_ARGUMENT,
       "running_var"},
      {"OnlyRunningVar", [](TrainingArgs& a) { a.running_mean = nullptr; }, BNLAB_INVALID_ARGUMENT,
       "running_mean"},
      {"OneValuePerChannel",
       [](TrainingArgs& a) {
         a.n = 1;
         a.s = 1;
       },
       BNLAB_TOO_FEW_VALUES, "expected more than 1 value per channel when training"},
      {"OneValuePerChannelChannelsLast",
       [](TrainingArgs& a) {
         a.n = 1;
         a.s = 1;
         a.layout = BNLAB_CHANNELS_LAST;
       },
       BNLAB_TOO_FEW_VALUES, "expected more than 1 value per channel when training"},
  };
}

class CApiTrainingErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(CApiTrainingErrors, ReturnsStatusAndNamesTheArgument) {
  Buffers k;
  const std::vector<float> rm0 = k.rm, rv0 = k.rv;
  TrainingArgs a = valid_training(k);
  ASSERT_EQ(call(a), BNLAB_OK);  // the unspoiled call is valid
  k.rm = rm0;
  k.rv = rv0;
  GetParam().spoil(a);
  EXPECT_EQ(call(a), GetParam().status);
  EXPECT_NE(std::string(bnlab_last_error()).find(GetParam().message_part), std::string::npos)
      << "bnlab_last_error(): " << bnlab_last_error();
  // A refused call changes no running statistic.
  EXPECT_EQ(k.rm, rm0);
  EXPECT_EQ(k.rv, rv0);
}

INSTANTIATE_TEST_SUITE_P(Training, CApiTrainingErrors, ::testing::ValuesIn(training_errors()),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) {
                           return std::string(info.param.name);
                         });

// Runs f, expects status, and checks that bnlab_last_error() contains part.
void expect_error(bnlab_status got, bnlab_status want, const std::string& part) {
  EXPECT_EQ(got, want) << bnlab_status_string(got);
  EXPECT_NE(std::string(bnlab_last_error()).find(part), std::string::npos)
      << "wanted '" << part << "' in bnlab_last_error(): " << bnlab_last_error();
}

TEST(CApiInferenceErrors, NullPointersSizesEpsAndLayoutAreRefusedByName) {
  Buffers k;
  const auto inference = [&](const float* x, int64_t n, int64_t c, int64_t s, bnlab_layout layout,
                             const float* rm, const float* rv, double eps, float* y) {
    return bnlab_batch_norm_forward_inference(x, n, c, s, layout, k.w.data(), k.b.data(), rm, rv,
                                              eps, y);
  };
  const float *x = k.x.data(), *rm = k.rm.data(), *rv = k.rv.data();
  float* y = k.y.data();
  const bnlab_layout cf = BNLAB_CHANNELS_FIRST;
  ASSERT_EQ(inference(x, 2, 3, 4, cf, rm, rv, 1e-5, y), BNLAB_OK);
  expect_error(inference(nullptr, 2, 3, 4, cf, rm, rv, 1e-5, y), BNLAB_INVALID_ARGUMENT,
               "x must not be null");
  expect_error(inference(x, 2, 3, 4, cf, rm, rv, 1e-5, nullptr), BNLAB_INVALID_ARGUMENT,
               "y must not be null");
  expect_error(inference(x, 2, 3, 4, cf, nullptr, rv, 1e-5, y), BNLAB_INVALID_ARGUMENT,
               "running_mean must not be null");
  expect_error(inference(x, 2, 3, 4, cf, rm, nullptr, 1e-5, y), BNLAB_INVALID_ARGUMENT,
               "running_var must not be null");
  expect_error(inference(x, -2, 3, 4, cf, rm, rv, 1e-5, y), BNLAB_INVALID_ARGUMENT,
               "n must be non-negative");
  expect_error(inference(x, 2, -3, 4, cf, rm, rv, 1e-5, y), BNLAB_INVALID_ARGUMENT,
               "c must be non-negative");
  expect_error(inference(x, 2, 3, -4, cf, rm, rv, 1e-5, y), BNLAB_INVALID_ARGUMENT,
               "s must be non-negative");
  expect_error(inference(x, int64_t{1} << 62, 4, 4, cf, rm, rv, 1e-5, y), BNLAB_INVALID_ARGUMENT,
               "n*c*s overflows");
  expect_error(inference(x, 2, 3, 4, cf, rm, rv, 0.0, y), BNLAB_INVALID_ARGUMENT, "eps");
  expect_error(inference(x, 2, 3, 4, cf, rm, rv, kNaN, y), BNLAB_INVALID_ARGUMENT, "eps");
  // One value per channel is fine in inference.
  EXPECT_EQ(inference(x, 1, 3, 1, cf, rm, rv, 1e-5, y), BNLAB_OK);
  // A huge c with null buffers: the null buffer is named before any scratch of
  // c values is taken (fuzz/regressions/capi_inference_null_x_huge_c: 16 GiB).
  const int64_t huge = int64_t{1} << 31;
  expect_error(inference(nullptr, 32, huge, 32, BNLAB_BLOCKED16, nullptr, nullptr, 1e-5, nullptr),
               BNLAB_INVALID_ARGUMENT, "x must not be null");
  expect_error(bnlab_batch_norm_forward_inference_bf16(nullptr, 32, huge, 32, BNLAB_BLOCKED16,
                                                       nullptr, nullptr, nullptr, nullptr, 1e-5,
                                                       nullptr),
               BNLAB_INVALID_ARGUMENT, "x must not be null");
}

TEST(CApiBackwardErrors, NullPointersSizesAndLayoutAreRefusedByName) {
  Buffers k;
  const auto backward = [&](const float* x, const float* dy, int64_t n, int64_t c, int64_t s,
                            bnlab_layout layout, const float* mean, const float* invstd) {
    return bnlab_batch_norm_backward(x, dy, n, c, s, layout, k.w.data(), mean, invstd, k.dx.data(),
                                     k.dw.data(), k.db.data());
  };
  const float *x = k.x.data(), *dy = k.dy.data(), *mean = k.mean.data(), *inv = k.invstd.data();
  const bnlab_layout cl = BNLAB_CHANNELS_LAST;
  ASSERT_EQ(backward(x, dy, 2, 3, 4, cl, mean, inv), BNLAB_OK);
  expect_error(backward(nullptr, dy, 2, 3, 4, cl, mean, inv), BNLAB_INVALID_ARGUMENT,
               "x must not be null");
  expect_error(backward(x, nullptr, 2, 3, 4, cl, mean, inv), BNLAB_INVALID_ARGUMENT,
               "dy must not be null");
  expect_error(backward(x, dy, 2, 3, 4, cl, nullptr, inv), BNLAB_INVALID_ARGUMENT,
               "save_mean must not be null");
  expect_error(backward(x, dy, 2, 3, 4, cl, mean, nullptr), BNLAB_INVALID_ARGUMENT,
               "save_invstd must not be null");
  expect_error(backward(x, dy, -1, 3, 4, cl, mean, inv), BNLAB_INVALID_ARGUMENT,
               "n must be non-negative");
  expect_error(backward(x, dy, 2, -3, 4, cl, mean, inv), BNLAB_INVALID_ARGUMENT,
               "c must be non-negative");
  expect_error(backward(x, dy, 2, 3, -4, cl, mean, inv), BNLAB_INVALID_ARGUMENT,
               "s must be non-negative");
  expect_error(backward(x, dy, int64_t{1} << 32, int64_t{1} << 32, 4, cl, mean, inv),
               BNLAB_INVALID_ARGUMENT, "n*c*s overflows");
}

TEST(CApiStatus, NonFiniteBatchIsReportedAndRunningStatsKept) {
  Buffers k;
  k.x[5] = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> rm0 = k.rm, rv0 = k.rv;
  TrainingArgs a = valid_training(k);
  expect_error(call(a), BNLAB_NON_FINITE, "not finite");
  EXPECT_EQ(k.rm, rm0);
  EXPECT_EQ(k.rv, rv0);
  k.x[5] = std::numeric_limits<float>::infinity();
  a.layout = BNLAB_CHANNELS_LAST;
  expect_error(call(a), BNLAB_NON_FINITE, "not finite");
  EXPECT_EQ(k.rm, rm0);
  EXPECT_EQ(k.rv, rv0);
}

// ---- the split kernels (a synchronized batch norm over parts of the batch) ----

TEST_P(CApiLayouts, SplitKernelsOverUnequalPartsMatchTheFusedCalls) {
  const bnlab_layout layout = GetParam();
  const BatchNormShape sh = shape(7, layout == BNLAB_BLOCKED16 ? 32 : 6, 9, layout);
  const int64_t sizes[4] = {3, 0, 1, 3}, parts = 4, c = sh.c, per_sample = sh.c * sh.s;
  const std::vector<float> x = channel_data(sh, 97), dy = random_vector(sh.numel(), 98);
  const std::vector<float> w = random_vector(c, 99, 1.0f, 0.5f), b = random_vector(c, 100);
  for (bool affine : {false, true}) {
    SCOPED_TRACE(describe(sh) + (affine ? " affine" : ""));
    const float* wp = affine ? w.data() : nullptr;
    const float* bp = affine ? b.data() : nullptr;
    std::vector<float> rm(c, 0.25f), rv(c, 2.0f), y(x.size()), sm(c), si(c);
    ASSERT_EQ(
        bnlab_batch_norm_forward_training(x.data(), sh.n, c, sh.s, layout, wp, bp, rm.data(),
                                          rv.data(), 0.1, 1, 1e-5, y.data(), sm.data(), si.data()),
        BNLAB_OK);
    std::vector<float> dx(x.size()), dw(c), db(c);
    ASSERT_EQ(bnlab_batch_norm_backward(x.data(), dy.data(), sh.n, c, sh.s, layout, wp, sm.data(),
                                        si.data(), dx.data(), dw.data(), db.data()),
              BNLAB_OK);

    std::vector<int64_t> counts(parts);
    std::vector<double> means(parts * c), m2s(parts * c), mean(c), m2(c);
    for (int64_t p = 0, i0 = 0; p < parts; i0 += sizes[p], ++p) {
      counts[p] = sizes[p] * sh.s;
      ASSERT_EQ(bnlab_batch_norm_stats(x.data() + i0 * per_sample, sizes[p], c, sh.s, layout,
                                       &means[p * c], &m2s[p * c]),
                BNLAB_OK);
    }
    int64_t count = 0;
    ASSERT_EQ(bnlab_batch_norm_merge_stats(parts, c, counts.data(), means.data(), m2s.data(),
                                           mean.data(), m2.data(), &count),
              BNLAB_OK);
    EXPECT_EQ(count, sh.per_channel());
    std::vector<float> split_y(x.size()), split_dx(x.size()), prm, prv, psm(c), psi(c);
    for (int64_t p = 0, i0 = 0; p < parts; i0 += sizes[p], ++p) {
      prm.assign(c, 0.25f);
      prv.assign(c, 2.0f);
      ASSERT_EQ(bnlab_batch_norm_forward_with_stats(
                    x.data() + i0 * per_sample, sizes[p], c, sh.s, layout, wp, bp, mean.data(),
                    m2.data(), count, prm.data(), prv.data(), 0.1, 1, 1e-5,
                    split_y.data() + i0 * per_sample, psm.data(), psi.data()),
                BNLAB_OK);
    }
    std::vector<double> sum_dy(c, 0.0), sum_dy_xhat(c, 0.0), part_dy(c), part_dy_xhat(c);
    for (int64_t p = 0, i0 = 0; p < parts; i0 += sizes[p], ++p) {
      ASSERT_EQ(bnlab_batch_norm_backward_reduce(
                    x.data() + i0 * per_sample, dy.data() + i0 * per_sample, sizes[p], c, sh.s,
                    layout, psm.data(), psi.data(), part_dy.data(), part_dy_xhat.data()),
                BNLAB_OK);
      for (int64_t j = 0; j < c; ++j) {
        sum_dy[j] += part_dy[j];
        sum_dy_xhat[j] += part_dy_xhat[j];
      }
    }
    for (int64_t p = 0, i0 = 0; p < parts; i0 += sizes[p], ++p)
      ASSERT_EQ(bnlab_batch_norm_backward_with_sums(
                    x.data() + i0 * per_sample, dy.data() + i0 * per_sample, sizes[p], c, sh.s,
                    layout, wp, psm.data(), psi.data(), sum_dy.data(), sum_dy_xhat.data(), count,
                    split_dx.data() + i0 * per_sample),
                BNLAB_OK);
    EXPECT_TRUE(all_close("y", split_y.data(), to_double(y), kTolerance));
    EXPECT_TRUE(all_close("save_mean", psm.data(), to_double(sm), kTolerance));
    EXPECT_TRUE(all_close("save_invstd", psi.data(), to_double(si), kTolerance));
    EXPECT_TRUE(all_close("running_mean", prm.data(), to_double(rm), kTolerance));
    EXPECT_TRUE(all_close("running_var", prv.data(), to_double(rv), kTolerance));
    EXPECT_TRUE(all_close("dx", split_dx.data(), to_double(dx), kTolerance));
    const ReferenceBackward ref = reference_backward(x, dy, sh, wp, sm.data(), si.data());
    EXPECT_TRUE(all_close("dweight", to_float(sum_dy_xhat).data(), ref.dweight, kTolerance,
                          &ref.dweight_scale));
    EXPECT_TRUE(
        all_close("dbias", to_float(sum_dy).data(), ref.dbias, kTolerance, &ref.dbias_scale));
  }
}

TEST(CApiSplitErrors, BadArgumentsGiveAStatusNamingThem) {
  Buffers k;
  const float *x = k.x.data(), *dy = k.dy.data(), *mean_f = k.mean.data(), *inv = k.invstd.data();
  const bnlab_layout cf = BNLAB_CHANNELS_FIRST;
  std::vector<double> mean(3, 0.0), m2(3, 1.0), s1(3), s2(3);
  EXPECT_EQ(bnlab_batch_norm_stats(x, 2, 3, 4, cf, mean.data(), m2.data()), BNLAB_OK);
  expect_error(bnlab_batch_norm_stats(nullptr, 2, 3, 4, cf, mean.data(), m2.data()),
               BNLAB_INVALID_ARGUMENT, "x must not be null");
  expect_error(bnlab_batch_norm_stats(x, 2, 3, 4, cf, mean.data(), nullptr), BNLAB_INVALID_ARGUMENT,
               "m2 must not be null");
  expect_error(bnlab_batch_norm_stats(x, 2, -3, 4, cf, mean.data(), m2.data()),
               BNLAB_INVALID_ARGUMENT, "c must be non-negative");
  const int64_t counts[2] = {8, -8};
  int64_t count = 0;
  expect_error(bnlab_batch_norm_merge_stats(2, 3, counts, mean.data(), m2.data(), s1.data(),
                                            s2.data(), &count),
               BNLAB_INVALID_ARGUMENT, "counts[1] must be non-negative, got -8");
  expect_error(bnlab_batch_norm_merge_stats(1, 3, counts, mean.data(), m2.data(), s1.data(),
                                            s2.data(), nullptr),
               BNLAB_INVALID_ARGUMENT, "count must not be null");
  const auto with_stats = [&](int64_t n, int64_t count_in) {
    return bnlab_batch_norm_forward_with_stats(x, n, 3, 4, cf, nullptr, nullptr, mean.data(),
                                               m2.data(), count_in, k.rm.data(), k.rv.data(), 0.1,
                                               1, 1e-5, k.y.data(), nullptr, nullptr);
  };
  EXPECT_EQ(with_stats(2, 8), BNLAB_OK);
  expect_error(with_stats(2, 7), BNLAB_INVALID_ARGUMENT, "count must be at least");
  expect_error(with_stats(0, 1), BNLAB_TOO_FEW_VALUES, "more than 1 value");
  const std::vector<float> rm0 = k.rm, rv0 = k.rv;
  mean[1] = std::numeric_limits<double>::infinity();
  expect_error(with_stats(2, 8), BNLAB_NON_FINITE, "not finite");
  EXPECT_EQ(k.rm, rm0);
  EXPECT_EQ(k.rv, rv0);
  expect_error(
      bnlab_batch_norm_backward_reduce(x, nullptr, 2, 3, 4, cf, mean_f, inv, s1.data(), s2.data()),
      BNLAB_INVALID_ARGUMENT, "dy must not be null");
  expect_error(
      bnlab_batch_norm_backward_reduce(x, dy, 2, 3, 4, cf, mean_f, inv, s1.data(), nullptr),
      BNLAB_INVALID_ARGUMENT, "sum_dy_xhat must not be null");
  expect_error(bnlab_batch_norm_backward_with_sums(x, dy, 2, 3, 4, cf, nullptr, mean_f, inv,
                                                   s1.data(), s2.data(), -1, k.dx.data()),
               BNLAB_INVALID_ARGUMENT, "count must be at least");
  expect_error(bnlab_batch_norm_backward_with_sums(x, dy, 2, 3, 4, cf, nullptr, mean_f, nullptr,
                                                   s1.data(), s2.data(), 8, k.dx.data()),
               BNLAB_INVALID_ARGUMENT, "save_invstd must not be null");
}

TEST(CApiStatus, EveryStatusHasItsOwnString) {
  const bnlab_status all[] = {BNLAB_OK, BNLAB_INVALID_ARGUMENT, BNLAB_TOO_FEW_VALUES,
                              BNLAB_NON_FINITE};
  EXPECT_STREQ(bnlab_status_string(BNLAB_OK), "ok");
  EXPECT_STREQ(bnlab_status_string(BNLAB_INVALID_ARGUMENT), "invalid argument");
  EXPECT_STREQ(bnlab_status_string(BNLAB_TOO_FEW_VALUES), "too few values per channel");
  EXPECT_STREQ(bnlab_status_string(BNLAB_NON_FINITE), "non-finite statistics");
  for (bnlab_status a : all)
    for (bnlab_status b : all)
      if (a != b) {
        EXPECT_STRNE(bnlab_status_string(a), bnlab_status_string(b));
      }
  EXPECT_STREQ(bnlab_status_string(static_cast<bnlab_status>(42)), "unknown status");
}

TEST(CApiStatus, StatusValuesAreTheIssuesNumbers) {
  // Other languages bind to these numbers.
  EXPECT_EQ(BNLAB_CHANNELS_FIRST, 0);
  EXPECT_EQ(BNLAB_CHANNELS_LAST, 1);
  EXPECT_EQ(BNLAB_OK, 0);
  EXPECT_EQ(BNLAB_INVALID_ARGUMENT, 1);
  EXPECT_EQ(BNLAB_TOO_FEW_VALUES, 2);
  EXPECT_EQ(BNLAB_NON_FINITE, 3);
}

TEST(CApiStatus, LastErrorBelongsToTheCallingThread) {
  Buffers k;
  TrainingArgs a = valid_training(k);
  a.eps = -1.0;
  ASSERT_EQ(call(a), BNLAB_INVALID_ARGUMENT);
  const std::string mine = bnlab_last_error();
  EXPECT_NE(mine.find("eps"), std::string::npos);
  std::string theirs;
  std::thread other([&] {
    Buffers k2;
    TrainingArgs b = valid_training(k2);
    b.x = nullptr;
    EXPECT_EQ(call(b), BNLAB_INVALID_ARGUMENT);
    theirs = bnlab_last_error();
  });
  other.join();
  EXPECT_NE(theirs.find("x must not be null"), std::string::npos) << theirs;
  EXPECT_EQ(std::string(bnlab_last_error()), mine);  // untouched by the other thread
}

TEST(CApiThreads, OneAndTwoThreadsGiveTheSameResultsAndEachIsDeterministic) {
  const BatchNormShape sh = shape(8, 16, 1024, BNLAB_CHANNELS_FIRST);
  const std::vector<float> x = channel_data(sh, 99), dy = random_vector(sh.numel(), 100);
  auto run = [&](int threads) {
    bnlab_set_num_threads(threads);
    std::vector<float> y(x.size()), mean(sh.c), invstd(sh.c), dx(x.size()), dw(sh.c), db(sh.c);
    std::vector<float> rm(sh.c, 0.0f), rv(sh.c, 1.0f);
    EXPECT_EQ(bnlab_batch_norm_forward_training(x.data(), sh.n, sh.c, sh.s, BNLAB_CHANNELS_FIRST,
                                                nullptr, nullptr, rm.data(), rv.data(), 0.1, 1,
                                                1e-5, y.data(), mean.data(), invstd.data()),
              BNLAB_OK);
    EXPECT_EQ(bnlab_batch_norm_backward(x.data(), dy.data(), sh.n, sh.c, sh.s, BNLAB_CHANNELS_FIRST,
                                        nullptr, mean.data(), invstd.data(), dx.data(), dw.data(),
                                        db.data()),
              BNLAB_OK);
    y.insert(y.end(), dx.begin(), dx.end());
    y.insert(y.end(), rv.begin(), rv.end());
    y.insert(y.end(), dw.begin(), dw.end());
    return y;
  };
  const std::vector<float> one_a = run(1), one_b = run(1), two_a = run(2), two_b = run(2);
  bnlab_set_num_threads(0);
  EXPECT_EQ(one_a, one_b);
  EXPECT_EQ(two_a, two_b);
  EXPECT_TRUE(all_close("1 vs 2 threads", two_a.data(), to_double(one_a), 1e-5));
}

}  // namespace
}  // namespace bnlab::test
