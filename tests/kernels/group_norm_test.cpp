// GroupNorm's kernels against a float64 reference written here, in every
// layout and kernel variant; every variant against the plain loops; central
// differences for the backward; threads, large offsets, in-place, null
// outputs, InstanceNorm (groups = c), the argument checks and PyTorch's
// goldens (tests/golden/make_norm_goldens.py).
//
// Tolerances, slack and gradient steps: norm_test_support.hpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bnlab/cpu_info.hpp"
#include "bnlab/error.hpp"
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

int64_t index_of(const GroupNormShape& sh, int64_t i, int64_t j, int64_t k) {
  switch (sh.layout) {
    case Layout::channels_first:
      return (i * sh.c + j) * sh.s + k;
    case Layout::channels_last:
      return (i * sh.s + k) * sh.c + j;
    case Layout::blocked16:
      return ((i * (sh.c / 16) + j / 16) * sh.s + k) * 16 + j % 16;
  }
  return -1;
}

struct Reference {
  std::vector<double> y, mean, invstd;  // mean, invstd: n*groups
  std::vector<double> y_slack;          // kMeanRounding * |mean| * invstd * |w|
};

// Per (i, g) over the M = (c/G)*s values: mean = sum(x)/M,
// var = sum((x - mean)^2)/M (two passes), invstd = 1/sqrt(var + eps),
// y = (x - mean)*invstd*w[j] + b[j].
template <class T>
Reference reference_forward(const std::vector<T>& x, const GroupNormShape& sh, const T* w,
                            const T* b, double eps) {
  Reference r;
  r.y.assign(x.size(), 0.0);
  r.y_slack.assign(x.size(), 0.0);
  r.mean.assign(sh.n * sh.groups, 0.0);
  r.invstd.assign(sh.n * sh.groups, 0.0);
  const int64_t cg = sh.c / sh.groups;
  for (int64_t i = 0; i < sh.n; ++i)
    for (int64_t g = 0; g < sh.groups; ++g) {
      double sum = 0.0, sq = 0.0;
      for (int64_t j = g * cg; j < (g + 1) * cg; ++j)
        for (int64_t k = 0; k < sh.s; ++k) sum += x[index_of(sh, i, j, k)];
      const double mean = sum / static_cast<double>(cg * sh.s);
      for (int64_t j = g * cg; j < (g + 1) * cg; ++j)
        for (int64_t k = 0; k < sh.s; ++k) {
          const double d = x[index_of(sh, i, j, k)] - mean;
          sq += d * d;
        }
      const double invstd = 1.0 / std::sqrt(sq / static_cast<double>(cg * sh.s) + eps);
      r.mean[i * sh.groups + g] = mean;
      r.invstd[i * sh.groups + g] = invstd;
      for (int64_t j = g * cg; j < (g + 1) * cg; ++j)
        for (int64_t k = 0; k < sh.s; ++k) {
          const int64_t e = index_of(sh, i, j, k);
          const double wj = w ? static_cast<double>(w[j]) : 1.0;
          r.y[e] = (x[e] - mean) * invstd * wj + (b ? static_cast<double>(b[j]) : 0.0);
          r.y_slack[e] = kMeanRounding * std::fabs(mean) * invstd * std::fabs(wj);
        }
    }
  return r;
}

struct ReferenceGrad {
  std::vector<double> dx, dweight, dbias, dweight_scale, dbias_scale;
  std::vector<double> dx_slack;  // the rounding of dx's terms and of the float mean
};

