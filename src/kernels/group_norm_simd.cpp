// The GroupNorm/LayerNorm loops in vectors, written once with Google Highway
// and compiled for each x86 instruction set (AVX-512, AVX2, SSE4, ...);
// group_norm.cpp picks the best the CPU runs. Each function computes what its
// twin in group_norm_plain.cpp computes, lane by lane (contracts in
// group_norm_loops.hpp). Tails shorter than a vector go through zero-padded
// loads and masked stores.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/group_norm_simd.cpp"
#include <hwy/cache_control.h>
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

#include <algorithm>

#include "kernels/group_norm_loops.hpp"
#include "kernels/rows_from_boundary.hpp"
#include "kernels/load_tail-inl.h"
#include "kernels/register_sums-inl.h"

HWY_BEFORE_NAMESPACE();
namespace bnlab::kernels {
namespace HWY_NAMESPACE {
namespace {  // internal linkage: the batch-norm loops use some of the same names
namespace hn = hwy::HWY_NAMESPACE;

using D = hn::ScalableTag<float>;
using V = hn::Vec<D>;
// LoadTail, kMaxLanes, HeadToAlign, RowsAligned, PrefetchRangeAhead: kernels/load_tail-inl.h.

HWY_INLINE int64_t Lanes(D d) { return static_cast<int64_t>(hn::Lanes(d)); }
HWY_INLINE float Sum(D d, V v) { return hn::GetLane(hn::SumOfLanes(d, v)); }

// The `count` values at p (a whole vector when count reaches one), zeros past them.
HWY_INLINE V LoadN(D d, const float* p, int64_t count) {
  return count >= Lanes(d) ? hn::LoadU(d, p) : LoadTail(d, p, static_cast<size_t>(count));
}

// Stores the first `count` lanes of v at p (all of them when count reaches a vector).
HWY_INLINE void StoreN(D d, V v, float* p, int64_t count) {
  if (count >= Lanes(d)) {
    hn::StoreU(v, d, p);
  } else {
    hn::BlendedStore(v, hn::FirstN(d, static_cast<size_t>(count)), d, p);
  }
}

// Stores a whole vector: non-temporal (p vector-aligned) or plain.
template <bool kStream>
HWY_INLINE void StoreOut(D d, V v, float* p) {
  if constexpr (kStream) {
    hn::Stream(v, d, p);
  } else {
    hn::StoreU(v, d, p);
  }
}

// Writes out[i] = value(i, count) over [0, len) a vector at a time: with
// kStream, a masked head up to the first aligned vector, streamed vectors,
// then a masked tail.
template <bool kStream, class Value>
HWY_INLINE void WriteSpan(D d, float* out, int64_t len, const Value& value) {
  const int64_t n = Lanes(d);
  int64_t i = 0;
  if constexpr (kStream) {
    i = std::min(len, HeadToAlign(d, out));
    if (i > 0) StoreN(d, value(0, i), out, i);
  }
  for (; i + n <= len; i += n) StoreOut<kStream>(d, value(i, n), out + i);
  if (i < len) StoreN(d, value(i, len - i), out + i, len - i);
}

// Orders this thread's streaming stores before whatever follows (the
// caller's barrier, then other threads' reads).
void StoreFence() { hwy::FlushStream(); }

NormMoments SpanMoments(const float* x, int64_t len) {
  const D d;
  const int64_t n = Lanes(d);
  // Pass 1: the sum shifted by x[0]; four accumulators keep the adds independent.
  const V shift = hn::Set(d, x[0]);
  V s0 = hn::Zero(d), s1 = hn::Zero(d), s2 = hn::Zero(d), s3 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 4 * n <= len; i += 4 * n) {
    s0 = hn::Add(s0, hn::Sub(hn::LoadU(d, x + i), shift));
    s1 = hn::Add(s1, hn::Sub(hn::LoadU(d, x + i + n), shift));
    s2 = hn::Add(s2, hn::Sub(hn::LoadU(d, x + i + 2 * n), shift));
    s3 = hn::Add(s3, hn::Sub(hn::LoadU(d, x + i + 3 * n), shift));
  }
  for (; i < len; i += n) {
    const auto live = hn::FirstN(d, static_cast<size_t>(std::min(n, len - i)));
    s0 = hn::Add(s0, hn::IfThenElseZero(live, hn::Sub(LoadN(d, x + i, len - i), shift)));
  }
  const float sum = Sum(d, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3)));
  const float mean_f = static_cast<float>(x[0] + static_cast<double>(sum) / len);
  // Pass 2, from L1: deviations and squared deviations, the squares moved to a
  // double every kSquareChain pairs of vectors (no float chain grows long). It
  // prefetches the len values that follow, so that DRAM does not idle meanwhile.
  const V mean = hn::Set(d, mean_f);
  V a0 = hn::Zero(d), a1 = hn::Zero(d), q0 = hn::Zero(d), q1 = hn::Zero(d);
  double dev2 = 0.0;
  i = 0;
  for (int64_t k = 1; i + 2 * n <= len; i += 2 * n, ++k) {
    PrefetchRangeAhead(x, len + i, 2 * n);
    const V d0 = hn::Sub(hn::LoadU(d, x + i), mean);
    const V d1 = hn::Sub(hn::LoadU(d, x + i + n), mean);
    a0 = hn::Add(a0, d0);
    a1 = hn::Add(a1, d1);
    q0 = hn::MulAdd(d0, d0, q0);
    q1 = hn::MulAdd(d1, d1, q1);
    if (k % kSquareChain == 0) {
      dev2 += Sum(d, hn::Add(q0, q1));
      q0 = q1 = hn::Zero(d);
    }
  }
  for (; i < len; i += n) {
    const auto live = hn::FirstN(d, static_cast<size_t>(std::min(n, len - i)));
    const V d0 = hn::IfThenElseZero(live, hn::Sub(LoadN(d, x + i, len - i), mean));
    a0 = hn::Add(a0, d0);
    q0 = hn::MulAdd(d0, d0, q0);
  }
  const double dev = Sum(d, hn::Add(a0, a1));
  dev2 += Sum(d, hn::Add(q0, q1));
  return {mean_f + dev / len, std::max(dev2 - dev * dev / len, 0.0)};
}

