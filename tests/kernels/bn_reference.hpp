// Plain float64 batch normalization, the reference every kernel test compares
// with, plus the small helpers the tests share (random data, layouts, checks).
//
// Shapes follow bnlab::BatchNormShape: n samples, c channels, s spatial
// positions; element (i, j, k) of a channels-first tensor is at (i*c + j)*s + k,
// of a channels-last one at (i*s + k)*c + j.
//
// Tolerance used throughout (stated once here): a float result a matches its
// float64 reference r when |a - r| <= tol * (1 + |r|), tol = 1e-5 unless a test
// says otherwise. Sums over a channel (dweight, dbias) are compared against
// tol * (1 + sum of the |terms|), the scale float rounding works on.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <functional>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bnlab/batch_norm.hpp"

namespace bnlab::test {

inline constexpr double kTolerance = 1e-5;

inline int64_t index_of(int64_t i, int64_t j, int64_t k, const BatchNormShape& sh) {
  switch (sh.layout) {
    case Layout::channels_first: return (i * sh.c + j) * sh.s + k;
    case Layout::channels_last: return (i * sh.s + k) * sh.c + j;
    case Layout::blocked16: return ((i * (sh.c / 16) + j / 16) * sh.s + k) * 16 + j % 16;
  }
  return -1;
}

inline std::string layout_name(Layout layout) {
  switch (layout) {
    case Layout::channels_first: return "first";
    case Layout::channels_last: return "last";
    case Layout::blocked16: return "blocked16";
  }
  return "?";
}

inline std::string describe(const BatchNormShape& sh) {
  // Appended piece by piece (g++ 12's -Wrestrict false positive, see grad_case_name).
  std::string out = "n=";
  out += std::to_string(sh.n);
  out += " c=";
  out += std::to_string(sh.c);
  out += " s=";
  out += std::to_string(sh.s);
  out += ' ';
  out += layout_name(sh.layout);
  return out;
}

// The layouts a shape can take: blocked16 only when c is a multiple of 16.
inline std::vector<Layout> layouts_for(int64_t c) {
  if (c > 0 && c % 16 == 0) return {Layout::channels_first, Layout::channels_last, Layout::blocked16};
  return {Layout::channels_first, Layout::channels_last};
}

inline std::vector<float> random_vector(int64_t count, uint32_t seed, float mean = 0.0f,
                                        float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& e : v) e = normal(rng);
  return v;
}

// x with a different mean and spread per channel, so a channel mix-up shows.
inline int64_t channel_of(int64_t e, const BatchNormShape& sh);
inline std::vector<float> channel_data(const BatchNormShape& sh, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(sh.numel()));
  for (int64_t e = 0; e < sh.numel(); ++e) {
    const int64_t j = channel_of(e, sh);
    x[e] = static_cast<float>(0.5 * (j % 7) - 1.0) + (0.5f + 0.1f * (j % 5)) * normal(rng);
  }
  return x;
}

// The channel of the element at flat index e (the references walk memory in
// order, so they stay fast on the large shapes).
inline int64_t channel_of(int64_t e, const BatchNormShape& sh) {
  switch (sh.layout) {
    case Layout::channels_first: return (e / sh.s) % sh.c;
    case Layout::channels_last: return e % sh.c;
    case Layout::blocked16: return (e / 16 / sh.s) % (sh.c / 16) * 16 + e % 16;
  }
  return -1;
}

// The training forward's results, in double.
struct ReferenceForward {
  std::vector<double> y, mean, var, invstd;  // var biased (divided by n*s)
};