// From the saved statistics, xhat = (x - mean)*invstd, g = w*dy, per (i, group):
//   dx = invstd*(g - sum(g)/M - xhat*sum(g*xhat)/M);
//   dbias[j] = sum dy, dweight[j] = sum dy*xhat over samples and positions.
ReferenceGrad reference_backward(const std::vector<float>& x, const std::vector<float>& dy,
                                 const GroupNormShape& sh, const float* w, const float* mean,
                                 const float* invstd) {
  ReferenceGrad r;
  r.dx.assign(x.size(), 0.0);
  r.dx_slack.assign(x.size(), 0.0);
  for (auto* v : {&r.dweight, &r.dbias, &r.dweight_scale, &r.dbias_scale}) v->assign(sh.c, 0.0);
  const int64_t cg = sh.c / sh.groups;
  const double m = static_cast<double>(cg * sh.s);
  for (int64_t i = 0; i < sh.n; ++i)
    for (int64_t g = 0; g < sh.groups; ++g) {
      const double mu = mean[i * sh.groups + g], inv = invstd[i * sh.groups + g];
      double sum_g = 0.0, sum_gx = 0.0;
      for (int64_t j = g * cg; j < (g + 1) * cg; ++j)
        for (int64_t k = 0; k < sh.s; ++k) {
          const int64_t e = index_of(sh, i, j, k);
          const double xhat = (x[e] - mu) * inv, gr = dy[e] * (w ? w[j] : 1.0);
          sum_g += gr;
          sum_gx += gr * xhat;
          r.dbias[j] += dy[e];
          r.dweight[j] += dy[e] * xhat;
          r.dbias_scale[j] += std::fabs(dy[e]);
          r.dweight_scale[j] += std::fabs(dy[e] * xhat);
        }
      for (int64_t j = g * cg; j < (g + 1) * cg; ++j)
        for (int64_t k = 0; k < sh.s; ++k) {
          const int64_t e = index_of(sh, i, j, k);
          const double xhat = (x[e] - mu) * inv, gr = dy[e] * (w ? w[j] : 1.0);
          r.dx[e] = inv * (gr - sum_g / m - xhat * sum_gx / m);
          r.dx_slack[e] =
              kTermRounding * inv *
                  (std::fabs(gr) + std::fabs(sum_g) / m + std::fabs(xhat * sum_gx) / m) +
              kMeanRounding * std::fabs(mu) * inv * inv *
                  (std::fabs(sum_gx) + std::fabs(sum_g * xhat)) / m;
        }
    }
  return r;
}

// ---- helpers ----

// x with a different mean and spread per channel, so a channel or group mix-up shows.
std::vector<float> channel_data(const GroupNormShape& sh, uint32_t seed, float offset = 0.0f) {
  std::vector<float> x(static_cast<size_t>(sh.numel()));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t i = 0; i < sh.n; ++i)
    for (int64_t j = 0; j < sh.c; ++j)
      for (int64_t k = 0; k < sh.s; ++k)
        x[index_of(sh, i, j, k)] = offset + static_cast<float>(0.5 * (j % 7) - 1.0 + 0.3 * i) +
                                   (0.5f + 0.1f * (j % 5)) * normal(rng);
  return x;
}

std::string layout_name(Layout l) {
  return l == Layout::channels_first ? "first" : l == Layout::channels_last ? "last" : "blocked16";
}

std::vector<Layout> layouts_for(int64_t c) {
  if (c % 16 == 0) return {Layout::channels_first, Layout::channels_last, Layout::blocked16};
  return {Layout::channels_first, Layout::channels_last};
}

// One kernel run's outputs.
struct Outputs {
  std::vector<float> y, mean, invstd, dx, dweight, dbias;
};

Outputs run(const GroupNormShape& sh, const std::vector<float>& x, const std::vector<float>& dy,
            const float* w, const float* b) {
  Outputs o;
  o.y.assign(x.size(), 0.0f);
  o.mean.assign(sh.n * sh.groups, 0.0f);
  o.invstd.assign(sh.n * sh.groups, 0.0f);
  group_norm_forward(x.data(), sh, w, b, kEps, o.y.data(), o.mean.data(), o.invstd.data());
  o.dx.assign(x.size(), 0.0f);
  o.dweight.assign(sh.c, 0.0f);
  o.dbias.assign(sh.c, 0.0f);
  group_norm_backward(x.data(), dy.data(), sh, w, o.mean.data(), o.invstd.data(), o.dx.data(),
                      o.dweight.data(), o.dbias.data());
  return o;
}

// ---- every variant against the float64 reference ----

struct SweepCase {
  int64_t n, c, s, groups;
  Layout layout;
  bool affine;
};

