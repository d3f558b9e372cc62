// Per-column sums over the rows of a rows block (channels-last and the like:
// columns across the lanes), kept in registers when a row is a few whole
// vectors: the per-column float arrays they replace cost a load and a store
// per vector and sum, which bound the walk from cache (docs/performance.md,
// 'Kernel choices'). Each column adds its rows in order, as the arrays did, so
// the results are the same bits. Shared by the Highway kernels
// (batch_norm_simd.cpp, bf16_convert_simd.cpp, group_norm_simd.cpp), included
// inside each file's per-target pass, hence the per-target include guard.
#if defined(BNLAB_KERNELS_REGISTER_SUMS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BNLAB_KERNELS_REGISTER_SUMS_INL_H_
#undef BNLAB_KERNELS_REGISTER_SUMS_INL_H_
#else
#define BNLAB_KERNELS_REGISTER_SUMS_INL_H_
#endif

#include <hwy/highway.h>

#include <algorithm>
#include <utility>

#include "kernels/load_tail-inl.h"

HWY_BEFORE_NAMESPACE();
namespace bnlab::kernels {
namespace HWY_NAMESPACE {

// The most column vectors whose sums fit in registers: 16 where the target has
// 32 vector registers (AVX-512), 8 where it has 16; half that for two sums.
#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX3
constexpr int64_t kRegisterSumsMax = 16;
#else
constexpr int64_t kRegisterSumsMax = 8;
#endif

// sum[k*lanes + l] = the sum over rows r in [r0, r1) of value(r, k)[l], for
// the kVectors column vectors k of a row.
template <int kVectors, class D, class Value>
HWY_INLINE void RegisterSums(D d, int64_t r0, int64_t r1, const Value& value,
                             hwy::HWY_NAMESPACE::TFromD<D>* sum) {
  namespace hn = hwy::HWY_NAMESPACE;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  hn::Vec<D> t[kVectors];
  for (int k = 0; k < kVectors; ++k) t[k] = hn::Zero(d);
  for (int64_t r = r0; r < r1; ++r) {
#pragma GCC unroll 16
    for (int k = 0; k < kVectors; ++k) t[k] = hn::Add(t[k], value(r, k));
  }
  for (int k = 0; k < kVectors; ++k) hn::Store(t[k], d, sum + k * lanes);
}

// With (u, v) = pair(r, k): s = sum of u and p = sum of u * v (a fused
// multiply-add per row), per column, over rows [r0, r1).
template <int kVectors, class D, class Pair>
HWY_INLINE void RegisterSumAndDot(D d, int64_t r0, int64_t r1, const Pair& pair,
                                  hwy::HWY_NAMESPACE::TFromD<D>* s,
                                  hwy::HWY_NAMESPACE::TFromD<D>* p) {
  namespace hn = hwy::HWY_NAMESPACE;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(d));
  hn::Vec<D> a[kVectors], b[kVectors];
  for (int k = 0; k < kVectors; ++k) a[k] = b[k] = hn::Zero(d);
  for (int64_t r = r0; r < r1; ++r) {
#pragma GCC unroll 8
    for (int k = 0; k < kVectors; ++k) {
      const auto [u, v] = pair(r, k);
      a[k] = hn::Add(a[k], u);
      b[k] = hn::MulAdd(u, v, b[k]);
    }
  }
  for (int k = 0; k < kVectors; ++k) {
    hn::Store(a[k], d, s + k * lanes);
    hn::Store(b[k], d, p + k * lanes);
  }
}

// The whole vectors of d in a row of `width` values; 0 when the row ends
// within a vector.
template <class D>
HWY_INLINE int64_t WholeVectors(D d, int64_t width) {
  const int64_t lanes = static_cast<int64_t>(hwy::HWY_NAMESPACE::Lanes(d));
  return width % lanes == 0 ? width / lanes : 0;
}

// Calls sums.template operator()<K>() for K = the row's `vectors` when its
// sums fit in registers (4, 8 or 16 vectors, at most kMost) and returns true;
// else false, for the caller's arrays.
template <int64_t kMost, class Sums>
HWY_INLINE bool InRegisters(int64_t vectors, const Sums& sums) {
  if constexpr (kMost >= 4) {
    if (vectors == 4) return sums.template operator()<4>(), true;
  }
  if constexpr (kMost >= 8) {
    if (vectors == 8) return sums.template operator()<8>(), true;
  }
  if constexpr (kMost >= 16) {
    if (vectors == 16) return sums.template operator()<16>(), true;
  }
  return false;
}

// The first pass of the float rows moments: sum[w] = the sum over rows r of
// x[r*stride + w] - x[w] (shifted by row 0), in registers on rows of 4, 8 or
// 16 whole vectors, else in `sum` itself, zeroed here, row by row (a masked
// tail where the row ends within a vector). Both add each column's rows in
// order, so the results are the same bits.
HWY_INLINE void ShiftedRowSums(hwy::HWY_NAMESPACE::ScalableTag<float> d, const float* x,
                               int64_t rows, int64_t stride, int64_t width, float* sum) {
  namespace hn = hwy::HWY_NAMESPACE;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  const auto in_registers = [&]<int K>() {
    const auto shifted = [&](int64_t r, int k) {
      return hn::Sub(hn::LoadU(d, x + r * stride + k * n), hn::LoadU(d, x + k * n));
    };
    RegisterSums<K>(d, 0, rows, shifted, sum);
  };
  if (InRegisters<kRegisterSumsMax>(WholeVectors(d, width), in_registers)) return;
  for (int64_t w = 0; w < width; w += n) hn::Store(hn::Zero(d), d, sum + w);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * stride;
    int64_t w = 0;
    for (; w + n <= width; w += n) {
      const auto v = hn::Sub(hn::LoadU(d, xr + w), hn::LoadU(d, x + w));
      hn::Store(hn::Add(hn::Load(d, sum + w), v), d, sum + w);
    }
    if (w < width) {
      const size_t count = static_cast<size_t>(width - w);
      const auto v = hn::Sub(LoadTail(d, xr + w, count), LoadTail(d, x + w, count));
      hn::Store(hn::Add(hn::Load(d, sum + w), v), d, sum + w);
    }
  }
}

