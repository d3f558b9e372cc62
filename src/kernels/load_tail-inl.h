// Shared by the Highway kernels (batch_norm_simd.cpp, max_pool2d.cpp):
// included inside each file's per-target pass, so it has Highway's
// per-target include guard instead of #pragma once.
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

}  // namespace HWY_NAMESPACE
}  // namespace bnlab::kernels
HWY_AFTER_NAMESPACE();

#endif  // per-target include guard