std::vector<SweepCase> sweep_cases() {
  // (n, c, s, groups): each plan path and its edges. s == 1 is LayerNorm's
  // path; s = 4100 and 5000 cross the 4096-value blocks; c = 272 makes two
  // channels-last tiles; c = 48, G = 2 puts a group across blocked16 units;
  // groups = c is InstanceNorm; c = 72 on 33 rows walks column vectors side by
  // side, then a tail, with an odd row left over.
  const int64_t shapes[][4] = {{2, 8, 9, 4},   {3, 12, 1, 3},    {1, 6, 7, 1},  {2, 4, 4100, 2},
                               {2, 32, 5, 4},  {2, 32, 3, 32},   {2, 48, 6, 2}, {3, 16, 70, 1},
                               {2, 272, 3, 8}, {1, 16, 600, 16}, {2, 5, 1, 5},  {2, 16, 5000, 2},
                               {2, 72, 33, 6}};
  std::vector<SweepCase> cases;
  for (const auto& z : shapes)
    for (Layout layout : layouts_for(z[1]))
      for (bool affine : {false, true}) cases.push_back({z[0], z[1], z[2], z[3], layout, affine});
  return cases;
}

std::string sweep_name(const ::testing::TestParamInfo<SweepCase>& info) {
  const SweepCase& c = info.param;
  return "n" + std::to_string(c.n) + "c" + std::to_string(c.c) + "s" + std::to_string(c.s) + "g" +
         std::to_string(c.groups) + "_" + layout_name(c.layout) +
         (c.affine ? "_affine" : "_noaffine");
}

class GroupNormSweep : public ::testing::TestWithParam<SweepCase> {};

TEST_P(GroupNormSweep, EveryVariantMatchesTheFloat64Reference) {
  const SweepCase& sc = GetParam();
  const GroupNormShape sh{sc.n, sc.c, sc.s, sc.groups, sc.layout};
  const std::vector<float> x = channel_data(sh, 11), dy = random_vector(sh.numel(), 12);
  const std::vector<float> w = random_vector(sh.c, 13, 1.0f, 0.5f);
  const std::vector<float> b = random_vector(sh.c, 14, 0.0f, 0.5f);
  const float* wp = sc.affine ? w.data() : nullptr;
  const float* bp = sc.affine ? b.data() : nullptr;
  const Reference ref = reference_forward(x, sh, wp, bp, kEps);
  Outputs plain;
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
    if (variant == "plain") plain = o;
  }
  // Every variant against the plain loops, on the same numbers (the plain run is last).
  const ReferenceGrad plain_grad =
      reference_backward(x, dy, sh, wp, plain.mean.data(), plain.invstd.data());
  for (const std::string& variant : variants()) {
    SCOPED_TRACE("variant " + variant + " against plain");
    ScopedVariant use(variant);
    const Outputs o = run(sh, x, dy, wp, bp);
    EXPECT_TRUE(all_close("y", o.y.data(), as_double(plain.y), kTol, nullptr, &ref.y_slack));
    EXPECT_TRUE(
        all_close("dx", o.dx.data(), as_double(plain.dx), kDxTol, nullptr, &plain_grad.dx_slack));
    EXPECT_TRUE(all_close("dweight", o.dweight.data(), as_double(plain.dweight), kTol,
                          &plain_grad.dweight_scale));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GroupNormSweep, ::testing::ValuesIn(sweep_cases()), sweep_name);

// ---- gradient checks ----

class GroupNormGradient : public ::testing::TestWithParam<SweepCase> {};

TEST_P(GroupNormGradient, BackwardMatchesCentralDifferences) {
  const SweepCase& sc = GetParam();
  const GroupNormShape sh{sc.n, sc.c, sc.s, sc.groups, sc.layout};
  const std::vector<float> x = channel_data(sh, 21), r = random_vector(sh.numel(), 22);
  std::vector<float> w(sh.c, 1.0f), b(sh.c, 0.0f);
  if (sc.affine) w = random_vector(sh.c, 23, 1.0f, 0.4f), b = random_vector(sh.c, 24, 0.2f, 0.5f);
  // L = sum(y * r), in double; without affine the kernel's dweight/dbias are
  // the gradients at w = 1, b = 0, which is what the differences give.
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
    const Outputs o = run(sh, x, r, sc.affine ? w.data() : nullptr, sc.affine ? b.data() : nullptr);
    EXPECT_TRUE(all_close("dx", o.dx.data(), fd_x, kDxTol));
    EXPECT_TRUE(all_close("dweight", o.dweight.data(), fd_w, kDxTol));
    EXPECT_TRUE(all_close("dbias", o.dbias.data(), fd_b, kDxTol));
  }
}

