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

}  // namespace HWY_NAMESPACE
}  // namespace bnlab::kernels
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
