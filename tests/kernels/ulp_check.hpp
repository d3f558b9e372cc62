// "Within a few ulps of the float64 result" as the normalization tests check it
// (issue 14, exact normalization at any offset): |got - want| <= ulps units in
// the last place of a float at the larger of |want| and the terms the result
// adds up (|xhat * weight| and |bias| for a normalize), the scale float
// rounding works on when those terms cancel.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <string>
#include <vector>

namespace bnlab::test_ulps {

// The spacing of floats at magnitude m (m >= FLT_MIN; below, FLT_MIN's).
inline double float_ulp(double m) {
  return std::ldexp(1.0, std::ilogb(std::max(std::fabs(m), static_cast<double>(FLT_MIN))) - 23);
}

inline ::testing::AssertionResult within_ulps(const std::string& what, const float* got,
                                              const std::vector<double>& want,
                                              const std::vector<double>& terms, double ulps) {
  int64_t bad = 0;
  double worst = 0.0;
  std::string first;
  for (size_t i = 0; i < want.size(); ++i) {
    const double unit = float_ulp(std::max(std::fabs(want[i]), terms[i]));
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]) / unit;
    if (!(err <= ulps)) {
      if (bad < 3)
        first += " [" + std::to_string(i) + "] got " + std::to_string(got[i]) + " want " +
                 std::to_string(want[i]) + ";";
      ++bad;
    }
    if (err > worst || std::isnan(err)) worst = err;
  }
  if (bad == 0) return ::testing::AssertionSuccess() << what << ": worst " << worst << " ulps";
  return ::testing::AssertionFailure() << what << ": " << bad << " of " << want.size() << " beyond "
                                       << ulps << " ulps, worst " << worst << ";" << first;
}

}  // namespace bnlab::test_ulps
