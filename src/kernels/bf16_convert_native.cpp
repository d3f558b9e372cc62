// float -> bf16 with AVX512-BF16's VCVTNE2PS2BF16 / VCVTNEPS2BF16 (nearest,
// ties to even, NaN quieted, denormals to signed zero), compiled for that
// extension alone and chosen only on a CPU that reports it (Highway 1.0's
// DemoteTo truncates, and has no target for the extension).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "kernels/bf16_convert.hpp"
#include "kernels/rows_from_boundary.hpp"

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

// 16 bf16 values at p (the first `count` of them, zeros past) widened to float.
BNLAB_BF16_TARGET inline __m512 widen16(const uint16_t* p, __mmask16 live) {
  // The zero-masked forms: GCC 12 warns on the plain ones' undefined vectors.
  const __m256i bits = _mm256_maskz_loadu_epi16(live, p);
  return _mm512_castsi512_ps(
      _mm512_maskz_slli_epi32(live, _mm512_maskz_cvtepu16_epi32(live, bits), 16));
}

// Rounds v to bf16 and writes the lanes in `live` at p: streamed when kStream
// and p is 32-byte aligned with every lane live, else a (masked) plain store.
template <bool kStream>
BNLAB_BF16_TARGET inline void store16(uint16_t* p, __m512 v, __mmask16 live) {
  const __m256bh h = _mm512_cvtneps_pbh(v);
  const __m256i bits = reinterpret_cast<const __m256i&>(h);
  if (kStream && live == 0xffff) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(p), bits);
  } else {
    _mm256_mask_storeu_epi16(p, live, bits);
  }
}

inline __mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16{0xffff} : static_cast<__mmask16>((1u << count) - 1u);
}

// Values to write before p is 32-byte aligned (streaming stores need it).
inline int64_t head_to_align(const uint16_t* p) {
  return static_cast<int64_t>((32 - reinterpret_cast<uintptr_t>(p) % 32) % 32 / 2);
}

// out[i] = f(i, live) for i in [0, len) 16 at a time: with kStream a masked
// head up to out's first 32-byte boundary, whole streamed vectors, a masked tail.
template <bool kStream, class F>
BNLAB_BF16_TARGET inline void write_span(uint16_t* out, int64_t len, const F& f) {
  int64_t i = kStream ? std::min(len, head_to_align(out)) : 0;
  if (i > 0) store16<false>(out, f(0, first_lanes(i)), first_lanes(i));
  for (; i + 16 <= len; i += 16) store16<kStream>(out + i, f(i, __mmask16{0xffff}), 0xffff);
  if (i < len) store16<false>(out + i, f(i, first_lanes(len - i)), first_lanes(len - i));
}

// The same operations, in the same order, as the Highway loops
// (bf16_convert_simd.cpp), so every variant gives the same bits. (Functors,
// not lambdas: a lambda does not take its function's target attribute.)
// The fused ReLU's rules (the fp32 kernels'): v below zero becomes zero (NaN
// kept: "not less than" is true for it); the gradient passes where the
// ReLU's output is above zero.
BNLAB_BF16_TARGET inline __m512 relu_if(__m512 v, bool relu) {
  return relu ? _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NLT_UQ), v)
              : v;
}
BNLAB_BF16_TARGET inline __m512 grad_if(__m512 dy, const uint16_t* relu_y, __mmask16 live) {
  if (relu_y == nullptr) return dy;
  const __m512 y = widen16(relu_y, live);
  return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GT_OQ), dy);
}

struct NormalizeAt {
  const uint16_t* x;
  __m512 m, sc, sh;
  bool relu;
  BNLAB_BF16_TARGET __m512 operator()(int64_t i, __mmask16 live) const {
    return relu_if(_mm512_fmadd_ps(_mm512_sub_ps(widen16(x + i, live), m), sc, sh), relu);
  }
};

struct GradInputAt {
  const uint16_t *x, *dy, *relu_y;
  __m512 m, va, vb, vc;
  BNLAB_BF16_TARGET __m512 operator()(int64_t i, __mmask16 live) const {
    const __m512 g = grad_if(widen16(dy + i, live), relu_y == nullptr ? nullptr : relu_y + i, live);
    return _mm512_fmadd_ps(va, g, _mm512_fmadd_ps(vb, _mm512_sub_ps(widen16(x + i, live), m), vc));
  }
};

BNLAB_BF16_TARGET void native_span_normalize(const uint16_t* x, uint16_t* y, int64_t len,
                                             float mean, float scale, float shift, bool relu,
                                             bool stream) {
  const NormalizeAt f{x, _mm512_set1_ps(mean), _mm512_set1_ps(scale), _mm512_set1_ps(shift),
                      relu};
  if (stream) {
    write_span<true>(y, len, f);
  } else {
    write_span<false>(y, len, f);
  }
}

