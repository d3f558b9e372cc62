// The C API's GroupNorm and LayerNorm functions (include/bnlab/bnlab.h):
// results against a float64 reference written here, NULL affine and aliasing,
// and every error path: the status, and a bnlab_last_error() message naming
// the argument and its value.
// Tolerance: |got - ref| <= 1e-5 * (1 + |ref|) (y, statistics), 2e-5 (dx, and
// dweight/dbias, which the data here keeps small).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "bnlab/bnlab.h"

namespace {

constexpr double kEps = 1e-5;

int64_t index_of(int64_t n_c, int64_t c, int64_t s, bnlab_layout layout, int64_t i, int64_t j,
                 int64_t k) {
  (void)n_c;
  switch (layout) {
    case BNLAB_CHANNELS_FIRST:
      return (i * c + j) * s + k;
    case BNLAB_CHANNELS_LAST:
      return (i * s + k) * c + j;
    case BNLAB_BLOCKED16:
      return ((i * (c / 16) + j / 16) * s + k) * 16 + j % 16;
  }
  return -1;
}

std::vector<float> random_vector(size_t count, uint32_t seed, float mean = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(mean, 1.0f);
  std::vector<float> v(count);
  for (float& e : v) e = normal(rng);
  return v;
}

void expect_close(const std::string& what, const std::vector<float>& got,
                  const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t e = 0; e < want.size(); ++e)
    ASSERT_NEAR(got[e], want[e], tol * (1.0 + std::fabs(want[e]))) << what << " [" << e << "]";
}

struct Grads {
  std::vector<double> y, mean, invstd, dx, dweight, dbias;
};

// GroupNorm in float64 (LayerNorm: n = rows, c = cols, s = 1, one group,
// channels-first): forward, then the backward from the float64 statistics.
Grads reference(const std::vector<float>& x, const std::vector<float>& dy, int64_t n, int64_t c,
                int64_t s, int64_t groups, bnlab_layout layout, const std::vector<float>& w,
                const std::vector<float>& b) {
  Grads r;
  r.y.assign(x.size(), 0.0);
  r.dx.assign(x.size(), 0.0);
  r.dweight.assign(c, 0.0);
  r.dbias.assign(c, 0.0);
  const int64_t cg = c / groups;
  const double m = static_cast<double>(cg * s);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t g = 0; g < groups; ++g) {
      const auto at = [&](int64_t j, int64_t k) { return index_of(n, c, s, layout, i, j, k); };
      double sum = 0.0, sq = 0.0, sum_g = 0.0, sum_gx = 0.0;
      for (int64_t j = g * cg; j < (g + 1) * cg; ++j)
        for (int64_t k = 0; k < s; ++k) sum += x[at(j, k)];
      const double mu = sum / m;
      for (int64_t j = g * cg; j < (g + 1) * cg; ++j)
        for (int64_t k = 0; k < s; ++k) sq += (x[at(j, k)] - mu) * (x[at(j, k)] - mu);
      const double inv = 1.0 / std::sqrt(sq / m + kEps);
      r.mean.push_back(mu);
      r.invstd.push_back(inv);
      for (int64_t j = g * cg; j < (g + 1) * cg; ++j)
        for (int64_t k = 0; k < s; ++k) {
          const int64_t e = at(j, k);
          const double xhat = (x[e] - mu) * inv, wj = w.empty() ? 1.0 : w[j];
          r.y[e] = xhat * wj + (b.empty() ? 0.0 : b[j]);
          sum_g += wj * dy[e];
          sum_gx += wj * dy[e] * xhat;
          r.dbias[j] += dy[e];
          r.dweight[j] += dy[e] * xhat;
        }
      for (int64_t j = g * cg; j < (g + 1) * cg; ++j)
        for (int64_t k = 0; k < s; ++k) {
          const int64_t e = at(j, k);
          const double xhat = (x[e] - mu) * inv, wj = w.empty() ? 1.0 : w[j];
          r.dx[e] = inv * (wj * dy[e] - sum_g / m - xhat * sum_gx / m);
        }
    }
  return r;
}

class NormsCApiLayouts : public ::testing::TestWithParam<bnlab_layout> {};