void SpanNormalize(const float* x, float* y, int64_t len, float mean_s, float scale_s,
                   float shift_s, bool stream) {
  const D d;
  const V mean = hn::Set(d, mean_s), scale = hn::Set(d, scale_s), shift = hn::Set(d, shift_s);
  const auto value = [&](int64_t i, int64_t count) {
    return hn::MulAdd(hn::Sub(LoadN(d, x + i, count), mean), scale, shift);
  };
  stream ? WriteSpan<true>(d, y, len, value) : WriteSpan<false>(d, y, len, value);
}

void SpanNormalizeAffine(const float* x, float* y, int64_t len, float mean_s, float invstd_s,
                         float xhat_shift_s, const float* w, const float* b, bool stream) {
  const D d;
  const V mean = hn::Set(d, mean_s), invstd = hn::Set(d, invstd_s);
  const V xhat_shift = hn::Set(d, xhat_shift_s);
  const auto value = [&](int64_t i, int64_t count) {
    const V xhat = hn::MulAdd(hn::Sub(LoadN(d, x + i, count), mean), invstd, xhat_shift);
    return hn::MulAdd(xhat, LoadN(d, w + i, count), LoadN(d, b + i, count));
  };
  stream ? WriteSpan<true>(d, y, len, value) : WriteSpan<false>(d, y, len, value);
}

// g = dy, or dy * w when kWeighted, of the `count` values at i (w is only
// offset when weighted: it is null otherwise).
template <bool kWeighted>
HWY_INLINE V Grad(D d, const float* dy, const float* w, int64_t i, int64_t count) {
  const V g = LoadN(d, dy + i, count);
  if constexpr (kWeighted) {
    return hn::Mul(g, LoadN(d, w + i, count));
  } else {
    return g;
  }
}