BNLAB_BF16_TARGET void native_span_grad_input(const uint16_t* x, const uint16_t* dy,
                                              const uint16_t* relu_y, uint16_t* dx, int64_t len,
                                              float mean, float a, float b, float c, bool stream) {
  const GradInputAt f{x, dy, relu_y, _mm512_set1_ps(mean), _mm512_set1_ps(a), _mm512_set1_ps(b),
                      _mm512_set1_ps(c)};
  if (stream) {
    write_span<true>(dx, len, f);
  } else {
    write_span<false>(dx, len, f);
  }
}

// Rows stream when every row of the block starts 32-byte aligned: width a
// multiple of 16, and the output aligned or, for a block of up to
// kRotatedWidth columns, from its first boundary on (rows_from_boundary.hpp).
constexpr int64_t kRotatedWidth = 1024;

enum class RowsStream { no, aligned, from_boundary };
inline RowsStream rows_stream(bool stream, const uint16_t* out, int64_t rows, int64_t width) {
  if (!stream || width % 16 != 0) return RowsStream::no;
  if (head_to_align(out) == 0) return RowsStream::aligned;
  return rows > 1 && width <= kRotatedWidth ? RowsStream::from_boundary : RowsStream::no;
}

// Each row's whole vectors with a constant full mask, which the compiler
// folds away, then a masked tail: masked bf16 loads in the loop itself took
// 2.5x the time on Zen 5 (docs/performance.md, 'bf16 kernels').
// Rows of one vector (blocked16 units) keep the per-column values in
// registers instead: the compiler cannot hoist their loads past the stores,
// whose vector type may alias them.
template <bool kStream, class Vector>
BNLAB_BF16_TARGET inline void for_row_vectors(int64_t rows, int64_t width, const Vector& vector) {
  if (width == 16) {
    vector.template one_vector_rows<kStream>(rows);
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * width;
    int64_t w = 0;
    for (; w + 16 <= width; w += 16) vector.template operator()<kStream>(o, w, __mmask16{0xffff});
    if (w < width) vector.template operator()<false>(o, w, first_lanes(width - w));
  }
}

struct NormalizeRow {
  const uint16_t* x;
  uint16_t* y;
  const float *mean, *scale, *shift;
  bool relu;
  template <bool kStream>
  BNLAB_BF16_TARGET void operator()(int64_t o, int64_t w, __mmask16 live) const {
    const __m512 v = _mm512_fmadd_ps(
        _mm512_sub_ps(widen16(x + o + w, live), _mm512_maskz_loadu_ps(live, mean + w)),
        _mm512_maskz_loadu_ps(live, scale + w), _mm512_maskz_loadu_ps(live, shift + w));
    store16<kStream>(y + o + w, relu_if(v, relu), live);
  }
  template <bool kStream>
  BNLAB_BF16_TARGET void one_vector_rows(int64_t rows) const {
    const __m512 m = _mm512_loadu_ps(mean), sc = _mm512_loadu_ps(scale), sh = _mm512_loadu_ps(shift);
    for (int64_t o = 0; o < 16 * rows; o += 16) {
      const __m512 v = _mm512_fmadd_ps(_mm512_sub_ps(widen16(x + o, 0xffff), m), sc, sh);
      store16<kStream>(y + o, relu_if(v, relu), 0xffff);
    }
  }
};

template <bool kStream>
BNLAB_BF16_TARGET void rows_normalize_t(const uint16_t* x, uint16_t* y, int64_t rows,
                                        int64_t width, const float* mean, const float* scale,
                                        const float* shift, bool relu) {
  for_row_vectors<kStream>(rows, width, NormalizeRow{x, y, mean, scale, shift, relu});
}

// Calls part(offset, rows, width, arrays, stream) over a rows block whose
// output is `out`: whole, streamed when rows_stream allows; or, from the
// output's first 32-byte boundary, as rows_from_boundary's three parts with
// the per-column arrays rotated for the middle one.
template <size_t kArrays, class Part>
void rows_streamed(bool stream, const uint16_t* out, int64_t rows, int64_t width,
                   const std::array<const float*, kArrays>& arrays, const Part& part) {
  switch (rows_stream(stream, out, rows, width)) {
    case RowsStream::no:
      part(0, rows, width, arrays, false);
      return;
    case RowsStream::aligned:
      part(0, rows, width, arrays, true);
      return;
    case RowsStream::from_boundary: {
      const int64_t head = head_to_align(out);
      const RotatedColumns<kArrays, kRotatedWidth> cols(arrays, width, head);
      rows_from_boundary(rows, width, head,
                         [&](int64_t at, int64_t n, int64_t w, int64_t col, bool rotated, bool st) {
                           std::array<const float*, kArrays> part_arrays;
                           for (size_t k = 0; k < kArrays; ++k)
                             part_arrays[k] = cols.at(static_cast<int>(k), col, rotated);
                           part(at, n, w, part_arrays, st);
                         });
      return;
    }
  }
}

