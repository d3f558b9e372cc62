// Shared by the Highway kernels (batch_norm_simd.cpp, group_norm_simd.cpp,
// bf16_convert_simd.cpp, max_pool2d.cpp): included inside each file's
// per-target pass, so it has Highway's per-target include guard instead of
// #pragma once.
//
// LoadTail(d, p, count): the first count values at p (count below one vector;
// a whole vector when count reaches it), the other lanes zero. Highway 1.0's
// MaskedLoad on SSSE3/SSE4 is an aligned load of the whole vector: it faults
// on an unaligned p and reads past the end, so those targets copy instead.
#if defined(BNLAB_KERNELS_LOAD_TAIL_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef BNLAB_KERNELS_LOAD_TAIL_INL_H_
#undef BNLAB_KERNELS_LOAD_TAIL_INL_H_
#else
#define BNLAB_KERNELS_LOAD_TAIL_INL_H_
#endif

#include <hwy/cache_control.h>
#include <hwy/highway.h>

HWY_BEFORE_NAMESPACE();
namespace bnlab::kernels {
namespace HWY_NAMESPACE {

constexpr int64_t kMaxLanes = 64;  // more than any x86 vector holds; sizes the lane buffers

HWY_INLINE hwy::HWY_NAMESPACE::Vec<hwy::HWY_NAMESPACE::ScalableTag<float>> LoadTail(
    hwy::HWY_NAMESPACE::ScalableTag<float> d, const float* p, size_t count) {
  namespace hn = hwy::HWY_NAMESPACE;
#if HWY_TARGET == HWY_SSE4 || HWY_TARGET == HWY_SSSE3
  if (count >= hn::Lanes(d)) return hn::LoadU(d, p);
  alignas(64) float lanes[kMaxLanes] = {};
  for (size_t k = 0; k < count; ++k) lanes[k] = p[k];
  return hn::Load(d, lanes);
#else
  return hn::MaskedLoad(hn::FirstN(d, count), d, p);
#endif
}

// Values to write before p is aligned to one of d's vectors (streaming stores need it).
template <class D>
HWY_INLINE int64_t HeadToAlign(D d, const hwy::HWY_NAMESPACE::TFromD<D>* p) {
  using T = hwy::HWY_NAMESPACE::TFromD<D>;
  const size_t bytes = hwy::HWY_NAMESPACE::Lanes(d) * sizeof(T);
  const size_t misalign = reinterpret_cast<uintptr_t>(p) % bytes;
  return misalign == 0 ? 0 : static_cast<int64_t>((bytes - misalign) / sizeof(T));
}

// Whether every row of a rows block (rows `stride` values apart) starts
// vector-aligned, so that it can stream.
template <class D>
HWY_INLINE bool RowsAligned(D d, const hwy::HWY_NAMESPACE::TFromD<D>* p, int64_t stride) {
  return HeadToAlign(d, p) == 0 && stride % static_cast<int64_t>(hwy::HWY_NAMESPACE::Lanes(d)) == 0;
}

// Prefetches the line `values` past p, which may lie past the caller's
// arrays: the address is computed as an integer, and a prefetch never faults.
template <class T>
HWY_INLINE void PrefetchAhead(const T* p, int64_t values) {
  hwy::Prefetch(reinterpret_cast<const T*>(reinterpret_cast<uintptr_t>(p) +
                                           static_cast<uintptr_t>(values) * sizeof(T)));
}

// Prefetches the lines of the `count` values that start `from` values past p
// (count a multiple of a line's values, or below one line).
template <class T>
HWY_INLINE void PrefetchRangeAhead(const T* p, int64_t from, int64_t count) {
  constexpr int64_t kLineValues = 64 / sizeof(T);
  for (int64_t k = 0; k < count; k += kLineValues) PrefetchAhead(p, from + k);
}

}  // namespace HWY_NAMESPACE
}  // namespace bnlab::kernels
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