std::vector<SweepCase> grad_cases() {
  const int64_t shapes[][4] = {
      {2, 6, 5, 3}, {3, 4, 1, 2}, {2, 16, 3, 4}, {2, 32, 2, 2}, {2, 3, 4, 3}};
  std::vector<SweepCase> cases;
  for (const auto& z : shapes)
    for (Layout layout : layouts_for(z[1]))
      for (bool affine : {false, true}) cases.push_back({z[0], z[1], z[2], z[3], layout, affine});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(SmallShapes, GroupNormGradient, ::testing::ValuesIn(grad_cases()),
                         sweep_name);

// ---- properties ----

TEST(GroupNorm, InstanceNormIsGroupNormWithOneChannelPerGroup) {
  // Per (sample, channel) statistics over the s positions, written out directly.
  const int64_t n = 3, c = 5, s = 11;
  const GroupNormShape sh{n, c, s, c, Layout::channels_first};
  const std::vector<float> x = channel_data(sh, 31);
  std::vector<float> y(x.size()), mean(n * c), invstd(n * c);
  group_norm_forward(x.data(), sh, nullptr, nullptr, kEps, y.data(), mean.data(), invstd.data());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j) {
      double sum = 0.0, sq = 0.0;
      for (int64_t k = 0; k < s; ++k) sum += x[(i * c + j) * s + k];
      const double mu = sum / s;
      for (int64_t k = 0; k < s; ++k) sq += std::pow(x[(i * c + j) * s + k] - mu, 2);
      const double inv = 1.0 / std::sqrt(sq / s + kEps);
      EXPECT_NEAR(mean[i * c + j], mu, kTol * (1 + std::fabs(mu)));
      EXPECT_NEAR(invstd[i * c + j], inv, kTol * (1 + inv));
      for (int64_t k = 0; k < s; ++k) {
        const double want = (x[(i * c + j) * s + k] - mu) * inv;
        EXPECT_NEAR(y[(i * c + j) * s + k], want, kTol * (1 + std::fabs(want)));
      }
    }
}

TEST(GroupNorm, ResultsDoNotDependOnTheThreadCount) {
  for (Layout layout : layouts_for(32)) {
    SCOPED_TRACE(layout_name(layout));
    const GroupNormShape sh{8, 32, 900, 8, layout};  // above the threading threshold
    const std::vector<float> x = channel_data(sh, 41), dy = random_vector(sh.numel(), 42);
    const std::vector<float> w = random_vector(sh.c, 43, 1.0f, 0.3f), b = random_vector(sh.c, 44);
    set_num_threads(1);
    const Outputs one = run(sh, x, dy, w.data(), b.data());
    set_num_threads(2);
    const Outputs two = run(sh, x, dy, w.data(), b.data());
    set_num_threads(0);
    EXPECT_EQ(one.y, two.y);
    EXPECT_EQ(one.mean, two.mean);
    EXPECT_EQ(one.invstd, two.invstd);
    EXPECT_EQ(one.dx, two.dx);
    EXPECT_EQ(one.dweight, two.dweight);
    EXPECT_EQ(one.dbias, two.dbias);
  }
  // The rows path (s below 32: LayerNorm's s == 1, a 3x3 map), whose backward
  // splits rows into chunks.
  for (const GroupNormShape& rows : {GroupNormShape{300, 200, 1, 2, Layout::channels_first},
                                     GroupNormShape{128, 64, 9, 8, Layout::channels_first}}) {
    SCOPED_TRACE("s=" + std::to_string(rows.s));
    const std::vector<float> x = channel_data(rows, 45), dy = random_vector(rows.numel(), 46);
    const std::vector<float> w = random_vector(rows.c, 47, 1.0f, 0.3f);
    set_num_threads(1);
    const Outputs one = run(rows, x, dy, w.data(), nullptr);
    set_num_threads(2);
    const Outputs two = run(rows, x, dy, w.data(), nullptr);
    set_num_threads(0);
    EXPECT_EQ(one.y, two.y);
    EXPECT_EQ(one.dx, two.dx);
    EXPECT_EQ(one.dweight, two.dweight);
    EXPECT_EQ(one.dbias, two.dbias);
  }
}

