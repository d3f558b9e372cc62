// LayerNorm's kernels against a float64 reference written here, in every
// kernel variant and against the plain loops; central differences for the
// backward; threads, null outputs, the argument checks and PyTorch's goldens
// (tests/golden/make_norm_goldens.py).
//
// Tolerances as in group_norm_test.cpp: |a - r| <= tol * (1 + |r|) + slack,
// tol = 1e-5 for y and the statistics, 2e-5 for dx; dweight and dbias against
// 1e-5 * (1 + sum of the |terms|); the slack is the rounding of the float
// mean times invstd (y, dx) and of dx's cancelling terms. Gradient checks:
// central differences in double, h = 1e-6, |kernel - fd| <= 2e-5 * (1 + |fd|).
#include "bnlab/layer_norm.hpp"

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
#include "bnlab/threading.hpp"

#ifndef BNLAB_GOLDEN_DIR
#error "BNLAB_GOLDEN_DIR must name tests/golden (set by tests/kernels/CMakeLists.txt)"
#endif

namespace bnlab::test {
namespace {

constexpr double kEps = 1e-5;
constexpr double kTol = 1e-5;
constexpr double kDxTol = 2e-5;
constexpr double kMeanRounding = 1.2e-7;  // half an ulp of a float, with a margin of 2
constexpr double kTermRounding = 1e-6;

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

std::vector<float> random_vector(int64_t count, uint32_t seed, float mean = 0.0f,
                                 float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& e : v) e = normal(rng);
  return v;
}

// Rows with different means and spreads, so a row mix-up shows.
std::vector<float> row_data(const LayerNormShape& sh, uint32_t seed) {
  std::vector<float> x = random_vector(sh.numel(), seed);
  for (int64_t i = 0; i < sh.rows; ++i)
    for (int64_t k = 0; k < sh.cols; ++k)
      x[i * sh.cols + k] = static_cast<float>(0.3 * (i % 5) - 0.5) +
                           (0.5f + 0.2f * static_cast<float>(i % 3)) * x[i * sh.cols + k];
  return x;
}

::testing::AssertionResult all_close(const std::string& what, const float* got,
                                     const std::vector<double>& want, double tol,
                                     const std::vector<double>* scale = nullptr,
                                     const std::vector<double>* slack = nullptr) {
  int64_t bad = 0;
  double worst = 0.0;
  std::string first;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double allowed = tol * ((scale ? 1.0 + (*scale)[i] : 1.0) + std::fabs(want[i])) +
                           (slack ? (*slack)[i] : 0.0);
    if (!(err <= allowed)) {
      if (bad < 3)
        first += " [" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " +
                 std::to_string(want[i]) + ";";
      ++bad;
    }
    if (err > worst || std::isnan(err)) worst = err;
  }
  if (bad == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << what << ": " << bad << " of " << want.size() << " off (tolerance " << tol << "), worst "
         << worst << ";" << first;
}

std::vector<std::string> variants() {
  std::vector<std::string> names;
  std::stringstream all(group_norm_kernel_variants());
  for (std::string name; std::getline(all, name, ',');) names.push_back(name);
  return names;
}

class ScopedVariant {
 public:
  explicit ScopedVariant(const std::string& name) { set_group_norm_kernel_variant(name); }
  ~ScopedVariant() { set_group_norm_kernel_variant("auto"); }
  ScopedVariant(const ScopedVariant&) = delete;
  ScopedVariant& operator=(const ScopedVariant&) = delete;
};

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

std::vector<double> as_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

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
  const auto central = [&](std::vector<double>& v) {
    constexpr double kStep = 1e-6;
    std::vector<double> grad(v.size());
    for (size_t e = 0; e < v.size(); ++e) {
      const double keep = v[e];
      v[e] = keep + kStep;
      const double up = loss();
      v[e] = keep - kStep;
      grad[e] = (up - loss()) / (2 * kStep);
      v[e] = keep;
    }
    return grad;
  };
  const std::vector<double> fd_x = central(xd), fd_w = central(wd), fd_b = central(bd);
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

void expect_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "expected bnlab::Error containing '" << part << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
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

std::map<std::string, std::vector<double>> read_golden(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open golden file " + path);
  std::map<std::string, std::vector<double>> golden;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string key;
    size_t count = 0;
    if (!(fields >> key >> count)) throw std::runtime_error("bad line in " + path + ": " + line);
    std::vector<double>& values = golden[key];
    values.resize(count);
    for (double& v : values)
      if (!(fields >> v)) throw std::runtime_error("short entry '" + key + "' in " + path);
  }
  return golden;
}

class LayerNormGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(LayerNormGolden, EveryVariantMatchesPyTorch) {
  auto g = read_golden(std::string(BNLAB_GOLDEN_DIR) + "/norms/" + GetParam() + ".txt");
  const auto at = [&](const std::string& key) -> const std::vector<double>& {
    if (g.count(key) == 0) throw std::runtime_error("golden file lacks '" + key + "'");
    return g[key];
  };
  const std::vector<double>& dims = at("dims");
  const size_t normalized = static_cast<size_t>(at("normalized_ndim")[0]);
  LayerNormShape sh{1, 1};
  for (size_t d = 0; d < dims.size(); ++d)
    (d + normalized < dims.size() ? sh.rows : sh.cols) *= static_cast<int64_t>(dims[d]);
  const bool affine = at("affine")[0] != 0.0;
  const auto floats = [](const std::vector<double>& v) {
    return std::vector<float>(v.begin(), v.end());
  };
  const std::vector<float> x = floats(at("x")), dy = floats(at("dy"));
  const std::vector<float> w = affine ? floats(at("weight")) : std::vector<float>{};
  const std::vector<float> b = affine ? floats(at("bias")) : std::vector<float>{};
  const double eps = at("eps")[0];
  const Reference ref =
      reference_forward(x, sh, affine ? w.data() : nullptr, affine ? b.data() : nullptr, eps);
  for (const std::string& variant : variants()) {
    SCOPED_TRACE(variant);
    ScopedVariant use(variant);
    std::vector<float> y(x.size()), mean(sh.rows), invstd(sh.rows);
    layer_norm_forward(x.data(), sh, affine ? w.data() : nullptr, affine ? b.data() : nullptr, eps,
                       y.data(), mean.data(), invstd.data());
    EXPECT_TRUE(all_close("y", y.data(), at("y"), kTol, nullptr, &ref.y_slack));
    EXPECT_TRUE(all_close("save_mean", mean.data(), at("save_mean"), kTol));
    EXPECT_TRUE(all_close("save_invstd", invstd.data(), at("save_invstd"), kTol));
    std::vector<float> dx(x.size()), dw(sh.cols), db(sh.cols);
    layer_norm_backward(x.data(), dy.data(), sh, affine ? w.data() : nullptr, mean.data(),
                        invstd.data(), dx.data(), dw.data(), db.data());
    const ReferenceGrad grad =
        reference_backward(x, dy, sh, affine ? w.data() : nullptr, mean.data(), invstd.data());
    EXPECT_TRUE(all_close("dx", dx.data(), at("dx"), kDxTol, nullptr, &grad.dx_slack));
    if (affine) {
      EXPECT_TRUE(all_close("dweight", dw.data(), at("dweight"), kDxTol));
      EXPECT_TRUE(all_close("dbias", db.data(), at("dbias"), kDxTol));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(PyTorch, LayerNormGolden,
                         ::testing::Values("layer_norm_2d_affine", "layer_norm_3d_last_noaffine",
                                           "layer_norm_4d_last2_affine"));

}  // namespace
}  // namespace bnlab::test
