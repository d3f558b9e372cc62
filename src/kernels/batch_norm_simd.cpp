// The vector loops, written once with Google Highway and compiled for each
// x86 instruction set (AVX-512, AVX2, SSE4, ...); batch_norm_variant.cpp
// picks the best the CPU runs. Each function computes exactly what its twin in
// batch_norm_plain.cpp computes, lane by lane; see batch_norm_loops.hpp for
// the contract of each.
//
// Tails shorter than a vector go through masked loads and stores, so no loop
// here falls back to one element at a time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/batch_norm_simd.cpp"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/cache_control.h>
#include <hwy/highway.h>

#include <algorithm>

#include "kernels/batch_norm_loops.hpp"
#include "kernels/load_tail-inl.h"
#include "kernels/register_sums-inl.h"
#include "kernels/rows_from_boundary.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;
// LoadTail, kMaxLanes, HeadToAlign, RowsAligned, PrefetchRangeAhead: kernels/load_tail-inl.h.

HWY_INLINE float Sum(D d, V v) { return hn::GetLane(hn::SumOfLanes(d, v)); }

// Stores a whole vector: non-temporal (p must be vector-aligned) or plain.
template <bool kStream>
HWY_INLINE void StoreOut(V v, D d, float* p) {
  if constexpr (kStream) {
    hn::Stream(v, d, p);
  } else {
    hn::StoreU(v, d, p);
  }
}

// Orders this thread's streaming stores before whatever follows (the caller's
// barrier, then other threads' reads).
void StoreFence() { hwy::FlushStream(); }

// g = dy, or 0 where the fused ReLU's output relu_y[at] is not positive.
// relu_y is null without the ReLU, so the offset is taken only with it.
template <bool kRelu>
HWY_INLINE V Grad(D d, V dy, const float* relu_y, int64_t at) {
  if constexpr (kRelu) {
    return hn::IfThenElseZero(hn::Gt(hn::LoadU(d, relu_y + at), hn::Zero(d)), dy);
  } else {
    return dy;
  }
}

Moments SpanMoments(const float* x, int64_t len) {
  const D d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  // Pass 1: shifted sum; four accumulators keep the adds independent.
  const V shift = hn::Set(d, x[0]);
  V s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 4 * n <= len; i += 4 * n) {
    s0 = hn::Add(s0, hn::Sub(hn::LoadU(d, x + i), shift));
    s1 = hn::Add(s1, hn::Sub(hn::LoadU(d, x + i + n), shift));
    s2 = hn::Add(s2, hn::Sub(hn::LoadU(d, x + i + 2 * n), shift));
    s3 = hn::Add(s3, hn::Sub(hn::LoadU(d, x + i + 3 * n), shift));
  }
  for (; i + n <= len; i += n) s0 = hn::Add(s0, hn::Sub(hn::LoadU(d, x + i), shift));
  if (i < len) {
    const auto m = hn::FirstN(d, static_cast<size_t>(len - i));
    s1 = hn::Add(s1, hn::IfThenElseZero(m, hn::Sub(LoadTail(d, x + i, len - i), shift)));
  }
  const float sum = Sum(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)));
  const float mean_f = static_cast<float>(x[0] + static_cast<double>(sum) / len);
  // Pass 2, from L1: deviations and squared deviations. It prefetches the len
  // values that follow (the next block or span in memory order), so that DRAM
  // does not idle while it runs (docs/performance.md, 'Kernel choices').
  const V mean = hn::Set(d, mean_f);
  V a0 = hn::Zero(d), a1 = hn::Zero(d), q0 = hn::Zero(d), q1 = hn::Zero(d);
  i = 0;
  for (; i + 2 * n <= len; i += 2 * n) {
    PrefetchRangeAhead(x, len + i, 2 * n);
    const V d0 = hn::Sub(hn::LoadU(d, x + i), mean);
    const V d1 = hn::Sub(hn::LoadU(d, x + i + n), mean);
    a0 = hn::Add(a0, d0);
    a1 = hn::Add(a1, d1);
    q0 = hn::MulAdd(d0, d0, q0);
    q1 = hn::MulAdd(d1, d1, q1);
  }
  for (; i < len; i += n) {
    const auto m = hn::FirstN(d, static_cast<size_t>(std::min(n, len - i)));
    const V d0 = hn::IfThenElseZero(m, hn::Sub(LoadTail(d, x + i, std::min(n, len - i)), mean));
    a0 = hn::Add(a0, d0);
    q0 = hn::MulAdd(d0, d0, q0);
  }
  const double dev = Sum(d, hn::Add(a0, a1));
  const double dev2 = Sum(d, hn::Add(q0, q1));
  return {static_cast<double>(len), mean_f + dev / len, std::max(dev2 - dev * dev / len, 0.0)};
}

