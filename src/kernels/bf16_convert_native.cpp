// float -> bf16 with AVX512-BF16's VCVTNE2PS2BF16 / VCVTNEPS2BF16 (nearest,
// ties to even, NaN quieted, denormals to signed zero), compiled for that
// extension alone and chosen only on a CPU that reports it (Highway 1.0's
// DemoteTo truncates, and has no target for the extension).
#include <immintrin.h>

#include "kernels/bf16_convert.hpp"

namespace bnlab::kernels {
namespace {

#if defined(__x86_64__) && defined(__GNUC__)
#define BNLAB_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

BNLAB_BF16_TARGET void native_from_float(const float* in, uint16_t* out, int64_t count) {
  int64_t i = 0;
  for (; i + 32 <= count; i += 32) {
    const __m512bh pair = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(in + i + 16), _mm512_loadu_ps(in + i));
    _mm512_storeu_si512(out + i, reinterpret_cast<const __m512i&>(pair));
  }
  if (i < count) {  // up to 31 left: at most two masked halves
    for (; i < count; i += 16) {
      const int64_t left = count - i < 16 ? count - i : 16;
      const __mmask16 mask = static_cast<__mmask16>((1u << left) - 1u);
      const __m256bh half = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mask, in + i));
      _mm256_mask_storeu_epi16(out + i, mask, reinterpret_cast<const __m256i&>(half));
    }
  }
}

#endif

}  // namespace

const Bf16Conversions* native_bf16_conversions() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool has = __builtin_cpu_supports("avx512bf16") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  if (!has) return nullptr;
  // Widening is a shift, exact in every variant, and the fused normalize
  // loops work in registers: the best Highway variant's.
  const Bf16Conversions* rest =
      simd_bf16_variant_count() > 0 ? simd_bf16_conversions(0) : plain_bf16_conversions();
  static const Bf16Conversions native{"avx512_bf16",        rest->to_float,
                                      native_from_float,    rest->span_normalize,
                                      rest->rows_normalize, rest->span_grad_input,
                                      rest->rows_grad_input, rest->span_grad_sums,
                                      rest->rows_grad_sums,  rest->span_moments,
                                      rest->rows_moments};
  return &native;
#else
  return nullptr;
#endif
}

}  // namespace bnlab::kernels