template <bool kWeighted>
void SpanGradSumsT(const float* x, const float* dy, const float* w, int64_t len, float mean_s,
                   double* sum_g, double* sum_g_xmu) {
  const D d;
  const int64_t n = Lanes(d);
  const V mean = hn::Set(d, mean_s);
  V s0 = hn::Zero(d), s1 = hn::Zero(d), p0 = hn::Zero(d), p1 = hn::Zero(d);
  int64_t i = 0;
  for (; i + 2 * n <= len; i += 2 * n) {
    const V g0 = Grad<kWeighted>(d, dy, w, i, n);
    const V g1 = Grad<kWeighted>(d, dy, w, i + n, n);
    s0 = hn::Add(s0, g0);
    s1 = hn::Add(s1, g1);
    p0 = hn::MulAdd(g0, hn::Sub(hn::LoadU(d, x + i), mean), p0);
    p1 = hn::MulAdd(g1, hn::Sub(hn::LoadU(d, x + i + n), mean), p1);
  }
  for (; i < len; i += n) {
    const V g = Grad<kWeighted>(d, dy, w, i, len - i);  // zero past the end
    s0 = hn::Add(s0, g);
    p0 = hn::MulAdd(g, hn::Sub(LoadN(d, x + i, len - i), mean), p0);
  }
  *sum_g += Sum(d, hn::Add(s0, s1));
  *sum_g_xmu += Sum(d, hn::Add(p0, p1));
}

void SpanGradSums(const float* x, const float* dy, const float* w, int64_t len, float mean,
                  double* sum_g, double* sum_g_xmu) {
  if (w != nullptr) {
    SpanGradSumsT<true>(x, dy, w, len, mean, sum_g, sum_g_xmu);
  } else {
    SpanGradSumsT<false>(x, dy, w, len, mean, sum_g, sum_g_xmu);
  }
}

template <bool kWeighted>
void SpanGradInputT(const float* x, const float* dy, const float* w, float* dx, int64_t len,
                    float mean_s, float a_s, float b_s, float c_s, bool stream) {
  const D d;
  const V mean = hn::Set(d, mean_s), a = hn::Set(d, a_s), b = hn::Set(d, b_s), c = hn::Set(d, c_s);
  const auto value = [&](int64_t i, int64_t count) {
    const V g = Grad<kWeighted>(d, dy, w, i, count);
    return hn::MulAdd(a, g, hn::MulAdd(b, hn::Sub(LoadN(d, x + i, count), mean), c));
  };
  stream ? WriteSpan<true>(d, dx, len, value) : WriteSpan<false>(d, dx, len, value);
}

void SpanGradInput(const float* x, const float* dy, const float* w, float* dx, int64_t len,
                   float mean, float a, float b, float c, bool stream) {
  if (w != nullptr) {
    SpanGradInputT<true>(x, dy, w, dx, len, mean, a, b, c, stream);
  } else {
    SpanGradInputT<false>(x, dy, w, dx, len, mean, a, b, c, stream);
  }
}

// Rows blocks: columns across the lanes.
// Pass 1 goes row by row, so that memory is read in order (the pass that
// goes to DRAM), its sums in registers on rows of 4, 8 or 16 whole vectors
// (register_sums-inl.h), else in an L1 array; pass 2 walks a few column
// vectors side by side down the block (from L2), its sums in registers.
void RowsMoments(const float* x, int64_t rows, int64_t stride, int64_t width, double* mean_out,
                 double* m2_out) {
  const D d;
  const int64_t n = Lanes(d);
  alignas(64) float sum[kNormMaxWidth + kMaxLanes];
  if (width <= 2 * n) {
    // One or two vectors per row (a blocked16 unit): down each column in
    // registers, two add chains, which is memory order when rows are contiguous
    // and avoids a store-to-load chain through the array per row.
    for (int64_t w = 0; w < width; w += n) {
      const int64_t count = std::min(n, width - w);
      const V base = LoadN(d, x + w, count);
      V e0 = hn::Zero(d), e1 = hn::Zero(d);
      int64_t r = 0;
      for (; r + 2 <= rows; r += 2) {
        e0 = hn::Add(e0, hn::Sub(LoadN(d, x + r * stride + w, count), base));
        e1 = hn::Add(e1, hn::Sub(LoadN(d, x + (r + 1) * stride + w, count), base));
      }
      if (r < rows) e0 = hn::Add(e0, hn::Sub(LoadN(d, x + r * stride + w, count), base));
      hn::Store(hn::Add(e0, e1), d, sum + w);
    }
  } else {
    ShiftedRowSums(d, x, rows, stride, width, sum);  // register_sums-inl.h
  }
  // Pass 2 (from L2): deviations from the float mean.
  DeviationPass<kDeviationColumns, kNormMaxWidth>(
      d, x, rows, stride, width, sum, [](int64_t) {}, mean_out, m2_out);
}