// y = (x - mean) * scale + shift over n_full vectors and a masked tail. The
// ReLU zeroes v < 0 only, so NaN passes as PyTorch's relu passes it (x86's max
// would return the 0) and -0.0 stays as the plain loop's std::max leaves it.
HWY_INLINE V Normalize(V x, V mean, V scale, V shift, bool relu, D d) {
  const V v = hn::MulAdd(hn::Sub(x, mean), scale, shift);
  return relu ? hn::IfThenZeroElse(hn::Lt(v, hn::Zero(d)), v) : v;
}

template <bool kStream>
void SpanNormalizeT(const float* x, float* y, int64_t len, float mean_s, float scale_s,
                    float shift_s, bool relu) {
  const D d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  const V mean = hn::Set(d, mean_s), scale = hn::Set(d, scale_s), shift = hn::Set(d, shift_s);
  int64_t i = 0;
  if constexpr (kStream) {  // a masked plain store up to the first aligned vector
    i = std::min(len, HeadToAlign(d, y));
    if (i > 0)
      hn::BlendedStore(Normalize(LoadTail(d, x, i), mean, scale, shift, relu, d),
                       hn::FirstN(d, static_cast<size_t>(i)), d, y);
  }
  for (; i + n <= len; i += n)
    StoreOut<kStream>(Normalize(hn::LoadU(d, x + i), mean, scale, shift, relu, d), d, y + i);
  if (i < len) {
    const auto m = hn::FirstN(d, static_cast<size_t>(len - i));
    hn::BlendedStore(Normalize(LoadTail(d, x + i, len - i), mean, scale, shift, relu, d), m, d,
                     y + i);
  }
}

void SpanNormalize(const float* x, float* y, int64_t len, float mean, float scale, float shift,
                   bool relu, bool stream) {
  if (stream) {
    SpanNormalizeT<true>(x, y, len, mean, scale, shift, relu);
  } else {
    SpanNormalizeT<false>(x, y, len, mean, scale, shift, relu);
  }
}

template <bool kRelu>
void SpanGradSumsT(const float* x, const float* dy, const float* relu_y, int64_t len,
                   float mean_s, double* sum_dy, double* sum_dy_xmu) {
  const D d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  const V mean = hn::Set(d, mean_s);
  V s0 = hn::Zero(d), s1 = hn::Zero(d), p0 = hn::Zero(d), p1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * n <= len; i += 2 * n) {
    const V g0 = Grad<kRelu>(d, hn::LoadU(d, dy + i), relu_y, i);
    const V g1 = Grad<kRelu>(d, hn::LoadU(d, dy + i + n), relu_y, i + n);
    s0 = hn::Add(s0, g0);
    s1 = hn::Add(s1, g1);
    p0 = hn::MulAdd(g0, hn::Sub(hn::LoadU(d, x + i), mean), p0);
    p1 = hn::MulAdd(g1, hn::Sub(hn::LoadU(d, x + i + n), mean), p1);
  }
  for (; i < len; i += n) {
    const size_t count = static_cast<size_t>(std::min(n, len - i));
    const auto m = hn::FirstN(d, count);
    V g = LoadTail(d, dy + i, count);  // zero past the end, so the products are zero too
    if constexpr (kRelu) g = hn::IfThenElseZero(hn::Gt(LoadTail(d, relu_y + i, count), hn::Zero(d)), g);
    s0 = hn::Add(s0, g);
    p0 = hn::MulAdd(g, hn::IfThenElseZero(m, hn::Sub(LoadTail(d, x + i, count), mean)), p0);
  }
  *sum_dy += Sum(d, hn::Add(s0, s1));
  *sum_dy_xmu += Sum(d, hn::Add(p0, p1));
}

