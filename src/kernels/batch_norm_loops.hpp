// The inner loops of the batch-norm kernels: the only code that touches every
// element. The walks (batch_norm_walks.hpp) cut a tensor into blocks and tasks
// and call these through a table, so one walk serves the plain
// reference loops (batch_norm_plain.cpp) and the vector ones compiled for each
// instruction set by Highway (batch_norm_simd.cpp), chosen at run time.
//
// Two shapes of block:
//  - a span: len contiguous values of one channel (channels-first rows);
//  - rows: `rows` rows of `width` columns, consecutive rows `stride` floats
//    apart, each column its own channel (channels-last, or channels-first with
//    a small spatial size viewed as rows of c*s positions).
// Per-element math is in float; every sum leaves a loop as a double, and the
// caller merges blocks in double (Chan et al.'s pairwise update), so the
// statistics are stable however many values a channel has.
#pragma once

#include <cstdint>

namespace bnlab::kernels {

// Count, mean and m2 = sum((x - mean)^2) of some values: a block, a part of a
// channel, a channel. merge() adds another part with Chan et al.'s update:
//   count = count_a + count_b, delta = mean_b - mean_a,
//   mean = mean_a + delta * (count_b / count),
//   m2 = m2_a + m2_b + delta^2 * (count_a * count_b / count)
// (no E[x^2] - E[x]^2: a channel with mean 1e4 and std 1 keeps its variance).
// The two ratios depend on the counts alone, so columns of the same rows can
// share them (merge_columns).
struct Moments {
  double count = 0.0;
  double mean = 0.0;
  double m2 = 0.0;
  void merge(const Moments& b) {
    if (b.count == 0.0) return;
    if (count == 0.0) {  // the first part is the total so far, without a division
      *this = b;
      return;
    }
    const double total = count + b.count;
    const double delta = b.mean - mean;
    mean += delta * (b.count / total);
    m2 += b.m2 + delta * delta * (count * b.count / total);
    count = total;
  }
  void store(double* mean_out, double* m2_out, int64_t j) const {
    mean_out[j] = mean;
    m2_out[j] = m2;
  }
};

// out[w].merge({count, mean[w], m2[w]}) for w < width: when every out[w] has
// the same count (columns of the same rows) the ratios are computed once, so
// the loop over the columns divides nothing.
inline void merge_columns(Moments* out, int64_t width, double count, const double* mean,
                          const double* m2) {
  const double before = out[0].count;
  bool same = true;
  for (int64_t w = 1; w < width; ++w) same &= out[w].count == before;
  if (!same || before == 0.0 || count == 0.0) {
    for (int64_t w = 0; w < width; ++w) out[w].merge({count, mean[w], m2[w]});
    return;
  }
  const double total = before + count;
  const double weight_new = count / total, weight_cross = before * count / total;
  for (int64_t w = 0; w < width; ++w) {
    const double delta = mean[w] - out[w].mean;
    out[w].mean += delta * weight_new;
    out[w].m2 += m2[w] + delta * delta * weight_cross;
    out[w].count = total;
  }
}

// Blocks stay in L1 between the passes a loop makes over them.
constexpr int64_t kSpanBlock = 4096;  // floats in one span block (16 KiB)
constexpr int64_t kRowsBlock = 4096;  // floats in one rows block, rows * width
constexpr int64_t kRowsMaxWidth = 256;  // columns one rows_* call takes at most

struct BatchNormLoops {
  const char* name;

  // Two passes over the span (the second from L1): the shifted sum gives the
  // mean, then sum((x - mean)^2) corrected by (sum(x - mean))^2 / len.
  Moments (*span_moments)(const float* x, int64_t len);

  // y = (x - mean) * scale + shift, then max(y, 0) when relu. With stream, y
  // is written with non-temporal stores (no read-for-ownership of y's lines):
  // for outputs too large to be read back from cache.
  void (*span_normalize)(const float* x, float* y, int64_t len, float mean, float scale,
                         float shift, bool relu, bool stream);

  // sum_dy += sum(g), sum_dy_xmu += sum(g * (x - mean)), where g = dy, or
  // g = (y > 0 ? dy : 0) when relu_y (the fused ReLU's output) is not null.
  void (*span_grad_sums)(const float* x, const float* dy, const float* relu_y, int64_t len,
                         float mean, double* sum_dy, double* sum_dy_xmu);

  // dx = a * g + b * (x - mean) + c, with g as above; stream as for normalize.
  void (*span_grad_input)(const float* x, const float* dy, const float* relu_y, float* dx,
                          int64_t len, float mean, float a, float b, float c, bool stream);

  // Per column w of a rows block (width <= kRowsMaxWidth): mean[w] and m2[w]
  // (the span method, column-wise).
  void (*rows_moments)(const float* x, int64_t rows, int64_t stride, int64_t width,
                       double* mean, double* m2);

  // y[r, w] = (x[r, w] - mean[w]) * scale[w] + shift[w], then ReLU when relu.
  void (*rows_normalize)(const float* x, float* y, int64_t rows, int64_t stride, int64_t width,
                         const float* mean, const float* scale, const float* shift, bool relu,
                         bool stream);

  // sum_dy[w] += sum_r g, sum_dy_xmu[w] += sum_r g * (x - mean[w]) (width <= kRowsMaxWidth).
  void (*rows_grad_sums)(const float* x, const float* dy, const float* relu_y, int64_t rows,
                         int64_t stride, int64_t width, const float* mean, double* sum_dy,
                         double* sum_dy_xmu);

  // dx[r, w] = a[w] * g + b[w] * (x - mean[w]) + c[w].
  void (*rows_grad_input)(const float* x, const float* dy, const float* relu_y, float* dx,
                          int64_t rows, int64_t stride, int64_t width, const float* mean,
                          const float* a, const float* b, const float* c, bool stream);

  // Orders the calling thread's streaming stores; each task that streamed calls it.
  void (*store_fence)();
};

const BatchNormLoops* plain_loops();

// The vector variants this CPU runs, best first (from batch_norm_simd.cpp).
int simd_variant_count();
const BatchNormLoops* simd_loops(int index);

}  // namespace bnlab::kernels