// Whether a contiguous rows block whose output is not vector-aligned can stream
// from its first vector boundary (rows_from_boundary.hpp).
HWY_INLINE bool StreamsFromBoundary(D d, const float* out, int64_t rows, int64_t stride,
                                    int64_t width) {
  return rows > 1 && stride == width && width <= kNormMaxWidth && HeadToAlign(d, out) < width &&
         RowsAligned(d, out + HeadToAlign(d, out), stride);
}

template <bool kStream>
void RowsNormalizeT(const float* x, float* y, int64_t rows, int64_t stride, int64_t width,
                    const float* mean, const float* scale, const float* shift) {
  const D d;
  const int64_t n = Lanes(d);
  if (width == n) {  // one vector per row (a blocked16 unit on AVX-512): coefficients in registers
    const V m = hn::LoadU(d, mean), sc = hn::LoadU(d, scale), sf = hn::LoadU(d, shift);
    for (int64_t r = 0; r < rows; ++r)
      StoreOut<kStream>(d, hn::MulAdd(hn::Sub(hn::LoadU(d, x + r * stride), m), sc, sf),
                        y + r * stride);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * stride;
    float* yr = y + r * stride;
    int64_t w = 0;
    for (; w + n <= width; w += n) {
      const V v = hn::MulAdd(hn::Sub(hn::LoadU(d, xr + w), hn::LoadU(d, mean + w)),
                             hn::LoadU(d, scale + w), hn::LoadU(d, shift + w));
      StoreOut<kStream>(d, v, yr + w);
    }
    if (w < width) {
      const int64_t count = width - w;
      const V v = hn::MulAdd(hn::Sub(LoadN(d, xr + w, count), LoadN(d, mean + w, count)),
                             LoadN(d, scale + w, count), LoadN(d, shift + w, count));
      StoreN(d, v, yr + w, count);
    }
  }
}

void RowsNormalize(const float* x, float* y, int64_t rows, int64_t stride, int64_t width,
                   const float* mean, const float* scale, const float* shift, bool stream) {
  const D d;
  if (stream && RowsAligned(d, y, stride)) {
    RowsNormalizeT<true>(x, y, rows, stride, width, mean, scale, shift);
  } else if (stream && StreamsFromBoundary(d, y, rows, stride, width)) {
    const int64_t head = HeadToAlign(d, y);
    const RotatedColumns<3, kNormMaxWidth> p({mean, scale, shift}, width, head);
    rows_from_boundary(rows, width, head, [&](int64_t off, int64_t r, int64_t w, int64_t col,
                                              bool rot, bool streamed) {
      RowsNormalize(x + off, y + off, r, stride, w, p.at(0, col, rot), p.at(1, col, rot),
                    p.at(2, col, rot), streamed);
    });
  } else {
    RowsNormalizeT<false>(x, y, rows, stride, width, mean, scale, shift);
  }
}