void SpanGradSums(const float* x, const float* dy, const float* relu_y, int64_t len, float mean,
                  double* sum_dy, double* sum_dy_xmu) {
  if (relu_y != nullptr) {
    SpanGradSumsT<true>(x, dy, relu_y, len, mean, sum_dy, sum_dy_xmu);
  } else {
    SpanGradSumsT<false>(x, dy, relu_y, len, mean, sum_dy, sum_dy_xmu);
  }
}

template <bool kRelu, bool kStream>
void SpanGradInputT(const float* x, const float* dy, const float* relu_y, float* dx, int64_t len,
                    float mean_s, float a_s, float b_s, float c_s) {
  const D d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  const V mean = hn::Set(d, mean_s), a = hn::Set(d, a_s), b = hn::Set(d, b_s), c = hn::Set(d, c_s);
  // dx = a * g + b * (x - mean) + c over the `count` values at i (count < n: zero-padded).
  const auto value = [&](int64_t i, size_t count) {
    V g = LoadTail(d, dy + i, count);
    if constexpr (kRelu)
      g = hn::IfThenElseZero(hn::Gt(LoadTail(d, relu_y + i, count), hn::Zero(d)), g);
    return hn::MulAdd(a, g, hn::MulAdd(b, hn::Sub(LoadTail(d, x + i, count), mean), c));
  };
  int64_t i = 0;
  if constexpr (kStream) {
    i = std::min(len, HeadToAlign(d, dx));
    if (i > 0)
      hn::BlendedStore(value(0, static_cast<size_t>(i)), hn::FirstN(d, static_cast<size_t>(i)), d,
                       dx);
  }
  for (; i + n <= len; i += n) {
    const V g = Grad<kRelu>(d, hn::LoadU(d, dy + i), relu_y, i);
    const V xmu = hn::Sub(hn::LoadU(d, x + i), mean);
    StoreOut<kStream>(hn::MulAdd(a, g, hn::MulAdd(b, xmu, c)), d, dx + i);
  }
  if (i < len) {
    const size_t count = static_cast<size_t>(len - i);
    hn::BlendedStore(value(i, count), hn::FirstN(d, count), d, dx + i);
  }
}

void SpanGradInput(const float* x, const float* dy, const float* relu_y, float* dx, int64_t len,
                   float mean, float a, float b, float c, bool stream) {
  if (relu_y != nullptr) {
    stream ? SpanGradInputT<true, true>(x, dy, relu_y, dx, len, mean, a, b, c)
           : SpanGradInputT<true, false>(x, dy, relu_y, dx, len, mean, a, b, c);
  } else {
    stream ? SpanGradInputT<false, true>(x, dy, relu_y, dx, len, mean, a, b, c)
           : SpanGradInputT<false, false>(x, dy, relu_y, dx, len, mean, a, b, c);
  }
}

// Rows blocks: columns go across the lanes, rows down the loop. `count` lanes
// of each column vector are live (the last vector of a row may be partial).
// Rows of kVectors (1 or 2) whole vectors (a blocked16 unit, or narrow
// channels-last rows): sum[w] = sum over rows of (x[r, w] - x[0, w]) with the
// sums in registers, two rows at a time (two add chains), instead of a load
// and a store of the sums per row, whose store-to-load latency bounds such
// rows; wider rows keep the arrays (docs/performance.md, 'Kernel choices').
template <int kVectors>
HWY_INLINE void NarrowShiftedSums(D d, const float* x, int64_t rows, int64_t stride, float* sum) {
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  V base[kVectors], even[kVectors], odd[kVectors];
  for (int k = 0; k < kVectors; ++k) {
    base[k] = hn::LoadU(d, x + k * n);
    even[k] = odd[k] = hn::Zero(d);
  }
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2)
    for (int k = 0; k < kVectors; ++k) {
      even[k] = hn::Add(even[k], hn::Sub(hn::LoadU(d, x + r * stride + k * n), base[k]));
      odd[k] = hn::Add(odd[k], hn::Sub(hn::LoadU(d, x + (r + 1) * stride + k * n), base[k]));
    }
  if (r < rows)
    for (int k = 0; k < kVectors; ++k)
      even[k] = hn::Add(even[k], hn::Sub(hn::LoadU(d, x + r * stride + k * n), base[k]));
  for (int k = 0; k < kVectors; ++k) hn::Store(hn::Add(even[k], odd[k]), d, sum + k * n);
}