// Per channel j over the M = n*s values:
//   mean = sum(x)/M,  var = sum((x - mean)^2)/M  (two passes),  invstd = 1/sqrt(var + eps)
//   y = act((x - mean)*invstd*weight + bias), weight = 1 and bias = 0 when null.
template <class T>
ReferenceForward reference_forward_training(const std::vector<T>& x, const BatchNormShape& sh,
                                            const T* weight, const T* bias, double eps,
                                            bool relu = false) {
  ReferenceForward r;
  r.y.assign(x.size(), 0.0);
  r.mean.assign(sh.c, 0.0);
  r.var.assign(sh.c, 0.0);
  r.invstd.assign(sh.c, 0.0);
  const double count = static_cast<double>(sh.n * sh.s);
  const int64_t numel = static_cast<int64_t>(x.size());
  for (int64_t e = 0; e < numel; ++e) r.mean[channel_of(e, sh)] += x[e];
  for (double& m : r.mean) m /= count;
  for (int64_t e = 0; e < numel; ++e) {
    const double d = x[e] - r.mean[channel_of(e, sh)];
    r.var[channel_of(e, sh)] += d * d;
  }
  for (int64_t j = 0; j < sh.c; ++j) {
    r.var[j] /= count;
    r.invstd[j] = 1.0 / std::sqrt(r.var[j] + eps);
  }
  for (int64_t e = 0; e < numel; ++e) {
    const int64_t j = channel_of(e, sh);
    const double w = weight ? static_cast<double>(weight[j]) : 1.0;
    const double b = bias ? static_cast<double>(bias[j]) : 0.0;
    const double v = (x[e] - r.mean[j]) * r.invstd[j] * w + b;
    r.y[e] = relu && v < 0.0 ? 0.0 : v;
  }
  return r;
}

// y = act((x - running_mean)/sqrt(running_var + eps)*weight + bias).
inline std::vector<double> reference_forward_inference(
    const std::vector<float>& x, const BatchNormShape& sh, const float* weight, const float* bias,
    const float* running_mean, const float* running_var, double eps, bool relu = false) {
  std::vector<double> y(x.size());
  for (int64_t e = 0; e < static_cast<int64_t>(x.size()); ++e) {
    const int64_t j = channel_of(e, sh);
    const double w = weight ? weight[j] : 1.0, b = bias ? bias[j] : 0.0;
    const double v = (x[e] - static_cast<double>(running_mean[j])) /
                         std::sqrt(static_cast<double>(running_var[j]) + eps) * w +
                     b;
    y[e] = relu && v < 0.0 ? 0.0 : v;
  }
  return y;
}

// The backward's results in double, and the scale of each channel sum's terms
// (sum |g| and sum |g * xhat|), which bounds float rounding in dbias/dweight.
struct ReferenceBackward {
  std::vector<double> dx, dweight, dbias;
  std::vector<double> dweight_scale, dbias_scale;
};

// From the saved mean and invstd (as the kernel is given them), M = n*s,
// g = dy (or 0 where relu_y <= 0 when relu_y is given), xhat = (x - mean)*invstd:
//   dbias = sum(g),  dweight = sum(g*xhat),
//   dx = weight*invstd*(g - dbias/M - xhat*dweight/M).
inline ReferenceBackward reference_backward(const std::vector<float>& x,
                                            const std::vector<float>& dy, const BatchNormShape& sh,
                                            const float* weight, const float* save_mean,
                                            const float* save_invstd,
                                            const float* relu_y = nullptr) {
  ReferenceBackward r;
  r.dx.assign(x.size(), 0.0);
  r.dweight.assign(sh.c, 0.0);
  r.dbias.assign(sh.c, 0.0);
  r.dweight_scale.assign(sh.c, 0.0);
  r.dbias_scale.assign(sh.c, 0.0);
  const double count = static_cast<double>(sh.n * sh.s);
  const int64_t numel = static_cast<int64_t>(x.size());
  auto grad = [&](int64_t e) {
    return relu_y != nullptr && !(relu_y[e] > 0.0f) ? 0.0 : static_cast<double>(dy[e]);
  };
  for (int64_t e = 0; e < numel; ++e) {
    const int64_t j = channel_of(e, sh);
    const double g = grad(e), xhat = (x[e] - static_cast<double>(save_mean[j])) * save_invstd[j];
    r.dbias[j] += g;
    r.dweight[j] += g * xhat;
    r.dbias_scale[j] += std::fabs(g);
    r.dweight_scale[j] += std::fabs(g * xhat);
  }
  for (int64_t e = 0; e < numel; ++e) {
    const int64_t j = channel_of(e, sh);
    const double invstd = save_invstd[j], w = weight ? weight[j] : 1.0;
    const double xhat = (x[e] - static_cast<double>(save_mean[j])) * invstd;
    r.dx[e] = w * invstd * (grad(e) - r.dbias[j] / count - xhat * r.dweight[j] / count);
  }
  return r;
}