void native_rows_normalize(const uint16_t* x, uint16_t* y, int64_t rows, int64_t width,
                           const float* mean, const float* scale, const float* shift, bool relu,
                           bool stream) {
  rows_streamed<3>(stream, y, rows, width, {mean, scale, shift},
                   [&](int64_t at, int64_t n, int64_t w, const std::array<const float*, 3>& c,
                       bool st) {
                     if (st) {
                       rows_normalize_t<true>(x + at, y + at, n, w, c[0], c[1], c[2], relu);
                     } else {
                       rows_normalize_t<false>(x + at, y + at, n, w, c[0], c[1], c[2], relu);
                     }
                   });
}

struct GradInputRow {
  const uint16_t *x, *dy, *relu_y;
  uint16_t* dx;
  const float *mean, *a, *b, *c;
  template <bool kStream>
  BNLAB_BF16_TARGET void operator()(int64_t o, int64_t w, __mmask16 live) const {
    const __m512 xm =
        _mm512_sub_ps(widen16(x + o + w, live), _mm512_maskz_loadu_ps(live, mean + w));
    const __m512 g =
        grad_if(widen16(dy + o + w, live), relu_y == nullptr ? nullptr : relu_y + o + w, live);
    const __m512 v = _mm512_fmadd_ps(
        _mm512_maskz_loadu_ps(live, a + w), g,
        _mm512_fmadd_ps(_mm512_maskz_loadu_ps(live, b + w), xm, _mm512_maskz_loadu_ps(live, c + w)));
    store16<kStream>(dx + o + w, v, live);
  }
  template <bool kStream>
  BNLAB_BF16_TARGET void one_vector_rows(int64_t rows) const {
    const __m512 m = _mm512_loadu_ps(mean), va = _mm512_loadu_ps(a), vb = _mm512_loadu_ps(b),
                 vc = _mm512_loadu_ps(c);
    for (int64_t o = 0; o < 16 * rows; o += 16) {
      const __m512 g =
          grad_if(widen16(dy + o, 0xffff), relu_y == nullptr ? nullptr : relu_y + o, 0xffff);
      const __m512 v = _mm512_fmadd_ps(
          va, g, _mm512_fmadd_ps(vb, _mm512_sub_ps(widen16(x + o, 0xffff), m), vc));
      store16<kStream>(dx + o, v, 0xffff);
    }
  }
};

template <bool kStream>
BNLAB_BF16_TARGET void rows_grad_input_t(const Bf16Grad& g, uint16_t* dx, int64_t rows,
                                         int64_t width, const float* mean, const float* a,
                                         const float* b, const float* c) {
  for_row_vectors<kStream>(rows, width, GradInputRow{g.x, g.dy, g.relu_y, dx, mean, a, b, c});
}

void native_rows_grad_input(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y,
                            uint16_t* dx, int64_t rows, int64_t width, const float* mean,
                            const float* a, const float* b, const float* c, bool stream) {
  const Bf16Grad g{x, dy, relu_y};
  rows_streamed<4>(stream, dx, rows, width, {mean, a, b, c},
                   [&](int64_t at, int64_t n, int64_t w, const std::array<const float*, 4>& k,
                       bool st) {
                     if (st) {
                       rows_grad_input_t<true>(g.at(at), dx + at, n, w, k[0], k[1], k[2], k[3]);
                     } else {
                       rows_grad_input_t<false>(g.at(at), dx + at, n, w, k[0], k[1], k[2], k[3]);
                     }
                   });
}

#endif

}  // namespace

const Bf16Conversions* native_bf16_conversions() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool has = __builtin_cpu_supports("avx512bf16") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl");
  if (!has) return nullptr;
  // Widening is a shift, exact in every variant, and the sums round nothing:
  // those loops are the best Highway variant's.
  const Bf16Conversions* rest =
      simd_bf16_variant_count() > 0 ? simd_bf16_conversions(0) : plain_bf16_conversions();
  static const Bf16Conversions native{"avx512_bf16",          rest->to_float,
                                      native_from_float,      native_span_normalize,
                                      native_rows_normalize,  native_span_grad_input,
                                      native_rows_grad_input, rest->span_grad_sums,
                                      rest->rows_grad_sums,   rest->span_moments,
                                      rest->rows_moments};
  return &native;
#else
  return nullptr;
#endif
}

}  // namespace bnlab::kernels