// The rows' grad sums for rows of kVectors whole vectors, in registers as
// NarrowShiftedSums: s[w] = sum g, p[w] = sum g * (x - mean[w]).
template <bool kRelu, int kVectors>
HWY_INLINE void NarrowGradSums(D d, const float* x, const float* dy, const float* relu_y,
                               int64_t rows, int64_t stride, const float* mean_p, float* s,
                               float* p) {
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  V mean[kVectors], s0[kVectors], s1[kVectors], p0[kVectors], p1[kVectors];
  for (int k = 0; k < kVectors; ++k) {
    mean[k] = hn::LoadU(d, mean_p + k * n);
    s0[k] = s1[k] = p0[k] = p1[k] = hn::Zero(d);
  }
  const auto add_row = [&](int64_t row, V* sk, V* pk) {
    for (int k = 0; k < kVectors; ++k) {
      const int64_t i = row + k * n;
      const V g = Grad<kRelu>(d, hn::LoadU(d, dy + i), relu_y, i);
      sk[k] = hn::Add(sk[k], g);
      pk[k] = hn::MulAdd(g, hn::Sub(hn::LoadU(d, x + i), mean[k]), pk[k]);
    }
  };
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    add_row(r * stride, s0, p0);
    add_row((r + 1) * stride, s1, p1);
  }
  if (r < rows) add_row(r * stride, s0, p0);
  for (int k = 0; k < kVectors; ++k) {
    hn::Store(hn::Add(s0[k], s1[k]), d, s + k * n);
    hn::Store(hn::Add(p0[k], p1[k]), d, p + k * n);
  }
}

void RowsMoments(const float* x, int64_t rows, int64_t stride, int64_t width, double* mean_out,
                 double* m2_out) {
  const D d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  // Pass 1, row by row so that memory is read in order (the pass that goes to
  // DRAM): shifted sums per column, shift = the block's first row.
  alignas(64) float sum[kRowsMaxWidth + kMaxLanes];
  if (width == n) {
    NarrowShiftedSums<1>(d, x, rows, stride, sum);
  } else if (width == 2 * n) {
    NarrowShiftedSums<2>(d, x, rows, stride, sum);
  } else {
    ShiftedRowSums(d, x, rows, stride, width, sum);  // register_sums-inl.h
  }
  // Pass 2, from L1 or L2: deviations from the mean, one column vector at a
  // time (DeviationPass, register_sums-inl.h: several side by side were slower
  // from memory, docs/performance.md 'Kernel choices'). When the rows are
  // contiguous, it prefetches the block that follows, two vectors an
  // iteration in memory order (in column order the prefetches were slower), so
  // that DRAM does not idle meanwhile.
  const bool prefetch = stride == width;
  int64_t ahead = rows * stride;  // the next value to prefetch, from x
  const auto prefetch_ahead = [&](int64_t count) {
    if (!prefetch) return;
    PrefetchRangeAhead(x, ahead, count);
    ahead += count;
  };
  DeviationPass<1, kRowsMaxWidth>(d, x, rows, stride, width, sum, prefetch_ahead, mean_out, m2_out);
}

