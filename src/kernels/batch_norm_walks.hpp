// How the batch-norm kernels walk a tensor: one named function per layout and
// pass, each calling the inner loops of batch_norm_loops.hpp (plain or vector,
// chosen at run time) on blocks, tasks cut by shape alone and their partial
// results merged in task order (the results do not depend on the thread count).
//
// The walks, by layout and spatial size s:
//  - spans_* (batch_norm_spans.cpp): channels-first with s >= kSpanMin; each
//    (sample, channel) row of s floats is a span, tasks take ranges of spans
//    in memory order;
//  - rows_view_* (batch_norm_rows_view.cpp): channels-last, or channels-first
//    with s < kSpanMin; rows of `width` columns (c, or c*s), columns across
//    the vector lanes;
//  - blocked16_* (batch_norm_blocked16.cpp): units of 16 channels of one sample.
// Passes over memory (M = n*s values per channel, in memory order):
//   moments 1 (+ the second from L1), normalize 1 read + 1 write,
//   grad sums 2 reads, grad input 2 reads + 1 write.
// Why these walks and thresholds: docs/performance.md, 'Kernel choices'; the
// cache-sized thresholds come from the machine (cache_thresholds.hpp).
#pragma once

#include <cstdint>

#include "bnlab/aligned.hpp"
#include "bnlab/batch_norm.hpp"
#include "kernels/batch_norm_loops.hpp"
#include "kernels/cache_thresholds.hpp"

namespace bnlab::kernels {

constexpr int64_t kSpanMin = 64;      // channels-first rows shorter than this use the rows view
constexpr int64_t kTargetTasks = 32;  // tasks to cut a channel-poor tensor into
// Outputs are streamed (non-temporal stores) when x and y together overflow
// the last-level cache: y would not be read back from cache anyway.
inline bool streams_bytes(int64_t numel) {
  return 2 * numel * static_cast<int64_t>(sizeof(float)) > cache_thresholds().stream_bytes;
}
inline bool streams(const BatchNormShape& sh) { return streams_bytes(sh.numel()); }

// Channel by channel (or block by block) pays when x's bytes overflow the LLC
// and a channel's two slices (x and dy, or x and y: slice_bytes) fit a
// thread's share of it, or when they fit half of L2 (cache_thresholds.hpp;
// docs/performance.md, 'Kernel choices'). fp32 and bf16 alike.
inline bool by_channel_slices_pay(int64_t x_bytes, int64_t slice_bytes) {
  const CacheThresholds t = cache_thresholds();
  return (slice_bytes <= t.by_channel_slice_bytes && x_bytes > t.by_channel_bytes) ||
         slice_bytes <= t.by_channel_l2_slice_bytes;
}

inline bool uses_spans(const BatchNormShape& sh) {
  return sh.layout == Layout::channels_first && sh.s >= kSpanMin;
}

// The loops of the selected variant (batch_norm_variant.cpp).
const BatchNormLoops& loops();

// Scratch that lives with the calling thread and only grows: no allocation
// once a shape has been seen.
struct Workspace {
  AlignedVector<double> parts;   // per-task partial results
  AlignedVector<float> columns;  // per-column values of the rows view
  AlignedVector<double> channel_doubles;
  AlignedVector<float> channel_floats;
  AlignedVector<float> statistics;  // per-channel statistics a caller derives (eval backward)

