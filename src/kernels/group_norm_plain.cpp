// The plain GroupNorm/LayerNorm loops: one element at a time, the readable
// reference the vector variants are tested against, and the fallback where no
// vector variant runs. Contracts in group_norm_loops.hpp.
#include <algorithm>

#include "kernels/group_norm_loops.hpp"

namespace bnlab::kernels {
namespace {

NormMoments span_moments(const float* x, int64_t len) {
  // Pass 1: the mean, summed relative to the first value so that a group with
  // a large mean and a small spread keeps its digits.
  const float shift = x[0];
  float sum = 0.0f;
  for (int64_t i = 0; i < len; ++i) sum += x[i] - shift;
  const float mean_f = static_cast<float>(shift + static_cast<double>(sum) / len);
  // Pass 2 (from L1): deviations, corrected by their residual sum; the squares
  // moved to a double every kSquareChain values (no float chain grows long).
  float dev = 0.0f, part = 0.0f;
  double dev2 = 0.0;
  for (int64_t i = 0; i < len; ++i) {
    const float d = x[i] - mean_f;
    dev += d;
    part += d * d;
    if ((i + 1) % kSquareChain == 0) {
      dev2 += part;
      part = 0.0f;
    }
  }
  dev2 += part;
  const double m2 = dev2 - static_cast<double>(dev) * dev / len;
  return {mean_f + static_cast<double>(dev) / len, std::max(m2, 0.0)};
}

// `stream` only changes how vector code stores; the plain loops ignore it.
void span_normalize(const float* x, float* y, int64_t len, float mean, float scale, float shift,
                    bool /*stream*/) {
  for (int64_t i = 0; i < len; ++i) y[i] = (x[i] - mean) * scale + shift;
}

void span_normalize_affine(const float* x, float* y, int64_t len, float mean, float invstd,
                           float xhat_shift, const float* w, const float* b, bool /*stream*/) {
  for (int64_t i = 0; i < len; ++i) y[i] = ((x[i] - mean) * invstd + xhat_shift) * w[i] + b[i];
}

inline float grad(const float* dy, const float* w, int64_t i) {
  return w == nullptr ? dy[i] : dy[i] * w[i];
}

void span_grad_sums(const float* x, const float* dy, const float* w, int64_t len, float mean,
                    double* sum_g, double* sum_g_xmu) {
  float s = 0.0f, sx = 0.0f;
  for (int64_t i = 0; i < len; ++i) {
    const float g = grad(dy, w, i);
    s += g;
    sx += g * (x[i] - mean);
  }
  *sum_g += s;
  *sum_g_xmu += sx;
}

void span_grad_input(const float* x, const float* dy, const float* w, float* dx, int64_t len,
                     float mean, float a, float b, float c, bool /*stream*/) {
  for (int64_t i = 0; i < len; ++i) dx[i] = a * grad(dy, w, i) + b * (x[i] - mean) + c;
}

void rows_moments(const float* x, int64_t rows, int64_t stride, int64_t width, double* mean,
                  double* m2) {
  for (int64_t w = 0; w < width; ++w) {
    float sum = 0.0f;
    for (int64_t r = 0; r < rows; ++r) sum += x[r * stride + w] - x[w];
    const float mean_f = static_cast<float>(x[w] + static_cast<double>(sum) / rows);
    float dev = 0.0f, dev2 = 0.0f;
    for (int64_t r = 0; r < rows; ++r) {
      const float d = x[r * stride + w] - mean_f;
      dev += d;
      dev2 += d * d;
    }
    mean[w] = mean_f + static_cast<double>(dev) / rows;
    m2[w] = std::max(static_cast<double>(dev2) - static_cast<double>(dev) * dev / rows, 0.0);
  }
}

void rows_normalize(const float* x, float* y, int64_t rows, int64_t stride, int64_t width,
                    const float* mean, const float* scale, const float* shift, bool /*stream*/) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < width; ++w)
      y[r * stride + w] = (x[r * stride + w] - mean[w]) * scale[w] + shift[w];
}

void rows_grad_sums(const float* x, const float* dy, int64_t rows, int64_t stride, int64_t width,
                    const float* mean, double* sum_dy, double* sum_dy_xmu) {
  for (int64_t w = 0; w < width; ++w) {
    float s = 0.0f, sx = 0.0f;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r * stride + w;
      s += dy[i];
      sx += dy[i] * (x[i] - mean[w]);
    }
    sum_dy[w] += s;
    sum_dy_xmu[w] += sx;
  }
}

void rows_grad_input(const float* x, const float* dy, float* dx, int64_t rows, int64_t stride,
                     int64_t width, const float* mean, const float* a, const float* b,
                     const float* c, bool /*stream*/) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < width; ++w) {
      const int64_t i = r * stride + w;
      dx[i] = a[w] * dy[i] + b[w] * (x[i] - mean[w]) + c[w];
    }
}

void rows_affine_grad_sums(const float* x, const float* dy, int64_t rows, int64_t stride,
                           int64_t width, const float* row_mean, const float* row_invstd,
                           int64_t stat_stride, double* sum_dy, double* sum_dy_xhat) {
  for (int64_t w = 0; w < width; ++w) {
    float s = 0.0f, sx = 0.0f;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r * stride + w;
      s += dy[i];
      sx += dy[i] * ((x[i] - row_mean[r * stat_stride]) * row_invstd[r * stat_stride]);
    }
    sum_dy[w] += s;
    sum_dy_xhat[w] += sx;
  }
}

void store_fence() {}  // plain stores need no fence

}  // namespace

const NormLoops* plain_norm_loops() {
  static const NormLoops loops{
      "plain",        span_moments,    span_normalize,        span_normalize_affine,
      span_grad_sums, span_grad_input, rows_moments,          rows_normalize,
      rows_grad_sums, rows_grad_input, rows_affine_grad_sums, store_fence};
  return &loops;
}

}  // namespace bnlab::kernels