// Row by row, so that memory is read and written in order; mean, scale and
// shift come from L1 (the caller's copies start on a cache line). Streams only
// when every row starts vector-aligned (RowsAligned): with a masked head the
// lines shared by row ends would be written both ways.
template <bool kStream>
void RowsNormalizeT(const float* x, float* y, int64_t rows, int64_t stride, int64_t width,
                    const float* mean, const float* scale, const float* shift, bool relu) {
  const D d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  // The `count` (< n) values at column w of row r, stored masked.
  const auto partial = [&](const float* xr, float* yr, int64_t w, size_t count) {
    const V v = Normalize(LoadTail(d, xr + w, count), LoadTail(d, mean + w, count),
                          LoadTail(d, scale + w, count), LoadTail(d, shift + w, count), relu, d);
    hn::BlendedStore(v, hn::FirstN(d, count), d, yr + w);
  };
  if (width == n) {
    // One vector per row: the per-column values in registers (see RowsGradInputT).
    const V m = hn::LoadU(d, mean), sc = hn::LoadU(d, scale), sf = hn::LoadU(d, shift);
    for (int64_t r = 0; r < rows; ++r)
      StoreOut<kStream>(Normalize(hn::LoadU(d, x + r * stride), m, sc, sf, relu, d), d,
                        y + r * stride);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * stride;
    float* yr = y + r * stride;
    int64_t w = 0;
    for (; w + n <= width; w += n) {
      const V v = Normalize(hn::LoadU(d, xr + w), hn::LoadU(d, mean + w), hn::LoadU(d, scale + w),
                            hn::LoadU(d, shift + w), relu, d);
      StoreOut<kStream>(v, d, yr + w);
    }
    if (w < width) partial(xr, yr, w, static_cast<size_t>(width - w));
  }
}

// Whether a contiguous rows block whose output is not vector-aligned can stream
// from its first vector boundary (rows_from_boundary.hpp).
HWY_INLINE bool StreamsFromBoundary(D d, const float* out, int64_t rows, int64_t stride,
                                    int64_t width) {
  return rows > 1 && stride == width && width <= kRowsMaxWidth && HeadToAlign(d, out) < width &&
         RowsAligned(d, out + HeadToAlign(d, out), stride);
}

void RowsNormalize(const float* x, float* y, int64_t rows, int64_t stride, int64_t width,
                   const float* mean, const float* scale, const float* shift, bool relu,
                   bool stream) {
  const D d;
  if (stream && RowsAligned(d, y, stride)) {
    RowsNormalizeT<true>(x, y, rows, stride, width, mean, scale, shift, relu);
  } else if (stream && StreamsFromBoundary(d, y, rows, stride, width)) {
    const int64_t head = HeadToAlign(d, y);
    const RotatedColumns<3, kRowsMaxWidth> p({mean, scale, shift}, width, head);
    rows_from_boundary(rows, width, head, [&](int64_t off, int64_t r, int64_t w, int64_t col,
                                              bool rot, bool streamed) {
      (streamed ? RowsNormalizeT<true> : RowsNormalizeT<false>)(
          x + off, y + off, r, stride, w, p.at(0, col, rot), p.at(1, col, rot), p.at(2, col, rot),
          relu);
    });
  } else {
    RowsNormalizeT<false>(x, y, rows, stride, width, mean, scale, shift, relu);
  }
}