// Column vectors the second pass of the float rows moments walks side by side:
// five registers each (the mean and two chains of two sums).
constexpr int kDeviationColumns = static_cast<int>(kRegisterSumsMax / 4);

// The second pass of the float rows moments for the kVectors whole column
// vectors at x: dev and dev2 = the sums over the rows of x - mean and of its
// square. Each column adds its even and its odd rows in two chains, as the
// one-column walk does, so the bits are the same; walking the columns side by
// side reads each row's kVectors vectors together and keeps 4 * kVectors adds
// in flight, where one column's walk waits on its add latency.
// ahead(k) is called once a row pair with the values read per row pair.
template <int kVectors, class Ahead>
HWY_INLINE void DeviationColumnSums(hwy::HWY_NAMESPACE::ScalableTag<float> d, const float* x,
                                    int64_t rows, int64_t stride, const float* mean, float* dev,
                                    float* dev2, const Ahead& ahead) {
  namespace hn = hwy::HWY_NAMESPACE;
  using V = hn::Vec<decltype(d)>;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  V m[kVectors], a0[kVectors], a1[kVectors], q0[kVectors], q1[kVectors];
  for (int k = 0; k < kVectors; ++k) {
    m[k] = hn::LoadU(d, mean + k * n);
    a0[k] = a1[k] = q0[k] = q1[k] = hn::Zero(d);
  }
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    ahead(2 * kVectors * n);
#pragma GCC unroll 4
    for (int k = 0; k < kVectors; ++k) {
      const V d0 = hn::Sub(hn::LoadU(d, x + r * stride + k * n), m[k]);
      const V d1 = hn::Sub(hn::LoadU(d, x + (r + 1) * stride + k * n), m[k]);
      a0[k] = hn::Add(a0[k], d0);
      a1[k] = hn::Add(a1[k], d1);
      q0[k] = hn::MulAdd(d0, d0, q0[k]);
      q1[k] = hn::MulAdd(d1, d1, q1[k]);
    }
  }
  if (r < rows) {
    for (int k = 0; k < kVectors; ++k) {
      const V d0 = hn::Sub(hn::LoadU(d, x + r * stride + k * n), m[k]);
      a0[k] = hn::Add(a0[k], d0);
      q0[k] = hn::MulAdd(d0, d0, q0[k]);
    }
  }
  for (int k = 0; k < kVectors; ++k) {
    hn::StoreU(hn::Add(a0[k], a1[k]), d, dev + k * n);
    hn::StoreU(hn::Add(q0[k], q1[k]), d, dev2 + k * n);
  }
}