  template <class T>
  static T* grown(AlignedVector<T>& v, int64_t count) {
    if (v.size() < static_cast<size_t>(count)) v.resize(static_cast<size_t>(count));
    return v.data();
  }
};
Workspace& workspace();  // the calling thread's

// The backward's two sums of one channel (or column): sum(g), sum(g * (x - mean)).
struct GradSums {
  double dy = 0.0;
  double dy_xmu = 0.0;
  void merge(const GradSums& b) {
    dy += b.dy;
    dy_xmu += b.dy_xmu;
  }
  void store(double* dy_out, double* dy_xmu_out, int64_t j) const {
    dy_out[j] = dy;
    dy_xmu_out[j] = dy_xmu;
  }
};

// The one parts-to-channel merge: for each channel j in [j_begin, j_end), its
// parts part(j, k), k < parts, merged in order (Moments or GradSums) into
// out_a[j] and out_b[j].
template <class Total, class Part>
void merge_parts(int64_t j_begin, int64_t j_end, int64_t parts, const Part& part, double* out_a,
                 double* out_b) {
  for (int64_t j = j_begin; j < j_end; ++j) {
    Total total;
    for (int64_t k = 0; k < parts; ++k) total.merge(part(j, k));
    total.store(out_a, out_b, j);
  }
}

inline const float* offset_or_null(const float* p, int64_t off) {
  return p == nullptr ? nullptr : p + off;
}

// What the backward's passes read and write: dx = a*g + b*(x - mean) + c per
// channel, g = dy, or 0 where relu_y <= 0 (the fused ReLU's mask) when relu_y
// is given. The sums read x, dy, relu_y and mean only.
struct GradInput {
  const float* x;
  const float* dy;
  const float* relu_y;
  float* dx;
  const float* mean;
  const float* a;
  const float* b;
  const float* c;
};

// The GradInput of a call: coef holds dx's a, b and c one after another (3 *
// channels floats), or is null when only the sums are wanted.
inline GradInput grad_input_of(const float* x, const float* dy, Activation activation,
                               const float* y, float* dx, const float* mean, const float* coef,
                               int64_t channels) {
  return {.x = x,
          .dy = dy,
          .relu_y = activation == Activation::relu ? y : nullptr,
          .dx = dx,
          .mean = mean,
          .a = coef,
          .b = offset_or_null(coef, channels),
          .c = offset_or_null(coef, 2 * channels)};
}

// The fused backward's step from channel j's sums (sum_dy[j], sum_dy_xmu[j])
// to dweight[j], dbias[j] and dx's coefficients (batch_norm_backward.cpp).
struct BackwardFinish {
  const float* weight;
  const float* invstd;
  const double* sum_dy;
  const double* sum_dy_xmu;
  float* dweight;
  float* dbias;
  float* a;
  float* b;
  float* c;
  double inv_count;
  bool constant_statistics;  // eval mode: b = c = 0
  void operator()(int64_t j) const;
  // sums: sum_dy then sum_dy_xmu (2 * c doubles); coef: dx's a, b, c (3 * c floats).
  static BackwardFinish over(const BatchNormShape& sh, const float* weight, const float* invstd,
                             const double* sums, float* dweight, float* dbias, float* coef,
                             bool constant_statistics) {
    return {.weight = weight,
            .invstd = invstd,
            .sum_dy = sums,
            .sum_dy_xmu = sums + sh.c,
            .dweight = dweight,
            .dbias = dbias,
            .a = coef,
            .b = coef + sh.c,
            .c = coef + 2 * sh.c,
            .inv_count = 1.0 / static_cast<double>(sh.per_channel()),
            .constant_statistics = constant_statistics};
  }
};

// The training forward's step from channel j's mean[j] and m2[j] (over
// `count` values each) to y's coefficients: mean_f[j] (the mean's high
// float), scale[j] and shift[j], and invstd_f[j] (batch_norm_forward.cpp).
struct ForwardFinish {
  const float* weight;
  const float* bias;
  const double* mean;
  const double* m2;
  float* mean_f;
  float* scale;
  float* shift;
  float* invstd_f;
  double count;
  double eps;
  void operator()(int64_t j) const;
};

// ---- per layout: mean and m2 per channel; y = act((x - mean)*scale + shift);
// the backward's sums per channel; dx. Non-empty tensors only. ----
void spans_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2);
void spans_normalize(const float* x, float* y, const BatchNormShape& sh, const float* mean,
                     const float* scale, const float* shift, bool relu);
void spans_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                     double* sum_dy_xmu);
void spans_grad_input(const GradInput& g, const BatchNormShape& sh);
// The training forward channel by channel (moments, finish, y), when it pays
// (true), else false.
bool spans_forward_by_channel(const float* x, float* y, const BatchNormShape& sh, double* mean,
                              double* m2, const ForwardFinish& finish, bool relu);
// The backward channel by channel (sums, finish, dx), when it pays (true), else false.
bool spans_backward_by_channel(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                               double* sum_dy_xmu, const BackwardFinish& finish);

void rows_view_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2);
void rows_view_normalize(const float* x, float* y, const BatchNormShape& sh, const float* mean,
                         const float* scale, const float* shift, bool relu);
void rows_view_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                         double* sum_dy_xmu);
void rows_view_grad_input(const GradInput& g, const BatchNormShape& sh);

void blocked16_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2);
void blocked16_normalize(const float* x, float* y, const BatchNormShape& sh, const float* mean,
                         const float* scale, const float* shift, bool relu);
void blocked16_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                         double* sum_dy_xmu);
void blocked16_grad_input(const GradInput& g, const BatchNormShape& sh);
// The training forward block of 16 channels by block, when it pays (true), else false.
bool blocked16_forward_by_block(const float* x, float* y, const BatchNormShape& sh, double* mean,
                                double* m2, const ForwardFinish& finish, bool relu);
// The backward block of 16 channels by block, when it pays (true), else false.
bool blocked16_backward_by_block(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                                 double* sum_dy_xmu, const BackwardFinish& finish);

// Per-column mean and m2 of `rows` rows of `width` <= kRowsMaxWidth columns,
// `stride` floats apart, summed in float blocks of block_rows rows and merged
// in double (batch_norm_rows_view.cpp; blocked16's units use it too).
void rows_moments_merged(const float* x, int64_t rows, int64_t stride, int64_t width,
                         int64_t block_rows, double* mean, double* m2);

// ---- the same, by layout (batch_norm_walks.cpp) ----
void channel_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2);
// The training forward channel by channel or block by block (moments,
// finish, y), when the layout and sizes make it pay (true), else false.
bool forward_by_channel(const float* x, float* y, const BatchNormShape& sh, double* mean,
                        double* m2, const ForwardFinish& finish, bool relu);
void normalize(const float* x, float* y, const BatchNormShape& sh, const float* mean,
               const float* scale, const float* shift, bool relu);
void channel_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                       double* sum_dy_xmu);
void grad_input(const GradInput& g, const BatchNormShape& sh);

}  // namespace bnlab::kernels