TEST_P(NormsCApiLayouts, GroupNormForwardAndBackwardMatchFloat64) {
  const bnlab_layout layout = GetParam();
  const int64_t n = 3, c = 32, s = 5;
  for (int64_t groups : {1, 4, 32}) {
    for (bool affine : {false, true}) {
      SCOPED_TRACE("groups " + std::to_string(groups) + (affine ? " affine" : ""));
      const size_t count = static_cast<size_t>(n * c * s);
      const std::vector<float> x = random_vector(count, 1, 0.5f), dy = random_vector(count, 2);
      const std::vector<float> w = affine ? random_vector(c, 3, 1.0f) : std::vector<float>{};
      const std::vector<float> b = affine ? random_vector(c, 4) : std::vector<float>{};
      std::vector<float> y(count), mean(n * groups), invstd(n * groups);
      ASSERT_EQ(bnlab_group_norm_forward(x.data(), n, c, s, groups, layout,
                                         affine ? w.data() : nullptr, affine ? b.data() : nullptr,
                                         kEps, y.data(), mean.data(), invstd.data()),
                BNLAB_OK)
          << bnlab_last_error();
      EXPECT_STREQ(bnlab_last_error(), "");
      const Grads ref = reference(x, dy, n, c, s, groups, layout, w, b);
      expect_close("y", y, ref.y, 1e-5);
      expect_close("save_mean", mean, ref.mean, 1e-5);
      expect_close("save_invstd", invstd, ref.invstd, 1e-5);
      std::vector<float> dx(count), dw(c), db(c);
      ASSERT_EQ(bnlab_group_norm_backward(x.data(), dy.data(), n, c, s, groups, layout,
                                          affine ? w.data() : nullptr, mean.data(), invstd.data(),
                                          dx.data(), dw.data(), db.data()),
                BNLAB_OK)
          << bnlab_last_error();
      expect_close("dx", dx, ref.dx, 2e-5);
      expect_close("dweight", dw, ref.dweight, 2e-5);
      expect_close("dbias", db, ref.dbias, 2e-5);
      // In place, and every optional pointer NULL.
      std::vector<float> inplace = x;
      ASSERT_EQ(bnlab_group_norm_forward(inplace.data(), n, c, s, groups, layout,
                                         affine ? w.data() : nullptr, affine ? b.data() : nullptr,
                                         kEps, inplace.data(), nullptr, nullptr),
                BNLAB_OK);
      EXPECT_EQ(inplace, y);
      EXPECT_EQ(bnlab_group_norm_backward(x.data(), dy.data(), n, c, s, groups, layout, nullptr,
                                          mean.data(), invstd.data(), nullptr, nullptr, nullptr),
                BNLAB_OK);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(EveryLayout, NormsCApiLayouts,
                         ::testing::Values(BNLAB_CHANNELS_FIRST, BNLAB_CHANNELS_LAST,
                                           BNLAB_BLOCKED16));

TEST(NormsCApi, LayerNormForwardAndBackwardMatchFloat64) {
  const int64_t rows = 7, cols = 45;
  const size_t count = static_cast<size_t>(rows * cols);
  const std::vector<float> x = random_vector(count, 5, -0.5f), dy = random_vector(count, 6);
  const std::vector<float> w = random_vector(cols, 7, 1.0f), b = random_vector(cols, 8);
  std::vector<float> y(count), mean(rows), invstd(rows), dx(count), dw(cols), db(cols);
  ASSERT_EQ(bnlab_layer_norm_forward(x.data(), rows, cols, w.data(), b.data(), kEps, y.data(),
                                     mean.data(), invstd.data()),
            BNLAB_OK);
  const Grads ref = reference(x, dy, rows, cols, 1, 1, BNLAB_CHANNELS_FIRST, w, b);
  expect_close("y", y, ref.y, 1e-5);
  expect_close("save_mean", mean, ref.mean, 1e-5);
  expect_close("save_invstd", invstd, ref.invstd, 1e-5);
  ASSERT_EQ(bnlab_layer_norm_backward(x.data(), dy.data(), rows, cols, w.data(), mean.data(),
                                      invstd.data(), dx.data(), dw.data(), db.data()),
            BNLAB_OK);
  expect_close("dx", dx, ref.dx, 2e-5);
  expect_close("dweight", dw, ref.dweight, 2e-5);
  expect_close("dbias", db, ref.dbias, 2e-5);
  ASSERT_EQ(bnlab_layer_norm_forward(x.data(), rows, cols, nullptr, nullptr, kEps, y.data(),
                                     nullptr, nullptr),
            BNLAB_OK);
  expect_close("y without affine", y,
               reference(x, dy, rows, cols, 1, 1, BNLAB_CHANNELS_FIRST, {}, {}).y, 1e-5);
}

// A call's status and that bnlab_last_error() contains part.
void expect_refused(bnlab_status status, const std::string& part) {
  EXPECT_EQ(status, BNLAB_INVALID_ARGUMENT) << bnlab_status_string(status);
  EXPECT_NE(std::string(bnlab_last_error()).find(part), std::string::npos) << bnlab_last_error();
}

TEST(NormsCApiErrors, GroupNormRefusesBadArgumentsByName) {
  std::vector<float> x(96, 1.0f), y(96), stat(32, 1.0f);
  const auto fwd = [&](const float* in, int64_t n, int64_t c, int64_t s, int64_t groups, int layout,
                       double eps, float* out) {
    return bnlab_group_norm_forward(in, n, c, s, groups, static_cast<bnlab_layout>(layout), nullptr,
                                    nullptr, eps, out, nullptr, nullptr);
  };
  expect_refused(fwd(x.data(), 2, 6, 8, 0, 0, kEps, y.data()), "groups must be at least 1, got 0");
  expect_refused(fwd(x.data(), 2, 6, 8, -3, 0, kEps, y.data()),
                 "groups must be at least 1, got -3");
  expect_refused(fwd(x.data(), 2, 6, 8, 4, 0, kEps, y.data()),
                 "c must be a multiple of groups, got c=6, groups=4");
  expect_refused(fwd(x.data(), 2, 24, 2, 2, BNLAB_BLOCKED16, kEps, y.data()),
                 "layout blocked16 needs c to be a multiple of 16, got c=24");
  expect_refused(fwd(x.data(), 2, 6, 8, 2, 3, kEps, y.data()), "layout");
  expect_refused(fwd(x.data(), 2, 6, 8, 2, -1, kEps, y.data()), "layout");
  expect_refused(fwd(nullptr, 2, 6, 8, 2, 0, kEps, y.data()), "x must not be null");
  expect_refused(fwd(x.data(), 2, 6, 8, 2, 0, kEps, nullptr), "y must not be null");
  expect_refused(fwd(x.data(), -2, 6, 8, 2, 0, kEps, y.data()), "n must be non-negative, got -2");
  expect_refused(fwd(x.data(), 2, 6, 8, 2, 0, 0.0, y.data()), "eps must be positive");
  expect_refused(fwd(x.data(), 2, 6, 8, 2, 0, NAN, y.data()), "eps must be positive");
  expect_refused(fwd(x.data(), int64_t{1} << 40, int64_t{1} << 40, 1, 1, 0, kEps, y.data()),
                 "n*c*s overflows");
  const auto bwd = [&](const float* in, const float* dy, const float* mean, const float* inv) {
    return bnlab_group_norm_backward(in, dy, 2, 6, 8, 2, BNLAB_CHANNELS_FIRST, nullptr, mean, inv,
                                     y.data(), nullptr, nullptr);
  };
  expect_refused(bwd(nullptr, x.data(), stat.data(), stat.data()), "x must not be null");
  expect_refused(bwd(x.data(), nullptr, stat.data(), stat.data()), "dy must not be null");
  expect_refused(bwd(x.data(), x.data(), nullptr, stat.data()), "save_mean must not be null");
  expect_refused(bwd(x.data(), x.data(), stat.data(), nullptr), "save_invstd must not be null");
  expect_refused(
      bnlab_group_norm_backward(x.data(), x.data(), 2, 6, 8, 5, BNLAB_CHANNELS_FIRST, nullptr,
                                stat.data(), stat.data(), y.data(), nullptr, nullptr),
      "c must be a multiple of groups, got c=6, groups=5");
  // A success clears the previous message.
  ASSERT_EQ(fwd(x.data(), 2, 6, 8, 3, 0, kEps, y.data()), BNLAB_OK);
  EXPECT_STREQ(bnlab_last_error(), "");
}

TEST(NormsCApiErrors, LayerNormRefusesBadArgumentsByName) {
  std::vector<float> x(12, 1.0f), y(12), stat(3, 1.0f);
  expect_refused(
      bnlab_layer_norm_forward(x.data(), -1, 4, nullptr, nullptr, kEps, y.data(), nullptr, nullptr),
      "rows must be non-negative, got -1");
  expect_refused(
      bnlab_layer_norm_forward(x.data(), 3, -4, nullptr, nullptr, kEps, y.data(), nullptr, nullptr),
      "cols must be non-negative, got -4");
  expect_refused(bnlab_layer_norm_forward(x.data(), int64_t{1} << 40, int64_t{1} << 40, nullptr,
                                          nullptr, kEps, y.data(), nullptr, nullptr),
                 "rows*cols overflows");
  expect_refused(
      bnlab_layer_norm_forward(nullptr, 3, 4, nullptr, nullptr, kEps, y.data(), nullptr, nullptr),
      "x must not be null");
  expect_refused(
      bnlab_layer_norm_forward(x.data(), 3, 4, nullptr, nullptr, -1.0, y.data(), nullptr, nullptr),
      "eps must be positive");
  expect_refused(bnlab_layer_norm_backward(x.data(), x.data(), 3, 4, nullptr, stat.data(), nullptr,
                                           y.data(), nullptr, nullptr),
                 "save_invstd must not be null");
  expect_refused(bnlab_layer_norm_backward(x.data(), nullptr, 3, 4, nullptr, stat.data(),
                                           stat.data(), y.data(), nullptr, nullptr),
                 "dy must not be null");
}

}  // namespace