TEST(GroupNorm, ThreadsSharingASampleGiveTheSameBits) {
  // A 512 KiB L2: each 750 KiB channels-last or blocked16 sample is shared by
  // a team of 2 threads in the forward (1 team on 2 or 3 threads, 2 teams on
  // 4, over 5 samples), and by all the threads in the backward, which reads
  // x and dy twice; 320 channels: two tiles of a row. Then with a 1 MiB LLC,
  // so that y and dx are streamed too.
  const GroupNormShape base{5, 320, 600, 20, Layout::channels_last};
  for (Layout layout : {Layout::channels_last, Layout::blocked16})
    for (int64_t llc : {int64_t{1} << 30, int64_t{1} << 20}) {
      SCOPED_TRACE(std::string(layout_name(layout)) + " llc=" + std::to_string(llc));
      GroupNormShape sh = base;
      sh.layout = layout;
      const std::vector<float> x = channel_data(sh, 51), dy = random_vector(sh.numel(), 52);
      const std::vector<float> w = random_vector(sh.c, 53, 1.0f, 0.3f), b = random_vector(sh.c, 54);
      set_cache_sizes({0, int64_t{512} << 10, llc});
      set_num_threads(1);
      const Outputs one = run(sh, x, dy, w.data(), b.data());
      const Reference ref = reference_forward(x, sh, w.data(), b.data(), kEps);
      EXPECT_TRUE(all_close("y", one.y.data(), ref.y, kTol, nullptr, &ref.y_slack));
      const ReferenceGrad grad =
          reference_backward(x, dy, sh, w.data(), one.mean.data(), one.invstd.data());
      EXPECT_TRUE(all_close("dx", one.dx.data(), grad.dx, kDxTol, nullptr, &grad.dx_slack));
      EXPECT_TRUE(
          all_close("dweight", one.dweight.data(), grad.dweight, kTol, &grad.dweight_scale));
      for (int threads : {2, 3, 4}) {
        SCOPED_TRACE("threads=" + std::to_string(threads));
        set_num_threads(threads);
        const Outputs many = run(sh, x, dy, w.data(), b.data());
        EXPECT_EQ(one.y, many.y);
        EXPECT_EQ(one.mean, many.mean);
        EXPECT_EQ(one.invstd, many.invstd);
        EXPECT_EQ(one.dx, many.dx);
        EXPECT_EQ(one.dweight, many.dweight);
        EXPECT_EQ(one.dbias, many.dbias);
      }
      set_num_threads(0);
      set_cache_sizes({});
    }
}

TEST(GroupNorm, StreamedOutputsMatchTheReference) {
  // x and y together over 32 MiB: y and dx are written with streaming stores;
  // s odd, so channels-first spans start at every alignment.
  for (Layout layout : layouts_for(64)) {
    SCOPED_TRACE(layout_name(layout));
    const GroupNormShape sh{2, 64, 32771, 8, layout};
    const std::vector<float> x = channel_data(sh, 47), dy = random_vector(sh.numel(), 48);
    const std::vector<float> w = random_vector(sh.c, 49, 1.0f, 0.3f), b = random_vector(sh.c, 50);
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
    }
  }
}

TEST(GroupNorm, GroupWithLargeMeanKeepsItsVariance) {
  // mean 1e4, std 1: E[x^2] - E[x]^2 in float would lose every digit of the variance.
  for (Layout layout : layouts_for(16)) {
    SCOPED_TRACE(layout_name(layout));
    const GroupNormShape sh{2, 16, 300, 4, layout};
    const std::vector<float> x = channel_data(sh, 51, 1e4f);
    const Reference ref = reference_forward(x, sh, static_cast<const float*>(nullptr),
                                            static_cast<const float*>(nullptr), kEps);
    for (const std::string& variant : variants()) {
      SCOPED_TRACE(variant);
      ScopedVariant use(variant);
      std::vector<float> y(x.size()), mean(sh.n * sh.groups), invstd(sh.n * sh.groups);
      group_norm_forward(x.data(), sh, nullptr, nullptr, kEps, y.data(), mean.data(),
                         invstd.data());
      EXPECT_TRUE(all_close("save_invstd", invstd.data(), ref.invstd, kTol));
      // y inherits mean's float rounding (ulp(1e4) = 1e-3) times invstd ~ 1.
      EXPECT_TRUE(all_close("y", y.data(), ref.y, 1e-3));
    }
  }
}