// Checks every element of got against want with |got - want| <= tol*(scale + |want|),
// scale = 1 or the per-element scale given; reports the first few mismatches
// and the worst error.
inline ::testing::AssertionResult all_close(const std::string& what, const float* got,
                                            const std::vector<double>& want, double tol,
                                            const std::vector<double>* scale = nullptr) {
  int64_t bad = 0;
  double worst = 0.0;
  std::string first;
  for (size_t i = 0; i < want.size(); ++i) {
    const double base = scale ? 1.0 + (*scale)[i] : 1.0;
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double allowed = tol * (base + std::fabs(want[i]));
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
         << what << ": " << bad << " of " << want.size() << " elements off (tolerance " << tol
         << "), worst |error| " << worst << ";" << first;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

inline std::vector<float> to_float(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

// Central differences (f(v + h) - f(v - h)) / 2h, h = 1e-6, of f over each
// element of v (v is restored): in double, accurate to ~1e-9 for the losses
// the gradient checks use.
inline std::vector<double> central_differences(std::vector<double>& v,
                                               const std::function<double()>& f) {
  constexpr double kStep = 1e-6;
  std::vector<double> grad(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i];
    v[i] = keep + kStep;
    const double up = f();
    v[i] = keep - kStep;
    const double down = f();
    v[i] = keep;
    grad[i] = (up - down) / (2 * kStep);
  }
  return grad;
}

// The central differences of f with respect to x, weight and bias.
struct NumericGradients {
  std::vector<double> dx, dweight, dbias;
};
inline NumericGradients numeric_gradients(std::vector<double>& x, std::vector<double>& weight,
                                          std::vector<double>& bias,
                                          const std::function<double()>& f) {
  return {central_differences(x, f), central_differences(weight, f), central_differences(bias, f)};
}

// A small shape with the backward's options, for the gradient checks.
struct GradCase {
  int64_t n, c, s;
  Layout layout;
  bool affine, relu;
};

// Each of the shapes in every layout it can take, affine or not, ReLU or not.
inline std::vector<GradCase> grad_cases(const std::vector<std::array<int64_t, 3>>& shapes) {
  std::vector<GradCase> cases;
  for (const auto& z : shapes)
    for (Layout layout : layouts_for(z[1]))
      for (bool affine : {false, true})
        for (bool relu : {false, true}) cases.push_back({z[0], z[1], z[2], layout, affine, relu});
  return cases;
}

// The test name of a case, e.g. n3c4s5_first_affine_relu.
inline std::string grad_case_name(const ::testing::TestParamInfo<GradCase>& info) {
  const GradCase& g = info.param;
  // Appended piece by piece: g++ 12 warns (-Wrestrict, a false positive) on
  // "literal" + std::string here.
  std::string name = "n";
  name += std::to_string(g.n) + "c" + std::to_string(g.c) + "s" + std::to_string(g.s);
  name += '_';
  name += layout_name(g.layout);
  name += g.affine ? "_affine" : "_noaffine";
  name += g.relu ? "_relu" : "";
  return name;
}

// Splits a comma-separated list.
inline std::vector<std::string> split_commas(const std::string& all) {
  std::vector<std::string> names;
  size_t start = 0;
  while (start <= all.size()) {
    const size_t comma = all.find(',', start);
    const size_t end = comma == std::string::npos ? all.size() : comma;
    if (end > start) names.push_back(all.substr(start, end - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return names;
}

// The variants to test: batch_norm_kernel_variants() ("auto,AVX3,AVX2,...,plain"),
// less those named in the environment variable BNLAB_TEST_SKIP_VARIANTS (for
// a run that must get past a variant known to be broken; never set it in CI).
inline std::vector<std::string> kernel_variants() {
  std::vector<std::string> names = split_commas(batch_norm_kernel_variants());
  if (const char* skip = std::getenv("BNLAB_TEST_SKIP_VARIANTS")) {
    for (const std::string& name : split_commas(skip))
      names.erase(std::remove(names.begin(), names.end(), name), names.end());
  }
  return names;
}

// Selects a kernel variant for the lifetime of the object, then restores "auto".
class ScopedKernelVariant {
 public:
  explicit ScopedKernelVariant(const std::string& name) { set_batch_norm_kernel_variant(name); }
  ~ScopedKernelVariant() { set_batch_norm_kernel_variant("auto"); }
  ScopedKernelVariant(const ScopedKernelVariant&) = delete;
  ScopedKernelVariant& operator=(const ScopedKernelVariant&) = delete;
};

}  // namespace bnlab::test