// Row by row, so that memory is read in order (this is the pass that goes to
// DRAM), the per-column sums in registers on rows of 4 or 8 whole vectors,
// else in L1 arrays: faster than walking down each column
// (docs/performance.md, 'Kernel choices').
void RowsGradSums(const float* x, const float* dy, int64_t rows, int64_t stride, int64_t width,
                  const float* mean_p, double* sum_dy, double* sum_dy_xmu) {
  const D d;
  const int64_t n = Lanes(d);
  alignas(64) float s[kNormMaxWidth + kMaxLanes];
  alignas(64) float p[kNormMaxWidth + kMaxLanes];
  // Rows of 4 or 8 whole vectors: the sums in registers.
  const auto grad_sums = [&]<int K>() {
    const auto g_and_xmu = [&](int64_t r, int k) {
      const int64_t i = r * stride + k * n;
      return std::pair{hn::LoadU(d, dy + i),
                       hn::Sub(hn::LoadU(d, x + i), hn::LoadU(d, mean_p + k * n))};
    };
    RegisterSumAndDot<K>(d, 0, rows, g_and_xmu, s, p);
  };
  if (width <= 2 * n) {
    // One or two vectors per row: down each column in registers (see RowsMoments).
    for (int64_t w = 0; w < width; w += n) {
      const int64_t count = std::min(n, width - w);
      const V mean = LoadN(d, mean_p + w, count);
      V s0 = hn::Zero(d), s1 = hn::Zero(d), p0 = hn::Zero(d), p1 = hn::Zero(d);
      int64_t r = 0;
      for (; r + 2 <= rows; r += 2) {
        const int64_t i0 = r * stride + w, i1 = i0 + stride;
        const V g0 = LoadN(d, dy + i0, count), g1 = LoadN(d, dy + i1, count);
        s0 = hn::Add(s0, g0);
        s1 = hn::Add(s1, g1);
        p0 = hn::MulAdd(g0, hn::Sub(LoadN(d, x + i0, count), mean), p0);
        p1 = hn::MulAdd(g1, hn::Sub(LoadN(d, x + i1, count), mean), p1);
      }
      if (r < rows) {
        const int64_t i0 = r * stride + w;
        const V g0 = LoadN(d, dy + i0, count);
        s0 = hn::Add(s0, g0);
        p0 = hn::MulAdd(g0, hn::Sub(LoadN(d, x + i0, count), mean), p0);
      }
      hn::Store(hn::Add(s0, s1), d, s + w);
      hn::Store(hn::Add(p0, p1), d, p + w);
    }
  } else if (!InRegisters<kRegisterSumsMax / 2>(WholeVectors(d, width), grad_sums)) {
    for (int64_t w = 0; w < width; w += n) {
      hn::Store(hn::Zero(d), d, s + w);
      hn::Store(hn::Zero(d), d, p + w);
    }
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = r * stride;
      int64_t w = 0;
      for (; w + n <= width; w += n) {
        const V g = hn::LoadU(d, dy + row + w);
        const V xmu = hn::Sub(hn::LoadU(d, x + row + w), hn::LoadU(d, mean_p + w));
        hn::Store(hn::Add(hn::Load(d, s + w), g), d, s + w);
        hn::Store(hn::MulAdd(g, xmu, hn::Load(d, p + w)), d, p + w);
      }
      if (w < width) {
        const int64_t count = width - w;
        const V g = LoadN(d, dy + row + w, count);  // zero past count, so the products are too
        const V xmu = hn::Sub(LoadN(d, x + row + w, count), LoadN(d, mean_p + w, count));
        hn::Store(hn::Add(hn::Load(d, s + w), g), d, s + w);
        hn::Store(hn::MulAdd(g, xmu, hn::Load(d, p + w)), d, p + w);
      }
    }
  }
  for (int64_t k = 0; k < width; ++k) {
    sum_dy[k] += s[k];
    sum_dy_xmu[k] += p[k];
  }
}

template <bool kStream>
void RowsGradInputT(const float* x, const float* dy, float* dx, int64_t rows, int64_t stride,
                    int64_t width, const float* mean_p, const float* a_p, const float* b_p,
                    const float* c_p) {
  const D d;
  const int64_t n = Lanes(d);
  if (width == n) {  // one vector per row: coefficients in registers
    const V mean = hn::LoadU(d, mean_p), a = hn::LoadU(d, a_p), b = hn::LoadU(d, b_p),
            c = hn::LoadU(d, c_p);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r * stride;
      const V xmu = hn::Sub(hn::LoadU(d, x + i), mean);
      StoreOut<kStream>(d, hn::MulAdd(a, hn::LoadU(d, dy + i), hn::MulAdd(b, xmu, c)), dx + i);
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    int64_t w = 0;
    for (; w + n <= width; w += n) {
      const int64_t i = r * stride + w;
      const V xmu = hn::Sub(hn::LoadU(d, x + i), hn::LoadU(d, mean_p + w));
      const V out = hn::MulAdd(hn::LoadU(d, a_p + w), hn::LoadU(d, dy + i),
                               hn::MulAdd(hn::LoadU(d, b_p + w), xmu, hn::LoadU(d, c_p + w)));
      StoreOut<kStream>(d, out, dx + i);
    }
    if (w < width) {
      const int64_t i = r * stride + w, count = width - w;
      const V xmu = hn::Sub(LoadN(d, x + i, count), LoadN(d, mean_p + w, count));
      const V out = hn::MulAdd(LoadN(d, a_p + w, count), LoadN(d, dy + i, count),
                               hn::MulAdd(LoadN(d, b_p + w, count), xmu, LoadN(d, c_p + w, count)));
      StoreN(d, out, dx + i, count);
    }
  }
}