// Issue 14: y within a few ulps of float64 at any offset (mean 1e4 and 1e6, std
// ~1), in every layout and walk (per channel, one loop per group with and
// without the per-element affine, channels-last and blocked16 tiles); a batch
// of two and a larger one. 8 ulps: the variance's float sums cost up to ~3.
TEST(GroupNorm, NormalizeIsWithinEightUlpsOfFloat64AtAnyOffset) {
  const GroupNormShape shapes[] = {{2, 32, 1, 8, Layout::channels_first},
                                   {2, 32, 9, 4, Layout::channels_first},
                                   {2, 16, 49, 4, Layout::channels_first},
                                   {2, 16, 49, 4, Layout::channels_last},
                                   {2, 16, 49, 4, Layout::blocked16},
                                   {8, 32, 259, 8, Layout::channels_first},
                                   {8, 32, 259, 8, Layout::channels_last},
                                   {8, 32, 259, 8, Layout::blocked16}};
  for (const float offset : {1e4f, 1e6f})
    for (const GroupNormShape& sh : shapes)
      for (const bool affine : {false, true}) {
        SCOPED_TRACE("n=" + std::to_string(sh.n) + " c=" + std::to_string(sh.c) +
                     " s=" + std::to_string(sh.s) + " " + layout_name(sh.layout) + " offset " +
                     std::to_string(offset) + (affine ? " affine" : ""));
        const std::vector<float> x = channel_data(sh, 81, offset);
        const std::vector<float> w = random_vector(sh.c, 82, 1.0f, 0.3f);
        const std::vector<float> b = random_vector(sh.c, 83);
        const float* wp = affine ? w.data() : nullptr;
        const float* bp = affine ? b.data() : nullptr;
        const Reference ref = reference_forward(x, sh, wp, bp, kEps);
        // The terms y adds: |xhat * w| and |b|.
        std::vector<double> terms(x.size());
        const int64_t cg = sh.c / sh.groups;
        for (int64_t i = 0; i < sh.n; ++i)
          for (int64_t j = 0; j < sh.c; ++j)
            for (int64_t k = 0; k < sh.s; ++k) {
              const int64_t e = index_of(sh, i, j, k), ig = i * sh.groups + j / cg;
              terms[e] = std::max(std::fabs((x[e] - ref.mean[ig]) * ref.invstd[ig] *
                                            (affine ? w[j] : 1.0)),
                                  affine ? std::fabs(static_cast<double>(b[j])) : 0.0);
            }
        for (const std::string& variant : variants()) {
          SCOPED_TRACE(variant);
          ScopedVariant use(variant);
          std::vector<float> y(x.size());
          group_norm_forward(x.data(), sh, wp, bp, kEps, y.data(), nullptr, nullptr);
          EXPECT_TRUE(test_ulps::within_ulps("y", y.data(), ref.y, terms, 8.0));
        }
      }
}

TEST(GroupNorm, InPlaceAndNullOutputs) {
  for (Layout layout : layouts_for(16)) {
    SCOPED_TRACE(layout_name(layout));
    const GroupNormShape sh{2, 16, 7, 4, layout};
    const std::vector<float> x = channel_data(sh, 61), dy = random_vector(sh.numel(), 62);
    const std::vector<float> w = random_vector(sh.c, 63, 1.0f, 0.3f), b = random_vector(sh.c, 64);
    const Outputs full = run(sh, x, dy, w.data(), b.data());
    std::vector<float> inplace = x;
    group_norm_forward(inplace.data(), sh, w.data(), b.data(), kEps, inplace.data(), nullptr,
                       nullptr);
    EXPECT_EQ(inplace, full.y);
    std::vector<float> dx(x.size()), dw(sh.c), db(sh.c);
    group_norm_backward(x.data(), dy.data(), sh, w.data(), full.mean.data(), full.invstd.data(),
                        dx.data(), nullptr, nullptr);
    EXPECT_EQ(dx, full.dx);
    group_norm_backward(x.data(), dy.data(), sh, w.data(), full.mean.data(), full.invstd.data(),
                        nullptr, dw.data(), nullptr);
    EXPECT_EQ(dw, full.dweight);
    group_norm_backward(x.data(), dy.data(), sh, w.data(), full.mean.data(), full.invstd.data(),
                        nullptr, nullptr, db.data());
    EXPECT_EQ(db, full.dbias);
  }
}