// The second pass of the float rows moments over a block's `width` columns:
// dev and dev2 = the per-column sums of x - mean and of its square, the whole
// column vectors kSide side by side, the rest one column vector at a time,
// masked past the row's end (mean holds zeros from width to the next vector).
// ahead as in DeviationColumnSums.
template <int kSide, class Ahead>
HWY_INLINE void DeviationSums(hwy::HWY_NAMESPACE::ScalableTag<float> d, const float* x,
                              int64_t rows, int64_t stride, int64_t width, const float* mean,
                              float* dev, float* dev2, const Ahead& ahead) {
  namespace hn = hwy::HWY_NAMESPACE;
  using V = hn::Vec<decltype(d)>;
  const int64_t n = static_cast<int64_t>(hn::Lanes(d));
  int64_t w = 0;
  for (; kSide > 1 && w + kSide * n <= width; w += kSide * n)
    DeviationColumnSums<kSide>(d, x + w, rows, stride, mean + w, dev + w, dev2 + w, ahead);
  for (; w < width; w += n) {
    const size_t count = static_cast<size_t>(std::min(n, width - w));
    const auto live = hn::FirstN(d, count);
    const V m = hn::LoadU(d, mean + w);
    const auto deviation = [&](int64_t r) {
      return hn::IfThenElseZero(live, hn::Sub(LoadTail(d, x + r * stride + w, count), m));
    };
    V a0 = hn::Zero(d), a1 = hn::Zero(d), q0 = hn::Zero(d), q1 = hn::Zero(d);
    int64_t r = 0;
    for (; r + 2 <= rows; r += 2) {
      ahead(2 * n);
      const V d0 = deviation(r), d1 = deviation(r + 1);
      a0 = hn::Add(a0, d0);
      a1 = hn::Add(a1, d1);
      q0 = hn::MulAdd(d0, d0, q0);
      q1 = hn::MulAdd(d1, d1, q1);
    }
    if (r < rows) {
      const V d0 = deviation(r);
      a0 = hn::Add(a0, d0);
      q0 = hn::MulAdd(d0, d0, q0);
    }
    hn::StoreU(hn::Add(a0, a1), d, dev + w);
    hn::StoreU(hn::Add(q0, q1), d, dev2 + w);
  }
}

// The second pass of the float rows moments, whole, from the first pass's
// per-column sums of the rows shifted by row 0 (sum[w]): the float mean
// x[w] + sum[w] / rows, the deviations from it (DeviationSums, kSide as
// there), then mean_out[w] and m2_out[w] in double. width <= kMaxWidth.
template <int kSide, int64_t kMaxWidth, class Ahead>
HWY_INLINE void DeviationPass(hwy::HWY_NAMESPACE::ScalableTag<float> d, const float* x,
                              int64_t rows, int64_t stride, int64_t width, const float* sum,
                              const Ahead& ahead, double* mean_out, double* m2_out) {
  const int64_t n = static_cast<int64_t>(hwy::HWY_NAMESPACE::Lanes(d));
  alignas(64) float mean[kMaxWidth + kMaxLanes];
  alignas(64) float dev[kMaxWidth + kMaxLanes];
  alignas(64) float dev2[kMaxWidth + kMaxLanes];
  const double inv_rows = 1.0 / static_cast<double>(rows);
  for (int64_t w = 0; w < width; ++w)
    mean[w] = static_cast<float>(x[w] + static_cast<double>(sum[w]) * inv_rows);
  std::fill(mean + width, mean + width + n, 0.0f);
  DeviationSums<kSide>(d, x, rows, stride, width, mean, dev, dev2, ahead);
  for (int64_t w = 0; w < width; ++w) {
    const double s = dev[w], s2 = dev2[w];
    mean_out[w] = mean[w] + s * inv_rows;
    m2_out[w] = std::max(s2 - s * s * inv_rows, 0.0);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace bnlab::kernels
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