void RowsGradInput(const float* x, const float* dy, float* dx, int64_t rows, int64_t stride,
                   int64_t width, const float* mean, const float* a, const float* b, const float* c,
                   bool stream) {
  const D d;
  if (stream && RowsAligned(d, dx, stride)) {
    RowsGradInputT<true>(x, dy, dx, rows, stride, width, mean, a, b, c);
  } else if (stream && StreamsFromBoundary(d, dx, rows, stride, width)) {
    const int64_t head = HeadToAlign(d, dx);
    const RotatedColumns<4, kNormMaxWidth> p({mean, a, b, c}, width, head);
    rows_from_boundary(rows, width, head, [&](int64_t off, int64_t r, int64_t w, int64_t col,
                                              bool rot, bool streamed) {
      RowsGradInput(x + off, dy + off, dx + off, r, stride, w, p.at(0, col, rot),
                    p.at(1, col, rot), p.at(2, col, rot), p.at(3, col, rot), streamed);
    });
  } else {
    RowsGradInputT<false>(x, dy, dx, rows, stride, width, mean, a, b, c);
  }
}

// Row by row (each row's statistics broadcast once), the per-column sums in
// L1 arrays: independent adds across the columns, where a walk down each
// column chains every add on the one before.
void RowsAffineGradSums(const float* x, const float* dy, int64_t rows, int64_t stride,
                        int64_t width, const float* row_mean, const float* row_invstd,
                        int64_t stat_stride, double* sum_dy, double* sum_dy_xhat) {
  const D d;
  const int64_t n = Lanes(d);
  alignas(64) float s[kNormMaxWidth + kMaxLanes];
  alignas(64) float p[kNormMaxWidth + kMaxLanes];
  for (int64_t w = 0; w < width; w += n) {
    hn::Store(hn::Zero(d), d, s + w);
    hn::Store(hn::Zero(d), d, p + w);
  }
  // kRows rows from row r per load and store of the sums, added in row order
  // (the same bits as one row at a time, with a quarter of the sums' traffic).
  const auto add_rows = [&]<int kRows>(int64_t r) {
    V mean[kRows], invstd[kRows];
    for (int k = 0; k < kRows; ++k) {
      mean[k] = hn::Set(d, row_mean[(r + k) * stat_stride]);
      invstd[k] = hn::Set(d, row_invstd[(r + k) * stat_stride]);
    }
    for (int64_t w = 0; w < width; w += n) {
      const int64_t count = width - w;
      V sv = hn::Load(d, s + w), pv = hn::Load(d, p + w);
      for (int k = 0; k < kRows; ++k) {
        const int64_t i = (r + k) * stride + w;
        const V g = LoadN(d, dy + i, count);  // zero past count, so the products are too
        const V xhat = hn::Mul(hn::Sub(LoadN(d, x + i, count), mean[k]), invstd[k]);
        sv = hn::Add(sv, g);
        pv = hn::MulAdd(g, xhat, pv);
      }
      hn::Store(sv, d, s + w);
      hn::Store(pv, d, p + w);
    }
  };
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) add_rows.template operator()<4>(r);
  for (; r < rows; ++r) add_rows.template operator()<1>(r);
  for (int64_t k = 0; k < width; ++k) {
    sum_dy[k] += s[k];
    sum_dy_xhat[k] += p[k];
  }
}

const NormLoops* GetNormLoops() {
  static const NormLoops loops{hwy::TargetName(HWY_TARGET),
                               SpanMoments,
                               SpanNormalize,
                               SpanNormalizeAffine,
                               SpanGradSums,
                               SpanGradInput,
                               RowsMoments,
                               RowsNormalize,
                               RowsGradSums,
                               RowsGradInput,
                               RowsAffineGradSums,
                               StoreFence};
  return &loops;
}

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace bnlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <vector>

#include "kernels/simd_targets.hpp"

namespace bnlab::kernels {

HWY_EXPORT(GetNormLoops);

namespace {
// The tables of every compiled target this CPU supports, best first.
const std::vector<const NormLoops*>& supported_tables() {
  static const std::vector<const NormLoops*> tables =
      simd_tables([] { return HWY_DYNAMIC_DISPATCH(GetNormLoops)(); });
  return tables;
}
}  // namespace

int simd_norm_variant_count() { return static_cast<int>(supported_tables().size()); }
const NormLoops* simd_norm_loops(int index) { return supported_tables()[index]; }

}  // namespace bnlab::kernels
#endif  // HWY_ONCE
