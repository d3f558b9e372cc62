// The mean as the normalize loops take it, exact at any offset (issue 14):
//   y = (x - mean) * scale + beta = (x - mean_hi) * scale + shift,
//   mean_hi = float(mean),  shift = beta - (mean - mean_hi) * scale  (in double, rounded once).
// x - mean_hi is exact when x lies within a factor of 2 of mean_hi (Sterbenz), which is
// every x of a channel whose |mean| is large against its spread, the case where rounding
// the mean to float alone would cost digits (an error of half an ulp of |mean| times scale).
// The low part costs no operation per element: it rides in the shift the loops already add.
// Derivation and error bound: docs/performance.md, 'Exact normalization at any offset'.
#pragma once

namespace bnlab::kernels {

struct SplitMean {
  float hi;     // the mean rounded to float: what the loops subtract and save_mean holds
  float shift;  // beta minus the low part times scale
};

inline SplitMean split_mean(double mean, float scale, double beta) {
  const float hi = static_cast<float>(mean);
  return {hi, static_cast<float>(beta - (mean - static_cast<double>(hi)) * scale)};
}

}  // namespace bnlab::kernels
