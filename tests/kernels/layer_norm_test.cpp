// LayerNorm's kernels against a float64 reference written here, in every
// kernel variant and against the plain loops; central differences for the
// backward; threads, null outputs, the argument checks and PyTorch's goldens
// (tests/golden/make_norm_goldens.py).
//
// Tolerances, slack and gradient steps: norm_test_support.hpp.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/group_norm.hpp"
#include "bnlab/layer_norm.hpp"
#include "bnlab/threading.hpp"
#include "norm_test_support.hpp"
#include "ulp_check.hpp"

#ifndef BNLAB_GOLDEN_DIR
#error "BNLAB_GOLDEN_DIR must name tests/golden (set by tests/kernels/CMakeLists.txt)"
#endif

namespace bnlab::test {
namespace {

using namespace norm_test;

// ---- the float64 reference ----

struct Reference {
  std::vector<double> y, mean, invstd, y_slack;
};

// Per row over its cols values: mean, biased var (two passes), invstd = 1/sqrt(var + eps),
// y = (x - mean)*invstd*w[k] + b[k].
template <class T>
Reference reference_forward(const std::vector<T>& x, const LayerNormShape& sh, const T* w,
                            const T* b, double eps) {
  Reference r;
  r.y.assign(x.size(), 0.0);
  r.y_slack.assign(x.size(), 0.0);
  r.mean.assign(sh.rows, 0.0);
  r.invstd.assign(sh.rows, 0.0);
  for (int64_t i = 0; i < sh.rows; ++i) {
    const T* row = x.data() + i * sh.cols;
    double sum = 0.0, sq = 0.0;
    for (int64_t k = 0; k < sh.cols; ++k) sum += row[k];
    const double mean = sum / static_cast<double>(sh.cols);
    for (int64_t k = 0; k < sh.cols; ++k) sq += (row[k] - mean) * (row[k] - mean);
    const double invstd = 1.0 / std::sqrt(sq / static_cast<double>(sh.cols) + eps);
    r.mean[i] = mean;
    r.invstd[i] = invstd;
    for (int64_t k = 0; k < sh.cols; ++k) {
      const double wk = w ? static_cast<double>(w[k]) : 1.0;
      r.y[i * sh.cols + k] = (row[k] - mean) * invstd * wk + (b ? static_cast<double>(b[k]) : 0.0);
      r.y_slack[i * sh.cols + k] = kMeanRounding * std::fabs(mean) * invstd * std::fabs(wk);
    }
  }
  return r;
}

struct ReferenceGrad {
  std::vector<double> dx, dweight, dbias, dweight_scale, dbias_scale, dx_slack;
};

// xhat = (x - mean)*invstd, g = w*dy: dx = invstd*(g - mean(g) - xhat*mean(g*xhat)) per row;
// dbias[k] = sum over rows of dy, dweight[k] = sum over rows of dy*xhat.
ReferenceGrad reference_backward(const std::vector<float>& x, const std::vector<float>& dy,
                                 const LayerNormShape& sh, const float* w, const float* mean,
                                 const float* invstd) {
  ReferenceGrad r;
  r.dx.assign(x.size(), 0.0);
  r.dx_slack.assign(x.size(), 0.0);
  for (auto* v : {&r.dweight, &r.dbias, &r.dweight_scale, &r.dbias_scale}) v->assign(sh.cols, 0.0);
  const double m = static_cast<double>(sh.cols);
  for (int64_t i = 0; i < sh.rows; ++i) {
    const double mu = mean[i], inv = invstd[i];
    double sum_g = 0.0, sum_gx = 0.0;
    for (int64_t k = 0; k < sh.cols; ++k) {
      const int64_t e = i * sh.cols + k;
      const double xhat = (x[e] - mu) * inv, g = dy[e] * (w ? w[k] : 1.0);
      sum_g += g;
      sum_gx += g * xhat;
      r.dbias[k] += dy[e];
      r.dweight[k] += dy[e] * xhat;
      r.dbias_scale[k] += std::fabs(dy[e]);
      r.dweight_scale[k] += std::fabs(dy[e] * xhat);
    }
    for (int64_t k = 0; k < sh.cols; ++k) {
      const int64_t e = i * sh.cols + k;
      const double xhat = (x[e] - mu) * inv, g = dy[e] * (w ? w[k] : 1.0);
      r.dx[e] = inv * (g - sum_g / m - xhat * sum_gx / m);
      r.dx_slack[e] = kTermRounding * inv *
                          (std::fabs(g) + std::fabs(sum_g) / m + std::fabs(xhat * sum_gx) / m) +
                      kMeanRounding * std::fabs(mu) * inv * inv *
                          (std::fabs(sum_gx) + std::fabs(sum_g * xhat)) / m;
    }
  }
  return r;
}

// ---- helpers ----

// Rows with different means and spreads, so a row mix-up shows.
std::vector<float> row_data(const LayerNormShape& sh, uint32_t seed) {
  std::vector<float> x = random_vector(sh.numel(), seed);
  for (int64_t i = 0; i < sh.rows; ++i)
    for (int64_t k = 0; k < sh.cols; ++k)
      x[i * sh.cols + k] = static_cast<float>(0.3 * (i % 5) - 0.5) +
                           (0.5f + 0.2f * static_cast<float>(i % 3)) * x[i * sh.cols + k];
  return x;
}

struct Outputs {
  std::vector<float> y, mean, invstd, dx, dweight, dbias;
};

Outputs run(const LayerNormShape& sh, const std::vector<float>& x, const std::vector<float>& dy,
            const float* w, const float* b) {
  Outputs o;
  o.y.assign(x.size(), 0.0f);
  o.mean.assign(sh.rows, 0.0f);
  o.invstd.assign(sh.rows, 0.0f);
  layer_norm_forward(x.data(), sh, w, b, kEps, o.y.data(), o.mean.data(), o.invstd.data());
  o.dx.assign(x.size(), 0.0f);
  o.dweight.assign(sh.cols, 0.0f);
  o.dbias.assign(sh.cols, 0.0f);
  layer_norm_backward(x.data(), dy.data(), sh, w, o.mean.data(), o.invstd.data(), o.dx.data(),
                      o.dweight.data(), o.dbias.data());
  return o;
}

// ---- every variant against the float64 reference, and against plain ----

// Which affine parameters are given: none, both, or weight alone (F.layer_norm allows it).
enum class Affine { none, both, weight_only };

struct Case {
  int64_t rows, cols;
  Affine affine;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return "r" + std::to_string(c.rows) + "c" + std::to_string(c.cols) +
         (c.affine == Affine::none   ? "_noaffine"
          : c.affine == Affine::both ? "_affine"
                                     : "_weight");
}

std::vector<Case> sweep_cases() {
  // cols = 1 (var 0), odd widths for the vector tails, 300 crosses the
  // 256-column tiles of the dweight sums, 5000 the 4096-value blocks; 70
  // rows are more than the 32 row chunks.
  const int64_t shapes[][2] = {{4, 1}, {3, 7}, {70, 33}, {5, 300}, {3, 5000}, {2, 1024}};
  std::vector<Case> cases;
  for (const auto& z : shapes)
    for (Affine a : {Affine::none, Affine::both, Affine::weight_only})
      cases.push_back({z[0], z[1], a});
  return cases;
}

class LayerNormSweep : public ::testing::TestWithParam<Case> {};

TEST_P(LayerNormSweep, EveryVariantMatchesTheFloat64Reference) {
  const Case& lc = GetParam();
  const LayerNormShape sh{lc.rows, lc.cols};
  const std::vector<float> x = row_data(sh, 71), dy = random_vector(sh.numel(), 72);
  const std::vector<float> w = random_vector(sh.cols, 73, 1.0f, 0.5f);
  const std::vector<float> b = random_vector(sh.cols, 74, 0.0f, 0.5f);
  const float* wp = lc.affine != Affine::none ? w.data() : nullptr;
  const float* bp = lc.affine == Affine::both ? b.data() : nullptr;
  const Reference ref = reference_forward(x, sh, wp, bp, kEps);
  Outputs plain;
  {
    ScopedVariant use("plain");
    plain = run(sh, x, dy, wp, bp);
  }
  const ReferenceGrad plain_grad =
      reference_backward(x, dy, sh, wp, plain.mean.data(), plain.invstd.data());
  for (const std::string& variant : variants()) {
    SCOPED_TRACE("variant " + variant);
    ScopedVariant use(variant);
    const Outputs o = run(sh, x, dy, wp, bp);
    EXPECT_TRUE(all_close("y", o.y.data(), ref.y, kTol, nullptr, &ref.y_slack));
    EXPECT_TRUE(all_close("save_mean", o.mean.data(), ref.mean, kTol));
    EXPECT_TRUE(all_close("save_invstd", o.invstd.data(), ref.invstd, kTol));
    const ReferenceGrad grad = reference_backward(x, dy, sh, wp, o.mean.data(), o.invstd.data());
    EXPECT_TRUE(all_close("dx", o.dx.data(), grad.dx, kDxTol, nullptr, &grad.dx_slack));
    EXPECT_TRUE(all_close("dweight", o.dweight.data(), grad.dweight, kTol, &grad.dweight_scale));
    EXPECT_TRUE(all_close("dbias", o.dbias.data(), grad.dbias, kTol, &grad.dbias_scale));
    // Against the plain loops on the same inputs.
    EXPECT_TRUE(
        all_close("y vs plain", o.y.data(), as_double(plain.y), kTol, nullptr, &ref.y_slack));
    EXPECT_TRUE(all_close("dx vs plain", o.dx.data(), as_double(plain.dx), kDxTol, nullptr,
                          &plain_grad.dx_slack));
    EXPECT_TRUE(all_close("dweight vs plain", o.dweight.data(), as_double(plain.dweight), kTol,
                          &plain_grad.dweight_scale));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LayerNormSweep, ::testing::ValuesIn(sweep_cases()), case_name);

// ---- gradient checks ----

class LayerNormGradient : public ::testing::TestWithParam<Case> {};

TEST_P(LayerNormGradient, BackwardMatchesCentralDifferences) {
  const Case& lc = GetParam();
  const LayerNormShape sh{lc.rows, lc.cols};
  const std::vector<float> x = row_data(sh, 81), r = random_vector(sh.numel(), 82);
  std::vector<float> w(sh.cols, 1.0f), b(sh.cols, 0.0f);
  if (lc.affine != Affine::none) w = random_vector(sh.cols, 83, 1.0f, 0.4f);
  if (lc.affine == Affine::both) b = random_vector(sh.cols, 84, 0.2f, 0.5f);
  std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end()), bd(b.begin(), b.end());
  const auto loss = [&] {
    const Reference f = reference_forward(xd, sh, wd.data(), bd.data(), kEps);
    double total = 0.0;
    for (size_t e = 0; e < r.size(); ++e) total += f.y[e] * r[e];
    return total;
  };
  const std::vector<double> fd_x = central_differences(xd, loss),
                            fd_w = central_differences(wd, loss),
                            fd_b = central_differences(bd, loss);
  for (const std::string& variant : variants()) {
    SCOPED_TRACE("variant " + variant);
    ScopedVariant use(variant);
    const Outputs o = run(sh, x, r, lc.affine != Affine::none ? w.data() : nullptr,
                          lc.affine == Affine::both ? b.data() : nullptr);
    EXPECT_TRUE(all_close("dx", o.dx.data(), fd_x, kDxTol));
    EXPECT_TRUE(all_close("dweight", o.dweight.data(), fd_w, kDxTol));
    EXPECT_TRUE(all_close("dbias", o.dbias.data(), fd_b, kDxTol));
  }
}

INSTANTIATE_TEST_SUITE_P(SmallShapes, LayerNormGradient,
                         ::testing::Values(Case{3, 5, Affine::none}, Case{3, 5, Affine::both},
                                           Case{3, 5, Affine::weight_only},
                                           Case{2, 19, Affine::both}, Case{35, 3, Affine::both}),
                         case_name);

// ---- properties ----

TEST(LayerNorm, IsGroupNormWithOneGroupPerRow) {
  const LayerNormShape sh{6, 40};
  const std::vector<float> x = row_data(sh, 91), w = random_vector(40, 92),
                           b = random_vector(40, 93);
  std::vector<float> y(x.size()), y_group(x.size());
  layer_norm_forward(x.data(), sh, w.data(), b.data(), kEps, y.data(), nullptr, nullptr);
  group_norm_forward(x.data(), GroupNormShape{6, 40, 1, 1, Layout::channels_first}, w.data(),
                     b.data(), kEps, y_group.data(), nullptr, nullptr);
  EXPECT_EQ(y, y_group);
}

TEST(LayerNorm, ResultsDoNotDependOnTheThreadCount) {
  const LayerNormShape sh{512, 384};  // above the threading threshold, 32 row chunks
  const std::vector<float> x = row_data(sh, 94), dy = random_vector(sh.numel(), 95);
  const std::vector<float> w = random_vector(sh.cols, 96, 1.0f, 0.3f),
                           b = random_vector(sh.cols, 97);
  set_num_threads(1);
  const Outputs one = run(sh, x, dy, w.data(), b.data());
  set_num_threads(2);
  const Outputs two = run(sh, x, dy, w.data(), b.data());
  set_num_threads(0);
  EXPECT_EQ(one.y, two.y);
  EXPECT_EQ(one.dx, two.dx);
  EXPECT_EQ(one.dweight, two.dweight);
  EXPECT_EQ(one.dbias, two.dbias);
}

TEST(LayerNorm, StreamedOutputsMatchTheReference) {
  // x and y together over 32 MiB: streaming stores, rows of odd length at every alignment.
  const LayerNormShape sh{4099, 1025};
  const std::vector<float> x = row_data(sh, 102), dy = random_vector(sh.numel(), 103);
  const std::vector<float> w = random_vector(sh.cols, 104, 1.0f, 0.3f),
                           b = random_vector(sh.cols, 105);
  const Reference ref = reference_forward(x, sh, w.data(), b.data(), kEps);
  for (const std::string& variant : variants()) {
    SCOPED_TRACE(variant);
    ScopedVariant use(variant);
    const Outputs o = run(sh, x, dy, w.data(), b.data());
    EXPECT_TRUE(all_close("y", o.y.data(), ref.y, kTol, nullptr, &ref.y_slack));
    const ReferenceGrad grad =
        reference_backward(x, dy, sh, w.data(), o.mean.data(), o.invstd.data());
    EXPECT_TRUE(all_close("dx", o.dx.data(), grad.dx, kDxTol, nullptr, &grad.dx_slack));
    EXPECT_TRUE(all_close("dweight", o.dweight.data(), grad.dweight, kTol, &grad.dweight_scale));
    EXPECT_TRUE(all_close("dbias", o.dbias.data(), grad.dbias, kTol, &grad.dbias_scale));
  }
}

// Issue 14: y within a few ulps of float64 at any offset (rows of mean 1e4 and
// 1e6, std ~1), with and without the per-element affine; two rows and more.
TEST(LayerNorm, NormalizeIsWithinEightUlpsOfFloat64AtAnyOffset) {
  for (const float offset : {1e4f, 1e6f})
    for (const LayerNormShape sh : {LayerNormShape{2, 768}, LayerNormShape{64, 300}})
      for (const bool affine : {false, true}) {
        SCOPED_TRACE("rows=" + std::to_string(sh.rows) + " cols=" + std::to_string(sh.cols) +
                     " offset " + std::to_string(offset) + (affine ? " affine" : ""));
        std::vector<float> x = row_data(sh, 91);
        for (float& v : x) v += offset;
        const std::vector<float> w = random_vector(sh.cols, 92, 1.0f, 0.3f);
        const std::vector<float> b = random_vector(sh.cols, 93);
        const float* wp = affine ? w.data() : nullptr;
        const float* bp = affine ? b.data() : nullptr;
        const Reference ref = reference_forward(x, sh, wp, bp, kEps);
        std::vector<double> terms(x.size());  // |xhat * w| and |b|
        for (int64_t i = 0; i < sh.rows; ++i)
          for (int64_t k = 0; k < sh.cols; ++k) {
            const int64_t e = i * sh.cols + k;
            terms[e] = std::max(std::fabs((x[e] - ref.mean[i]) * ref.invstd[i] *
                                          (affine ? w[k] : 1.0)),
                                affine ? std::fabs(static_cast<double>(b[k])) : 0.0);
          }
        for (const std::string& variant : variants()) {
          SCOPED_TRACE(variant);
          ScopedVariant use(variant);
          std::vector<float> y(x.size());
          layer_norm_forward(x.data(), sh, wp, bp, kEps, y.data(), nullptr, nullptr);
          EXPECT_TRUE(test_ulps::within_ulps("y", y.data(), ref.y, terms, 8.0));
        }
      }
}

TEST(LayerNorm, NullOutputsAndInPlace) {
  const LayerNormShape sh{9, 21};
  const std::vector<float> x = row_data(sh, 98), dy = random_vector(sh.numel(), 99);
  const std::vector<float> w = random_vector(sh.cols, 100, 1.0f, 0.3f),
                           b = random_vector(sh.cols, 101);
  const Outputs full = run(sh, x, dy, w.data(), b.data());
  std::vector<float> inplace = x;
  layer_norm_forward(inplace.data(), sh, w.data(), b.data(), kEps, inplace.data(), nullptr,
                     nullptr);
  EXPECT_EQ(inplace, full.y);
  std::vector<float> dx(x.size()), dw(sh.cols), db(sh.cols);
  layer_norm_backward(x.data(), dy.data(), sh, w.data(), full.mean.data(), full.invstd.data(),
                      dx.data(), nullptr, nullptr);
  EXPECT_EQ(dx, full.dx);
  layer_norm_backward(x.data(), dy.data(), sh, w.data(), full.mean.data(), full.invstd.data(),
                      nullptr, dw.data(), db.data());
  EXPECT_EQ(dw, full.dweight);
  EXPECT_EQ(db, full.dbias);
}

TEST(LayerNormValidation, ErrorsNameTheArgumentAndTheValue) {
  expect_error([] { validate(LayerNormShape{-3, 4}); }, "rows must be non-negative, got -3");
  expect_error([] { validate(LayerNormShape{3, -4}); }, "cols must be non-negative, got -4");
  expect_error(
      [] {
        validate(LayerNormShape{int64_t{1} << 40, int64_t{1} << 40});
      },
      "rows*cols overflows");
  EXPECT_NO_THROW(validate(LayerNormShape{0, 0}));
  std::vector<float> x(12, 1.0f), y(12), stat(3, 1.0f);
  const LayerNormShape sh{3, 4};
  expect_error(
      [&] { layer_norm_forward(nullptr, sh, nullptr, nullptr, kEps, y.data(), nullptr, nullptr); },
      "x must not be null");
  expect_error(
      [&] { layer_norm_forward(x.data(), sh, nullptr, nullptr, -1.0, y.data(), nullptr, nullptr); },
      "eps must be positive and finite");
  expect_error(
      [&] {
        layer_norm_backward(x.data(), x.data(), sh, nullptr, stat.data(), nullptr, y.data(),
                            nullptr, nullptr);
      },
      "save_invstd must not be null");
}

// ---- PyTorch's goldens ----

class LayerNormGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(LayerNormGolden, EveryVariantMatchesPyTorch) {
  const Golden g(std::string(BNLAB_GOLDEN_DIR) + "/norms/" + GetParam() + ".txt");
  const std::vector<double>& dims = g["dims"];
  const size_t normalized = static_cast<size_t>(g["normalized_ndim"][0]);
  LayerNormShape sh{1, 1};
  for (size_t d = 0; d < dims.size(); ++d)
    (d + normalized < dims.size() ? sh.rows : sh.cols) *= static_cast<int64_t>(dims[d]);
  const bool affine = g["affine"][0] != 0.0;
  const std::vector<float> x = to_float(g["x"]), dy = to_float(g["dy"]);
  const std::vector<float> w = affine ? to_float(g["weight"]) : std::vector<float>{};
  const std::vector<float> b = affine ? to_float(g["bias"]) : std::vector<float>{};
  const double eps = g["eps"][0];
  const Reference ref =
      reference_forward(x, sh, affine ? w.data() : nullptr, affine ? b.data() : nullptr, eps);
  for (const std::string& variant : variants()) {
    SCOPED_TRACE(variant);
    ScopedVariant use(variant);
    std::vector<float> y(x.size()), mean(sh.rows), invstd(sh.rows);
    layer_norm_forward(x.data(), sh, affine ? w.data() : nullptr, affine ? b.data() : nullptr, eps,
                       y.data(), mean.data(), invstd.data());
    EXPECT_TRUE(all_close("y", y.data(), g["y"], kTol, nullptr, &ref.y_slack));
    EXPECT_TRUE(all_close("save_mean", mean.data(), g["save_mean"], kTol));
    EXPECT_TRUE(all_close("save_invstd", invstd.data(), g["save_invstd"], kTol));
    std::vector<float> dx(x.size()), dw(sh.cols), db(sh.cols);
    layer_norm_backward(x.data(), dy.data(), sh, affine ? w.data() : nullptr, mean.data(),
                        invstd.data(), dx.data(), dw.data(), db.data());
    const ReferenceGrad grad =
        reference_backward(x, dy, sh, affine ? w.data() : nullptr, mean.data(), invstd.data());
    EXPECT_TRUE(all_close("dx", dx.data(), g["dx"], kDxTol, nullptr, &grad.dx_slack));
    if (affine) {
      EXPECT_TRUE(all_close("dweight", dw.data(), g["dweight"], kDxTol));
      EXPECT_TRUE(all_close("dbias", db.data(), g["dbias"], kDxTol));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(PyTorch, LayerNormGolden,
                         ::testing::Values("layer_norm_2d_affine", "layer_norm_3d_last_noaffine",
                                           "layer_norm_4d_last2_affine"));

}  // namespace
}  // namespace bnlab::test