// Row by row, so that memory is read in order; the per-column sums live in
// registers for rows of one or two vectors (NarrowGradSums) or of 4 or 8
// whole ones (register_sums-inl.h), else in L1 arrays (width <= kRowsMaxWidth).
template <bool kRelu>
void RowsGradSumsT(const float* x, const float* dy, const float* relu_y, int64_t rows,
                   int64_t stride, int64_t width, const float* mean_p, double* sum_dy,
                   double* sum_dy_xmu) {
  const D d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  alignas(64) float s[kRowsMaxWidth + kMaxLanes];
  alignas(64) float p[kRowsMaxWidth + kMaxLanes];
  // Rows of 4 or 8 whole vectors: the sums in registers.
  const auto grad_sums = [&]<int K>() {
    const auto g_and_xmu = [&](int64_t r, int k) {
      const int64_t i = r * stride + k * n;
      const V g = Grad<kRelu>(d, hn::LoadU(d, dy + i), relu_y, i);
      return std::pair{g, hn::Sub(hn::LoadU(d, x + i), hn::LoadU(d, mean_p + k * n))};
    };
    RegisterSumAndDot<K>(d, 0, rows, g_and_xmu, s, p);
  };
  if (width == n) {
    NarrowGradSums<kRelu, 1>(d, x, dy, relu_y, rows, stride, mean_p, s, p);
  } else if (width == 2 * n) {
    NarrowGradSums<kRelu, 2>(d, x, dy, relu_y, rows, stride, mean_p, s, p);
  } else if (!InRegisters<kRegisterSumsMax / 2>(WholeVectors(d, width), grad_sums)) {
    for (int64_t w = 0; w < width; w += n) {
      hn::Store(hn::Zero(d), d, s + w);
      hn::Store(hn::Zero(d), d, p + w);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = r * stride;
      int64_t w = 0;
      for (; w + n <= width; w += n) {
        const V g = Grad<kRelu>(d, hn::LoadU(d, dy + row + w), relu_y, row + w);
        const V xmu = hn::Sub(hn::LoadU(d, x + row + w), hn::LoadU(d, mean_p + w));
        hn::Store(hn::Add(hn::Load(d, s + w), g), d, s + w);
        hn::Store(hn::MulAdd(g, xmu, hn::Load(d, p + w)), d, p + w);
      }
      if (w < width) {
        const size_t count = static_cast<size_t>(width - w);
        V g = LoadTail(d, dy + row + w, count);  // zero past the end, so the products are too
        if constexpr (kRelu)
          g = hn::IfThenElseZero(hn::Gt(LoadTail(d, relu_y + row + w, count), hn::Zero(d)), g);
        const V xmu = hn::Sub(LoadTail(d, x + row + w, count), LoadTail(d, mean_p + w, count));
        hn::Store(hn::Add(hn::Load(d, s + w), g), d, s + w);
        hn::Store(hn::MulAdd(g, xmu, hn::Load(d, p + w)), d, p + w);
      }
    }
  }
  for (int64_t w = 0; w < width; ++w) {
    sum_dy[w] += s[w];
    sum_dy_xmu[w] += p[w];
  }
}

void RowsGradSums(const float* x, const float* dy, const float* relu_y, int64_t rows,
                  int64_t stride, int64_t width, const float* mean, double* sum_dy,
                  double* sum_dy_xmu) {
  if (relu_y != nullptr) {
    RowsGradSumsT<true>(x, dy, relu_y, rows, stride, width, mean, sum_dy, sum_dy_xmu);
  } else {
    RowsGradSumsT<false>(x, dy, relu_y, rows, stride, width, mean, sum_dy, sum_dy_xmu);
  }
}

// Row by row, so that memory is read and written in order; the per-column
// coefficients come from L1 (the caller's copies start on a cache line).
// Streams under the same condition as RowsNormalize.
template <bool kRelu, bool kStream>
void RowsGradInputT(const float* x, const float* dy, const float* relu_y, float* dx, int64_t rows,
                    int64_t stride, int64_t width, const float* mean_p, const float* a_p,
                    const float* b_p, const float* c_p) {
  const D d;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  // The `count` (< n) values at column w of the row at offset row, stored masked.
  const auto partial = [&](int64_t row, int64_t w, size_t count) {
    const int64_t i = row + w;
    V g = LoadTail(d, dy + i, count);
    if constexpr (kRelu)
      g = hn::IfThenElseZero(hn::Gt(LoadTail(d, relu_y + i, count), hn::Zero(d)), g);
    const V xmu = hn::Sub(LoadTail(d, x + i, count), LoadTail(d, mean_p + w, count));
    const V out = hn::MulAdd(LoadTail(d, a_p + w, count), g,
                             hn::MulAdd(LoadTail(d, b_p + w, count), xmu, LoadTail(d, c_p + w, count)));
    hn::BlendedStore(out, hn::FirstN(d, count), d, dx + i);
  };
  if (width == n) {
    // One vector per row (a blocked16 unit on AVX-512): the coefficients stay
    // in registers instead of four loads per row (the compiler cannot hoist
    // them past the stores to dx, which it must assume may alias them).
    const V mean = hn::LoadU(d, mean_p), a = hn::LoadU(d, a_p), b = hn::LoadU(d, b_p),
            c = hn::LoadU(d, c_p);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = r * stride;
      const V g = Grad<kRelu>(d, hn::LoadU(d, dy + row), relu_y, row);
      StoreOut<kStream>(hn::MulAdd(a, g, hn::MulAdd(b, hn::Sub(hn::LoadU(d, x + row), mean), c)),
                        d, dx + row);
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t row = r * stride;
    int64_t w = 0;
    for (; w + n <= width; w += n) {
      const V g = Grad<kRelu>(d, hn::LoadU(d, dy + row + w), relu_y, row + w);
      const V xmu = hn::Sub(hn::LoadU(d, x + row + w), hn::LoadU(d, mean_p + w));
      const V out = hn::MulAdd(hn::LoadU(d, a_p + w), g,
                               hn::MulAdd(hn::LoadU(d, b_p + w), xmu, hn::LoadU(d, c_p + w)));
      StoreOut<kStream>(out, d, dx + row + w);
    }
    if (w < width) partial(row, w, static_cast<size_t>(width - w));
  }
}