TEST(GroupNorm, EmptyTensorWritesZeroParameterGradients) {
  const GroupNormShape sh{0, 4, 3, 2, Layout::channels_first};
  std::vector<float> dw(4, 7.0f), db(4, 7.0f);
  EXPECT_NO_THROW(
      group_norm_forward(nullptr, sh, nullptr, nullptr, kEps, nullptr, nullptr, nullptr));
  group_norm_backward(nullptr, nullptr, sh, nullptr, nullptr, nullptr, nullptr, dw.data(),
                      db.data());
  EXPECT_EQ(dw, std::vector<float>(4, 0.0f));
  EXPECT_EQ(db, std::vector<float>(4, 0.0f));
}

// ---- argument checks ----

TEST(GroupNormValidation, ErrorsNameTheArgumentAndTheValue) {
  using L = Layout;
  expect_error(
      [] {
        validate(GroupNormShape{2, 6, 3, 0, L::channels_first});
      },
      "groups must be at least 1, got 0");
  expect_error(
      [] {
        validate(GroupNormShape{2, 6, 3, -2, L::channels_first});
      },
      "groups must be at least 1, got -2");
  expect_error(
      [] {
        validate(GroupNormShape{2, 6, 3, 4, L::channels_first});
      },
      "c must be a multiple of groups, got c=6, groups=4");
  expect_error(
      [] {
        validate(GroupNormShape{-1, 6, 3, 2, L::channels_first});
      },
      "n must be non-negative, got -1");
  expect_error(
      [] {
        validate(GroupNormShape{2, 6, -3, 2, L::channels_first});
      },
      "s must be non-negative, got -3");
  expect_error(
      [] {
        validate(GroupNormShape{2, 24, 3, 2, L::blocked16});
      },
      "layout blocked16 needs c to be a multiple of 16, got c=24");
  expect_error([] { validate(GroupNormShape{2, 6, 3, 2, static_cast<L>(7)}); }, "layout");
  expect_error(
      [] {
        validate(GroupNormShape{int64_t{1} << 40, int64_t{1} << 40, 1, 1, L::channels_first});
      },
      "n*c*s overflows");
  EXPECT_NO_THROW(validate(GroupNormShape{2, 48, 3, 3, L::blocked16}));

  const GroupNormShape sh{2, 4, 3, 2, L::channels_first};
  std::vector<float> x(24, 1.0f), y(24), stat(4, 1.0f);
  expect_error(
      [&] { group_norm_forward(nullptr, sh, nullptr, nullptr, kEps, y.data(), nullptr, nullptr); },
      "x must not be null");
  expect_error(
      [&] { group_norm_forward(x.data(), sh, nullptr, nullptr, kEps, nullptr, nullptr, nullptr); },
      "y must not be null");
  expect_error(
      [&] { group_norm_forward(x.data(), sh, nullptr, nullptr, 0.0, y.data(), nullptr, nullptr); },
      "eps must be positive and finite");
  expect_error(
      [&] {
        group_norm_forward(x.data(), {2, 4, 3, 3, L::channels_first}, nullptr, nullptr, kEps,
                           y.data(), nullptr, nullptr);
      },
      "c must be a multiple of groups");
  expect_error(
      [&] {
        group_norm_backward(x.data(), x.data(), sh, nullptr, nullptr, stat.data(), y.data(),
                            nullptr, nullptr);
      },
      "save_mean must not be null");
  expect_error(
      [&] {
        group_norm_backward(x.data(), nullptr, sh, nullptr, stat.data(), stat.data(), y.data(),
                            nullptr, nullptr);
      },
      "dy must not be null");
  expect_error([] { set_group_norm_kernel_variant("AVX9"); }, "unknown kernel variant 'AVX9'");
}

