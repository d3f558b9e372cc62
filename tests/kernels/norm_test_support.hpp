// What the GroupNorm and LayerNorm tests share (each keeps its own float64
// reference): tolerances, random data, the comparison with a slack, kernel
// variant selection, central differences, error checks and the golden reader.
//
// Tolerances: a float result a matches its float64 reference r when
// |a - r| <= tol * (1 + |r|) + slack, tol = 1e-5 for y and the statistics,
// 2e-5 for dx; dweight and dbias (sums) against 1e-5 * (1 + sum of the
// |terms|). The slack is what float arithmetic cannot avoid: y and dx use the
// mean rounded to float (as save_mean holds it), an error of half an ulp of
// |mean| amplified by invstd, which a group of few, close values (invstd in the
// hundreds) makes visible; and dx cancels terms of size invstd*|weight*dy|
// (exactly, for a group of one value). Gradient checks: central differences in
// double, h = 1e-6, |kernel - fd| <= 2e-5 * (1 + |fd|).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/group_norm.hpp"
#include "golden_lines.hpp"

namespace bnlab::norm_test {

constexpr double kEps = 1e-5;
constexpr double kTol = 1e-5;
constexpr double kDxTol = 2e-5;
constexpr double kMeanRounding = 1.2e-7;  // 2^-23: half an ulp of a float, with a margin of 2
constexpr double kTermRounding = 1e-6;    // ~16 ulps of each term dx adds up

inline std::vector<float> random_vector(int64_t count, uint32_t seed, float mean = 0.0f,
                                        float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(mean, stddev);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& e : v) e = normal(rng);
  return v;
}

inline std::vector<double> as_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// |got - want| <= tol * (1 + scale + |want|) + slack per element (scale, slack: 0 when null);
// reports the first few mismatches and the worst error.
inline ::testing::AssertionResult all_close(const std::string& what, const float* got,
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

// The kernel variants: "auto", the vector targets this CPU runs, "plain".
inline std::vector<std::string> variants() {
  std::vector<std::string> names;
  std::stringstream all(group_norm_kernel_variants());
  for (std::string name; std::getline(all, name, ',');) names.push_back(name);
  return names;
}

// Selects a variant for the lifetime of the object, then restores "auto".
class ScopedVariant {
 public:
  explicit ScopedVariant(const std::string& name) { set_group_norm_kernel_variant(name); }
  ~ScopedVariant() { set_group_norm_kernel_variant("auto"); }
  ScopedVariant(const ScopedVariant&) = delete;
  ScopedVariant& operator=(const ScopedVariant&) = delete;
};

// (loss(v + h) - loss(v - h)) / 2h for each element of v (restored), h = 1e-6.
inline std::vector<double> central_differences(std::vector<double>& v,
                                               const std::function<double()>& loss) {
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
}

// Checks that f throws bnlab::Error (invalid_argument) with a message containing part.
inline void expect_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "expected bnlab::Error containing '" << part << "'";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

// A golden file of tests/golden/norms (make_norm_goldens.py): "key count v0 v1 ..." lines.
class Golden {
 public:
  explicit Golden(const std::string& path) : entries_(test::read_golden_lines(path)) {}
  const std::vector<double>& operator[](const std::string& key) const {
    const auto it = entries_.find(key);
    if (it == entries_.end()) throw std::runtime_error("golden file lacks '" + key + "'");
    return it->second;
  }

 private:
  std::map<std::string, std::vector<double>> entries_;
};

inline std::vector<float> to_float(const std::vector<double>& v) { return {v.begin(), v.end()}; }

}  // namespace bnlab::norm_test
