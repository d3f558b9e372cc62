// The inner loops of the GroupNorm and LayerNorm kernels: the only code that
// touches every element. group_norm.cpp plans the work (tasks, blocks, merges)
// and calls these through a table, so one plan serves the plain reference loops
// (group_norm_plain.cpp) and the vector ones Highway compiles for each
// instruction set (group_norm_simd.cpp), chosen at run time.
//
// They stand alone from the batch-norm loops (batch_norm_loops.hpp) on
// purpose: the two kernels' plans differ (per sample and group here, per
// channel there), and neither should change when the other is tuned.
//
// Two shapes of block:
//  - a span: len contiguous values;
//  - rows: `rows` rows of `width` columns (width <= kNormMaxWidth), consecutive
//    rows `stride` floats apart, each column its own channel.
// Per-element math is in float; every sum leaves a loop as a double, and the
// caller merges blocks of at most kNormBlock values in double.
#pragma once

#include <cstdint>

namespace bnlab::kernels {

struct NormMoments {
  double mean = 0.0;
  double m2 = 0.0;  // sum of squared deviations from mean
};

constexpr int64_t kNormBlock = 4096;    // values summed in float before a merge in double
// Squares a float chain of span_moments adds (per lane) before it moves them to a
// double: longer chains cost y ulps once |mean| >> std (issue 14, 24 ulps at 1e4).
constexpr int64_t kSquareChain = 16;
constexpr int64_t kNormMaxWidth = 256;  // columns one rows_* call takes at most

struct NormLoops {
  const char* name;

  // Two passes over the span (len <= kNormBlock; the second from L1): the sum
  // shifted by x[0] gives the mean, then sum((x - mean)^2) corrected by
  // (sum(x - mean))^2 / len.
  NormMoments (*span_moments)(const float* x, int64_t len);

  // y = (x - mean) * scale + shift. With stream, y is written with non-temporal
  // stores (no read of y's lines first): for outputs too large to be read back
  // from cache. The same for every loop below that takes stream.
  void (*span_normalize)(const float* x, float* y, int64_t len, float mean, float scale,
                         float shift, bool stream);

  // y = ((x - mean) * invstd + xhat_shift) * w[k] + b[k] (LayerNorm's per-element
  // affine; xhat_shift carries the mean's low part, split_mean.hpp).
  void (*span_normalize_affine)(const float* x, float* y, int64_t len, float mean, float invstd,
                                float xhat_shift, const float* w, const float* b, bool stream);

  // g = dy, or dy * w[k] when w is not null; len <= kNormBlock:
  //   sum_g += sum(g),  sum_g_xmu += sum(g * (x - mean)).
  void (*span_grad_sums)(const float* x, const float* dy, const float* w, int64_t len, float mean,
                         double* sum_g, double* sum_g_xmu);

  // dx = a * g + b * (x - mean) + c, g as above.
  void (*span_grad_input)(const float* x, const float* dy, const float* w, float* dx, int64_t len,
                          float mean, float a, float b, float c, bool stream);

  // Per column w (rows * width <= kNormBlock): mean[w] and m2[w], the span
  // method column-wise (shift = row 0).
  void (*rows_moments)(const float* x, int64_t rows, int64_t stride, int64_t width, double* mean,
                       double* m2);

  // y[r, w] = (x[r, w] - mean[w]) * scale[w] + shift[w]; streams only when
  // every row starts vector-aligned.
  void (*rows_normalize)(const float* x, float* y, int64_t rows, int64_t stride, int64_t width,
                         const float* mean, const float* scale, const float* shift, bool stream);

  // rows * width <= kNormBlock:
  //   sum_dy[w] += sum_r dy,  sum_dy_xmu[w] += sum_r dy * (x - mean[w]).
  void (*rows_grad_sums)(const float* x, const float* dy, int64_t rows, int64_t stride,
                         int64_t width, const float* mean, double* sum_dy, double* sum_dy_xmu);

  // dx[r, w] = a[w] * dy + b[w] * (x - mean[w]) + c[w].
  void (*rows_grad_input)(const float* x, const float* dy, float* dx, int64_t rows, int64_t stride,
                          int64_t width, const float* mean, const float* a, const float* b,
                          const float* c, bool stream);

  // The affine parameters' sums with per-row statistics (row r's at
  // row_mean[r * stat_stride], row_invstd[r * stat_stride]); rows * width <= kNormBlock:
  //   sum_dy[w] += sum_r dy,  sum_dy_xhat[w] += sum_r dy * (x - row_mean) * row_invstd.
  void (*rows_affine_grad_sums)(const float* x, const float* dy, int64_t rows, int64_t stride,
                                int64_t width, const float* row_mean, const float* row_invstd,
                                int64_t stat_stride, double* sum_dy, double* sum_dy_xhat);

  // Orders the calling thread's streaming stores; each task that streamed calls it.
  void (*store_fence)();
};

const NormLoops* plain_norm_loops();

// The vector variants this CPU runs, best first (from group_norm_simd.cpp).
int simd_norm_variant_count();
const NormLoops* simd_norm_loops(int index);

}  // namespace bnlab::kernels