void RowsGradInput(const float* x, const float* dy, const float* relu_y, float* dx, int64_t rows,
                   int64_t stride, int64_t width, const float* mean, const float* a,
                   const float* b, const float* c, bool stream) {
  const D d;
  if (stream && !RowsAligned(d, dx, stride) && StreamsFromBoundary(d, dx, rows, stride, width)) {
    const int64_t head = HeadToAlign(d, dx);
    const RotatedColumns<4, kRowsMaxWidth> p({mean, a, b, c}, width, head);
    rows_from_boundary(rows, width, head, [&](int64_t off, int64_t r, int64_t w, int64_t col,
                                              bool rot, bool streamed) {
      RowsGradInput(x + off, dy + off, relu_y == nullptr ? nullptr : relu_y + off, dx + off, r,
                    stride, w, p.at(0, col, rot), p.at(1, col, rot), p.at(2, col, rot),
                    p.at(3, col, rot), streamed);
    });
    return;
  }
  stream = stream && RowsAligned(d, dx, stride);
  if (relu_y != nullptr) {
    stream ? RowsGradInputT<true, true>(x, dy, relu_y, dx, rows, stride, width, mean, a, b, c)
           : RowsGradInputT<true, false>(x, dy, relu_y, dx, rows, stride, width, mean, a, b, c);
  } else {
    stream ? RowsGradInputT<false, true>(x, dy, relu_y, dx, rows, stride, width, mean, a, b, c)
           : RowsGradInputT<false, false>(x, dy, relu_y, dx, rows, stride, width, mean, a, b, c);
  }
}

const BatchNormLoops* GetLoops() {
  static const BatchNormLoops loops{hwy::TargetName(HWY_TARGET),
                                    SpanMoments,
                                    SpanNormalize,
                                    SpanGradSums,
                                    SpanGradInput,
                                    RowsMoments,
                                    RowsNormalize,
                                    RowsGradSums,
                                    RowsGradInput,
                                    StoreFence};
  return &loops;
}

}  // namespace HWY_NAMESPACE
}  // namespace bnlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <vector>

#include "kernels/simd_targets.hpp"

namespace bnlab::kernels {

HWY_EXPORT(GetLoops);

namespace {
// The tables of every compiled target this CPU supports, best first.
const std::vector<const BatchNormLoops*>& supported_tables() {
  static const std::vector<const BatchNormLoops*> tables =
      simd_tables([] { return HWY_DYNAMIC_DISPATCH(GetLoops)(); });
  return tables;
}
}  // namespace

int simd_variant_count() { return static_cast<int>(supported_tables().size()); }
const BatchNormLoops* simd_loops(int index) { return supported_tables()[index]; }

}  // namespace bnlab::kernels
#endif  // HWY_ONCE