// ---- PyTorch's goldens (tests/golden/make_norm_goldens.py) ----

class GroupNormGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(GroupNormGolden, EveryLayoutAndVariantMatchesPyTorch) {
  const Golden g(std::string(BNLAB_GOLDEN_DIR) + "/norms/" + GetParam() + ".txt");
  const std::vector<double>& dims = g["dims"];
  const bool affine = g["affine"][0] != 0.0;
  GroupNormShape base{static_cast<int64_t>(dims[0]), static_cast<int64_t>(dims[1]), 1,
                      static_cast<int64_t>(g["groups"][0]), Layout::channels_first};
  for (size_t d = 2; d < dims.size(); ++d) base.s *= static_cast<int64_t>(dims[d]);
  const double eps = g["eps"][0];
  const std::vector<float> w = affine ? to_float(g["weight"]) : std::vector<float>{};
  const std::vector<float> b = affine ? to_float(g["bias"]) : std::vector<float>{};
  for (Layout layout : layouts_for(base.c)) {
    GroupNormShape sh = base;
    sh.layout = layout;
    // The files are channels-first; permute into the layout.
    const auto permute = [&](const std::vector<double>& first) {
      std::vector<double> out(first.size());
      for (int64_t i = 0; i < sh.n; ++i)
        for (int64_t j = 0; j < sh.c; ++j)
          for (int64_t k = 0; k < sh.s; ++k)
            out[index_of(sh, i, j, k)] = first[(i * sh.c + j) * sh.s + k];
      return out;
    };
    const std::vector<float> x = to_float(permute(g["x"])), dy = to_float(permute(g["dy"]));
    for (const std::string& variant : variants()) {
      SCOPED_TRACE(layout_name(layout) + " " + variant);
      ScopedVariant use(variant);
      std::vector<float> y(x.size()), mean(sh.n * sh.groups), invstd(sh.n * sh.groups);
      group_norm_forward(x.data(), sh, affine ? w.data() : nullptr, affine ? b.data() : nullptr,
                         eps, y.data(), mean.data(), invstd.data());
      // The slack of the float64 reference, from the same inputs and PyTorch's statistics.
      const std::vector<double> xd(x.begin(), x.end());
      const Reference ref = reference_forward(xd, sh, static_cast<const double*>(nullptr),
                                              static_cast<const double*>(nullptr), eps);
      std::vector<double> y_slack = ref.y_slack;
      if (affine)
        for (int64_t i = 0; i < sh.n; ++i)
          for (int64_t j = 0; j < sh.c; ++j)
            for (int64_t k = 0; k < sh.s; ++k) y_slack[index_of(sh, i, j, k)] *= std::fabs(w[j]);
      EXPECT_TRUE(all_close("y", y.data(), permute(g["y"]), kTol, nullptr, &y_slack));
      EXPECT_TRUE(all_close("save_mean", mean.data(), g["save_mean"], kTol));
      EXPECT_TRUE(all_close("save_invstd", invstd.data(), g["save_invstd"], kTol));
      std::vector<float> dx(x.size()), dw(sh.c), db(sh.c);
      group_norm_backward(x.data(), dy.data(), sh, affine ? w.data() : nullptr, mean.data(),
                          invstd.data(), dx.data(), dw.data(), db.data());
      const ReferenceGrad grad =
          reference_backward(x, dy, sh, affine ? w.data() : nullptr, mean.data(), invstd.data());
      EXPECT_TRUE(all_close("dx", dx.data(), permute(g["dx"]), kDxTol, nullptr, &grad.dx_slack));
      if (affine) {
        EXPECT_TRUE(all_close("dweight", dw.data(), g["dweight"], kDxTol));
        EXPECT_TRUE(all_close("dbias", db.data(), g["dbias"], kDxTol));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(PyTorch, GroupNormGolden,
                         ::testing::Values("group_norm_4d_g2_affine", "group_norm_3d_g1_noaffine",
                                           "group_norm_4d_c32_g8_affine", "instance_norm_4d_affine",
                                           "group_norm_2d_g4_affine", "group_norm_5d_g3_affine"));

}  // namespace
}  // namespace bnlab::test
