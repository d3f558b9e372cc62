// The plain loops: one element at a time, in the same order of operations as
// the vector loops. They are the readable reference the vector variants are
// tested against, and the fallback where no vector variant runs.
#include <algorithm>

#include "kernels/batch_norm_loops.hpp"

namespace bnlab::kernels {
namespace {

Moments span_moments(const float* x, int64_t len) {
  // Pass 1: the mean, summed relative to the first value so that a channel
  // with a large mean and a small spread keeps its digits.
  const float shift = x[0];
  float sum = 0.0f;
  for (int64_t i = 0; i < len; ++i) sum += x[i] - shift;
  const double mean = shift + static_cast<double>(sum) / len;
  // Pass 2 (from L1): squared deviations, corrected by the residual sum.
  const float mean_f = static_cast<float>(mean);
  float dev = 0.0f, dev2 = 0.0f;
  for (int64_t i = 0; i < len; ++i) {
    const float d = x[i] - mean_f;
    dev += d;
    dev2 += d * d;
  }
  const double m2 = static_cast<double>(dev2) - static_cast<double>(dev) * dev / len;
  return {static_cast<double>(len), mean_f + static_cast<double>(dev) / len, std::max(m2, 0.0)};
}

// `stream` only changes how vector code stores; the plain loops ignore it.
// std::max(v, 0) keeps NaN (v < 0 is false for it), as PyTorch's relu does.
void span_normalize(const float* x, float* y, int64_t len, float mean, float scale, float shift,
                    bool relu, bool /*stream*/) {
  for (int64_t i = 0; i < len; ++i) {
    const float v = (x[i] - mean) * scale + shift;
    y[i] = relu ? std::max(v, 0.0f) : v;
  }
}

inline float masked(float dy, const float* relu_y, int64_t i) {
  return relu_y == nullptr || relu_y[i] > 0.0f ? dy : 0.0f;
}

void span_grad_sums(const float* x, const float* dy, const float* relu_y, int64_t len, float mean,
                    double* sum_dy, double* sum_dy_xmu) {
  float s = 0.0f, sx = 0.0f;
  for (int64_t i = 0; i < len; ++i) {
    const float g = masked(dy[i], relu_y, i);
    s += g;
    sx += g * (x[i] - mean);
  }
  *sum_dy += s;
  *sum_dy_xmu += sx;
}

void span_grad_input(const float* x, const float* dy, const float* relu_y, float* dx, int64_t len,
                     float mean, float a, float b, float c, bool /*stream*/) {
  for (int64_t i = 0; i < len; ++i) dx[i] = a * masked(dy[i], relu_y, i) + b * (x[i] - mean) + c;
}

void rows_moments(const float* x, int64_t rows, int64_t stride, int64_t width, double* mean,
                  double* m2) {
  float sum[kRowsMaxWidth], dev2[kRowsMaxWidth];
  std::fill(sum, sum + width, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < width; ++w) sum[w] += x[r * stride + w] - x[w];
  for (int64_t w = 0; w < width; ++w) mean[w] = x[w] + static_cast<double>(sum[w]) / rows;
  std::fill(sum, sum + width, 0.0f);
  std::fill(dev2, dev2 + width, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < width; ++w) {
      const float d = x[r * stride + w] - static_cast<float>(mean[w]);
      sum[w] += d;
      dev2[w] += d * d;
    }
  for (int64_t w = 0; w < width; ++w) {
    const double mean_f = static_cast<float>(mean[w]);
    const double m = static_cast<double>(dev2[w]) - static_cast<double>(sum[w]) * sum[w] / rows;
    m2[w] = std::max(m, 0.0);
    mean[w] = mean_f + static_cast<double>(sum[w]) / rows;
  }
}

void rows_normalize(const float* x, float* y, int64_t rows, int64_t stride, int64_t width,
                    const float* mean, const float* scale, const float* shift, bool relu,
                    bool /*stream*/) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < width; ++w) {
      const float v = (x[r * stride + w] - mean[w]) * scale[w] + shift[w];
      y[r * stride + w] = relu ? std::max(v, 0.0f) : v;
    }
}

void rows_grad_sums(const float* x, const float* dy, const float* relu_y, int64_t rows,
                    int64_t stride, int64_t width, const float* mean, double* sum_dy,
                    double* sum_dy_xmu) {
  float s[kRowsMaxWidth], sx[kRowsMaxWidth];
  std::fill(s, s + width, 0.0f);
  std::fill(sx, sx + width, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < width; ++w) {
      const int64_t i = r * stride + w;
      const float g = masked(dy[i], relu_y, i);
      s[w] += g;
      sx[w] += g * (x[i] - mean[w]);
    }
  for (int64_t w = 0; w < width; ++w) {
    sum_dy[w] += s[w];
    sum_dy_xmu[w] += sx[w];
  }
}

void rows_grad_input(const float* x, const float* dy, const float* relu_y, float* dx, int64_t rows,
                     int64_t stride, int64_t width, const float* mean, const float* a,
                     const float* b, const float* c, bool /*stream*/) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t w = 0; w < width; ++w) {
      const int64_t i = r * stride + w;
      dx[i] = a[w] * masked(dy[i], relu_y, i) + b[w] * (x[i] - mean[w]) + c[w];
    }
}

void store_fence() {}  // plain stores need no fence

}  // namespace

const BatchNormLoops* plain_loops() {
  static const BatchNormLoops loops{"plain",         span_moments,    span_normalize,
                                    span_grad_sums,  span_grad_input, rows_moments,
                                    rows_normalize,  rows_grad_sums,  rows_grad_input,
                                    store_fence};
  return &loops;
}

}  // namespace bnlab::kernels
