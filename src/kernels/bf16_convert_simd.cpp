// The bf16 conversions, and the bf16 normalize, gradient-sum and
// gradient-input loops that widen, compute and round in registers, written once with Google Highway
// and compiled for each x86 instruction set; each gives the bits of the plain loops in
// bf16_convert.cpp (Highway 1.0's own DemoteTo truncates, so the rounding is
// done here on the integer bits). Tails shorter than a vector go through the
// plain functions; outputs past the LLC are streamed, as the fp32 loops'.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/bf16_convert_simd.cpp"
#include <hwy/cache_control.h>
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

#include <algorithm>
#include <type_traits>

#include "bnlab/batch_norm_bf16.hpp"
#include "kernels/bf16_convert.hpp"
#include "kernels/load_tail-inl.h"  // kMaxLanes, HeadToAlign, RowsAligned, Prefetch*Ahead
#include "kernels/register_sums-inl.h"

HWY_BEFORE_NAMESPACE();
namespace bnlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DU32 = hn::RebindToUnsigned<DF>;
using DI32 = hn::RebindToSigned<DF>;
using DU16 = hn::Rebind<uint16_t, DF>;  // half-width: one u16 lane per float lane

// float_to_bf16 lane by lane: signed zero for zeros and denormals, the top
// half with the quiet bit for NaN, else bits + 0x7fff + lsb, top half.
HWY_INLINE hn::Vec<DU16> RoundToBf16(hn::Vec<DF> v) {
  const DU32 du32;
  const DI32 di32;
  const DU16 du16;
  const auto bits = hn::BitCast(du32, v);
  const auto top = hn::ShiftRight<16>(bits);
  auto r = hn::ShiftRight<16>(
      hn::Add(hn::Add(bits, hn::Set(du32, 0x7fffu)), hn::And(top, hn::Set(du32, 1u))));
  r = hn::IfThenElse(hn::RebindMask(du32, hn::IsNaN(v)), hn::Or(top, hn::Set(du32, 0x0040u)), r);
  r = hn::IfThenElse(hn::Eq(hn::And(bits, hn::Set(du32, 0x7f800000u)), hn::Zero(du32)),
                     hn::And(top, hn::Set(du32, 0x8000u)), r);
  return hn::DemoteTo(du16, hn::BitCast(di32, r));
}

// a * b + c rounded as hn::MulAdd rounds it on this target (once where the
// target fuses it, twice where not), for the values a span leaves to scalar
// code: a streamed span's head depends on the output's alignment, and its
// values must get the vector lanes' bits.
HWY_INLINE float MulAdd1(float a, float b, float c) {
  const hn::CappedTag<float, 1> d1;
  return hn::GetLane(hn::MulAdd(hn::Set(d1, a), hn::Set(d1, b), hn::Set(d1, c)));
}

HWY_INLINE hn::Vec<DF> Widen(const uint16_t* in) {
  const DF df;
  return hn::BitCast(df, hn::ShiftLeft<16>(hn::PromoteTo(DU32(), hn::LoadU(DU16(), in))));
}

void ToFloat(const uint16_t* in, float* out, int64_t count) {
  const DF df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + lanes <= count; i += lanes) hn::StoreU(Widen(in + i), df, out + i);
  for (; i < count; ++i) out[i] = bf16_to_float(in[i]);
}

void FromFloat(const float* in, uint16_t* out, int64_t count) {
  const DF df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + lanes <= count; i += lanes)
    hn::StoreU(RoundToBf16(hn::LoadU(df, in + i)), DU16(), out + i);
  for (; i < count; ++i) out[i] = float_to_bf16(in[i]);
}

// Streaming stores need whole 16-byte vectors: half an SSE4 register is not one.
HWY_INLINE bool CanStream() { return hn::Lanes(DU16()) * sizeof(uint16_t) >= 16; }

// Rows stream when every row starts on a whole u16 vector.
HWY_INLINE bool RowsStream(bool stream, const uint16_t* out, int64_t width) {
  return stream && CanStream() && RowsAligned(DU16(), out, width);
}

// out[i] for i in [0, len): whole vectors vec(i), the rest one(i) lane by
// lane; with stream, plain values up to out's first aligned vector, then the
// vectors streamed past the caches (the caller fences).
template <class VecAt, class OneAt>
HWY_INLINE void StoreSpan(uint16_t* out, int64_t len, bool stream, const VecAt& vec,
                          const OneAt& one) {
  const DU16 du16;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(du16));
  int64_t i = 0;
  if (stream && CanStream()) {
    for (const int64_t head = std::min(len, HeadToAlign(du16, out)); i < head; ++i) out[i] = one(i);
    for (; i + lanes <= len; i += lanes) hn::Stream(vec(i), du16, out + i);
  }
  for (; i + lanes <= len; i += lanes) hn::StoreU(vec(i), du16, out + i);
  for (; i < len; ++i) out[i] = one(i);
}

// Rows of 16 columns (blocked16 units) are one run of rows*16 values, in
// kUnitVectors vectors a row: out[i..] = vec(i, k) for the row's k-th vector,
// whose per-column values the caller keeps in registers (loads from the
// arrays could not be hoisted past the stores, which may alias them).
constexpr int64_t kUnitVectors = 16 / static_cast<int64_t>(hn::MaxLanes(DF()));
static_assert(kUnitVectors >= 1, "a 16-wide unit holds at least one vector");
template <class VecAt>
HWY_INLINE void StoreUnitRows(uint16_t* out, int64_t rows, bool stream, const VecAt& vec) {
  const DU16 du16;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(du16));
  const auto run = [&](auto streamed) {
    for (int64_t i = 0; i < 16 * rows; i += 16)
      for (int64_t k = 0; k < kUnitVectors; ++k) {
        if constexpr (decltype(streamed)::value) {
          hn::Stream(vec(i + k * lanes, k), du16, out + i + k * lanes);
        } else {
          hn::StoreU(vec(i + k * lanes, k), du16, out + i + k * lanes);
        }
      }
  };
  if (RowsStream(stream, out, 16)) {
    run(std::true_type{});
  } else {
    run(std::false_type{});
  }
}

// v[k] = the k-th vector of 16 per-column values.
HWY_INLINE void LoadUnit(const float* p, hn::Vec<DF>* v) {
  const DF df;
  for (int64_t k = 0; k < kUnitVectors; ++k)
    v[k] = hn::LoadU(df, p + k * static_cast<int64_t>(hn::Lanes(df)));
}

// The fused ReLU's rules (the fp32 kernels'): y below zero becomes zero (NaN
// kept); the gradient passes where the ReLU's output is above zero.
HWY_INLINE hn::Vec<DF> ReluIf(hn::Vec<DF> v, bool relu) {
  const DF df;
  return relu ? hn::IfThenZeroElse(hn::Lt(v, hn::Zero(df)), v) : v;
}
HWY_INLINE hn::Vec<DF> GradIf(hn::Vec<DF> dy, const uint16_t* relu_y, int64_t at) {
  const DF df;
  return relu_y == nullptr ? dy : hn::IfThenElseZero(hn::Gt(Widen(relu_y + at), hn::Zero(df)), dy);
}
HWY_INLINE float ReluIf(float v, bool relu) { return relu && v < 0.0f ? 0.0f : v; }
HWY_INLINE float GradIf(float dy, const uint16_t* relu_y, int64_t at) {
  return relu_y == nullptr || bf16_to_float(relu_y[at]) > 0.0f ? dy : 0.0f;
}

// y = bf16((x - mean)*scale + shift) on a span of one channel, in registers.
void SpanNormalize(const uint16_t* x, uint16_t* y, int64_t len, float mean, float scale,
                   float shift, bool relu, bool stream) {
  const DF df;
  const auto m = hn::Set(df, mean), sc = hn::Set(df, scale), sh = hn::Set(df, shift);
  StoreSpan(
      y, len, stream,
      [&](int64_t i) {
        return RoundToBf16(ReluIf(hn::MulAdd(hn::Sub(Widen(x + i), m), sc, sh), relu));
      },
      [&](int64_t i) {
        return float_to_bf16(ReluIf(MulAdd1(bf16_to_float(x[i]) - mean, scale, shift), relu));
      });
}

// The same on `rows` contiguous rows of `width` columns, column w its own channel.
void RowsNormalize(const uint16_t* x, uint16_t* y, int64_t rows, int64_t width, const float* mean,
                   const float* scale, const float* shift, bool relu, bool stream) {
  const DF df;
  if (width == 16) {
    hn::Vec<DF> m[kUnitVectors], sc[kUnitVectors], sh[kUnitVectors];
    LoadUnit(mean, m);
    LoadUnit(scale, sc);
    LoadUnit(shift, sh);
    StoreUnitRows(y, rows, stream, [&](int64_t i, int64_t k) {
      return RoundToBf16(ReluIf(hn::MulAdd(hn::Sub(Widen(x + i), m[k]), sc[k], sh[k]), relu));
    });
    return;
  }
  const bool streamed = RowsStream(stream, y, width);
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* xr = x + r * width;
    StoreSpan(
        y + r * width, width, streamed,
        [&](int64_t w) {
          const auto v = hn::MulAdd(hn::Sub(Widen(xr + w), hn::LoadU(df, mean + w)),
                                    hn::LoadU(df, scale + w), hn::LoadU(df, shift + w));
          return RoundToBf16(ReluIf(v, relu));
        },
        [&](int64_t w) {
          return float_to_bf16(
              ReluIf(MulAdd1(bf16_to_float(xr[w]) - mean[w], scale[w], shift[w]), relu));
        });
  }
}

// dx = bf16(a*g + b*(x - mean) + c) on a span of one channel, in registers.
void SpanGradInput(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y, uint16_t* dx,
                   int64_t len, float mean, float a, float b, float c, bool stream) {
  const DF df;
  const auto m = hn::Set(df, mean), va = hn::Set(df, a), vb = hn::Set(df, b), vc = hn::Set(df, c);
  StoreSpan(
      dx, len, stream,
      [&](int64_t i) {
        const auto g = GradIf(Widen(dy + i), relu_y, i);
        return RoundToBf16(hn::MulAdd(va, g, hn::MulAdd(vb, hn::Sub(Widen(x + i), m), vc)));
      },
      [&](int64_t i) {
        return float_to_bf16(MulAdd1(a, GradIf(bf16_to_float(dy[i]), relu_y, i),
                                     MulAdd1(b, bf16_to_float(x[i]) - mean, c)));
      });
}

// The same on `rows` contiguous rows of `width` columns, column w its own channel.
void RowsGradInput(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y, uint16_t* dx,
                   int64_t rows, int64_t width, const float* mean, const float* a, const float* b,
                   const float* c, bool stream) {
  const DF df;
  if (width == 16) {
    hn::Vec<DF> m[kUnitVectors], va[kUnitVectors], vb[kUnitVectors], vc[kUnitVectors];
    LoadUnit(mean, m);
    LoadUnit(a, va);
    LoadUnit(b, vb);
    LoadUnit(c, vc);
    StoreUnitRows(dx, rows, stream, [&](int64_t i, int64_t k) {
      const auto g = GradIf(Widen(dy + i), relu_y, i);
      return RoundToBf16(
          hn::MulAdd(va[k], g, hn::MulAdd(vb[k], hn::Sub(Widen(x + i), m[k]), vc[k])));
    });
    return;
  }
  const bool streamed = RowsStream(stream, dx, width);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * width;
    StoreSpan(
        dx + o, width, streamed,
        [&](int64_t w) {
          const auto xm = hn::Sub(Widen(x + o + w), hn::LoadU(df, mean + w));
          const auto g = GradIf(Widen(dy + o + w), relu_y, o + w);
          return RoundToBf16(hn::MulAdd(
              hn::LoadU(df, a + w), g, hn::MulAdd(hn::LoadU(df, b + w), xm, hn::LoadU(df, c + w))));
        },
        [&](int64_t w) {
          return float_to_bf16(MulAdd1(a[w], GradIf(bf16_to_float(dy[o + w]), relu_y, o + w),
                                       MulAdd1(b[w], bf16_to_float(x[o + w]) - mean[w], c[w])));
        });
  }
}

// Rows (or values) summed in float before they are added to the double sums.
constexpr int64_t kFloatBlock = 256;

// sum_dy += sum(dy), sum_dy_xmu += sum(dy*(x - mean)) over a span of one
// channel, in float blocks of kFloatBlock vectors added in double.
void SpanGradSums(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y, int64_t len,
                  float mean, double* sum_dy, double* sum_dy_xmu) {
  const DF df;
  const auto m = hn::Set(df, mean);
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const int64_t whole = len / lanes * lanes;
  for (int64_t b = 0; b < whole; b += kFloatBlock * lanes) {
    // Two pairs of chains, so that the adds' latency does not bound the loop.
    auto s0 = hn::Zero(df), sx0 = hn::Zero(df), s1 = hn::Zero(df), sx1 = hn::Zero(df);
    const auto add = [&](int64_t i, auto& s, auto& sx) {
      const auto g = GradIf(Widen(dy + i), relu_y, i);
      s = hn::Add(s, g);
      sx = hn::MulAdd(g, hn::Sub(Widen(x + i), m), sx);
    };
    const int64_t end = std::min(whole, b + kFloatBlock * lanes);
    int64_t i = b;
    for (; i + 2 * lanes <= end; i += 2 * lanes) {
      add(i, s0, sx0);
      add(i + lanes, s1, sx1);
    }
    if (i < end) add(i, s0, sx0);
    *sum_dy += hn::GetLane(hn::SumOfLanes(df, hn::Add(s0, s1)));
    *sum_dy_xmu += hn::GetLane(hn::SumOfLanes(df, hn::Add(sx0, sx1)));
  }
  for (int64_t i = whole; i < len; ++i) {
    const float g = GradIf(bf16_to_float(dy[i]), relu_y, i);
    *sum_dy += g;
    *sum_dy_xmu += g * (bf16_to_float(x[i]) - mean);
  }
}

// Column walks take K column vectors side by side, each summed in R chains of
// every R-th row (added in order at the end): K*R = 4 independent add chains,
// so that a walk over data in cache is not bound by one chain's latency (a
// blocked16 unit is one column vector on AVX-512). With R = 1 each lane adds
// its rows in order, as one chain would.
template <class Walk>
HWY_INLINE void ForColumnGroups(int64_t whole, int64_t lanes, const Walk& walk) {
  int64_t w = 0;
  for (; w + 4 * lanes <= whole; w += 4 * lanes) walk.template operator()<4, 1>(w);
  if (w + 2 * lanes <= whole) {
    walk.template operator()<2, 2>(w);
    w += 2 * lanes;
  }
  if (w < whole) walk.template operator()<1, 4>(w);
}

// Rows of whole vectors up to this wide are summed row by row.
constexpr int64_t kByRowMaxWidth = 1024;

// RowsGradSums on rows of at least four whole vectors: row by row, in memory
// order, with the float sums of a block of kFloatBlock rows in L1 arrays.
// Each column adds its rows in order, as the column walk's <4, 1> groups do,
// so the bits are the same; it reads DRAM in order where the column walk
// reads strips of every row, and took 1.04-1.07x channels-first's time on
// 32x256x56x56 instead of 1.14-1.19x (docs/performance.md, 'bf16 kernels').
void RowsGradSumsByRow(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y, int64_t rows,
                       int64_t width, const float* mean, double* sum_dy, double* sum_dy_xmu) {
  const DF df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  alignas(64) float s[kByRowMaxWidth], p[kByRowMaxWidth];
  for (int64_t r0 = 0; r0 < rows; r0 += kFloatBlock) {
    for (int64_t w = 0; w < width; w += lanes) {
      hn::Store(hn::Zero(df), df, s + w);
      hn::Store(hn::Zero(df), df, p + w);
    }
    const int64_t r1 = std::min(rows, r0 + kFloatBlock);
    // Rows of 4 or 8 vectors: the sums in registers (register_sums-inl.h).
    const auto grad_sums = [&]<int K>() {
      const auto g_and_xmu = [&](int64_t r, int k) {
        const int64_t at = r * width + k * lanes;
        const auto g = GradIf(Widen(dy + at), relu_y, at);
        return std::pair{g, hn::Sub(Widen(x + at), hn::LoadU(df, mean + k * lanes))};
      };
      RegisterSumAndDot<K>(df, r0, r1, g_and_xmu, s, p);
    };
    if (!InRegisters<kRegisterSumsMax / 2>(width / lanes, grad_sums)) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t row = r * width;
        for (int64_t w = 0; w < width; w += lanes) {
          const auto g = GradIf(Widen(dy + row + w), relu_y, row + w);
          const auto xmu = hn::Sub(Widen(x + row + w), hn::LoadU(df, mean + w));
          hn::Store(hn::Add(hn::Load(df, s + w), g), df, s + w);
          hn::Store(hn::MulAdd(g, xmu, hn::Load(df, p + w)), df, p + w);
        }
      }
    }
    for (int64_t w = 0; w < width; ++w) {
      sum_dy[w] += s[w];
      sum_dy_xmu[w] += p[w];
    }
  }
}

// The same per column of `rows` contiguous rows of `width` columns: column w
// adds to sum_dy[w] and sum_dy_xmu[w], float blocks of kFloatBlock rows.
void RowsGradSums(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y, int64_t rows,
                  int64_t width, const float* mean, double* sum_dy, double* sum_dy_xmu) {
  const DF df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const int64_t whole = width / lanes * lanes;
  if (whole == width && width >= 4 * lanes && width <= kByRowMaxWidth) {
    RowsGradSumsByRow(x, dy, relu_y, rows, width, mean, sum_dy, sum_dy_xmu);
    return;
  }
  ForColumnGroups(whole, lanes, [&]<int K, int R>(int64_t w) {
    using V = hn::Vec<DF>;
    V m[K];
    for (int k = 0; k < K; ++k) m[k] = hn::LoadU(df, mean + w + k * lanes);
    for (int64_t r0 = 0; r0 < rows; r0 += kFloatBlock) {
      const int64_t r1 = std::min(rows, r0 + kFloatBlock);
      V s[K][R], sx[K][R];
      for (int k = 0; k < K; ++k)
        for (int c = 0; c < R; ++c) s[k][c] = sx[k][c] = hn::Zero(df);
      const auto add = [&](int64_t r, int k, int c) {
        const int64_t at = r * width + w + k * lanes;
        const V g = GradIf(Widen(dy + at), relu_y, at);
        s[k][c] = hn::Add(s[k][c], g);
        sx[k][c] = hn::MulAdd(g, hn::Sub(Widen(x + at), m[k]), sx[k][c]);
      };
      int64_t r = r0;
      for (; r + R <= r1; r += R)
        for (int c = 0; c < R; ++c)
          for (int k = 0; k < K; ++k) add(r + c, k, c);
      for (; r < r1; ++r)
        for (int k = 0; k < K; ++k) add(r, k, 0);
      alignas(64) float lane_s[kMaxLanes], lane_sx[kMaxLanes];
      for (int k = 0; k < K; ++k) {
        for (int c = 1; c < R; ++c) {
          s[k][0] = hn::Add(s[k][0], s[k][c]);
          sx[k][0] = hn::Add(sx[k][0], sx[k][c]);
        }
        hn::Store(s[k][0], df, lane_s);
        hn::Store(sx[k][0], df, lane_sx);
        for (int64_t l = 0; l < lanes; ++l) {
          sum_dy[w + k * lanes + l] += lane_s[l];
          sum_dy_xmu[w + k * lanes + l] += lane_sx[l];
        }
      }
    }
  });
  for (int64_t w = whole; w < width; ++w)
    for (int64_t r = 0; r < rows; ++r) {
      const float g = GradIf(bf16_to_float(dy[r * width + w]), relu_y, r * width + w);
      sum_dy[w] += g;
      sum_dy_xmu[w] += g * (bf16_to_float(x[r * width + w]) - mean[w]);
    }
}

// Moments of a span of one channel: blocks of 4096 values, each two passes
// (a sum shifted by the block's first value for the mean, then deviations
// from L1) in float, merged in double. Pass 2 prefetches the next 4096 values
// (the next block, or the next span in channels-first order; a prefetch past
// the tensor does not fault), so that DRAM does not idle while it runs.
Moments SpanMoments(const uint16_t* x, int64_t len) {
  const DF df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  Moments total;
  for (int64_t b = 0; b < len; b += 4096) {
    const int64_t n = std::min<int64_t>(4096, len - b), whole = n / lanes * lanes;
    const uint16_t* xb = x + b;
    const float first = bf16_to_float(xb[0]);
    // Four add chains in pass 1 and two pairs in pass 2, as the fp32 loop: one
    // chain bound the pass by the add's latency (docs/performance.md).
    const auto shift = hn::Set(df, first);
    auto s0 = hn::Zero(df), s1 = hn::Zero(df), s2 = hn::Zero(df), s3 = hn::Zero(df);
    int64_t i = 0;
    for (; i + 4 * lanes <= whole; i += 4 * lanes) {
      s0 = hn::Add(s0, hn::Sub(Widen(xb + i), shift));
      s1 = hn::Add(s1, hn::Sub(Widen(xb + i + lanes), shift));
      s2 = hn::Add(s2, hn::Sub(Widen(xb + i + 2 * lanes), shift));
      s3 = hn::Add(s3, hn::Sub(Widen(xb + i + 3 * lanes), shift));
    }
    for (; i < whole; i += lanes) s0 = hn::Add(s0, hn::Sub(Widen(xb + i), shift));
    float sum = hn::GetLane(hn::SumOfLanes(df, hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))));
    for (int64_t k = whole; k < n; ++k) sum += bf16_to_float(xb[k]) - first;
    const float mean = static_cast<float>(first + static_cast<double>(sum) / n);
    const auto vmean = hn::Set(df, mean);
    auto a0 = hn::Zero(df), a1 = hn::Zero(df), q0 = hn::Zero(df), q1 = hn::Zero(df);
    for (i = 0; i + 2 * lanes <= whole; i += 2 * lanes) {
      PrefetchAhead(xb, n + i);
      const auto d0 = hn::Sub(Widen(xb + i), vmean);
      const auto d1 = hn::Sub(Widen(xb + i + lanes), vmean);
      a0 = hn::Add(a0, d0);
      a1 = hn::Add(a1, d1);
      q0 = hn::MulAdd(d0, d0, q0);
      q1 = hn::MulAdd(d1, d1, q1);
    }
    if (i < whole) {
      const auto d0 = hn::Sub(Widen(xb + i), vmean);
      a0 = hn::Add(a0, d0);
      q0 = hn::MulAdd(d0, d0, q0);
    }
    double dev = hn::GetLane(hn::SumOfLanes(df, hn::Add(a0, a1)));
    double dev2 = hn::GetLane(hn::SumOfLanes(df, hn::Add(q0, q1)));
    for (int64_t i = whole; i < n; ++i) {
      const float d = bf16_to_float(xb[i]) - mean;
      dev += d;
      dev2 += d * d;
    }
    total.merge({static_cast<double>(n), mean + dev / n, std::max(dev2 - dev * dev / n, 0.0)});
  }
  return total;
}

// A float block of n rows merged into out[w] for its `width` columns: per
// column its shifted mean (first), and the sums of the deviations from it and
// of their squares, give the block's mean first + dev / n and m2 dev2 - dev^2 / n.
// 1 / n and the merge's ratios are computed once for all columns: a division
// per column made these merges a fifth of the rows moments' time in cache.
HWY_INLINE void MergeFloatBlock(Moments* out, int64_t width, int64_t n, const float* first,
                                const float* dev, const float* dev2) {
  const double count = static_cast<double>(n), inv_n = 1.0 / count;
  alignas(64) double mean[kByRowMaxWidth], m2[kByRowMaxWidth];
  for (int64_t w = 0; w < width; ++w) {
    const double d = dev[w];
    mean[w] = first[w] + d * inv_n;
    m2[w] = std::max(dev2[w] - d * d * inv_n, 0.0);
  }
  merge_columns(out, width, count, mean, m2);
}

// Rows in one float block of the rows moments: 1024 for rows of one vector
// (blocked16 units), so that the merge per column that ends each block comes
// a quarter as often; else as many rows as fit 32 KiB, so that pass 2 reads
// the block from L1 (64 rows at 256 channels), within 64 to kFloatBlock rows:
// fewer rows would merge so often that the merges cost more than L2 does
// (256x1024 nc: 16-row blocks 0.088 ms against 0.071; docs/performance.md
// 'Kernel choices'). By width alone, so that both walks below, and every
// target, cut the same blocks.
int64_t MomentsBlockRows(int64_t width) {
  constexpr int64_t kBlockValues = 16384;  // 32 KiB of bf16
  constexpr int64_t kMinBlockRows = 64;    // a merge per column per 64 rows at most
  if (width <= 16) return 4 * kFloatBlock;
  return std::clamp<int64_t>(kBlockValues / width, kMinBlockRows, kFloatBlock);
}

// RowsMoments on rows of at least four whole vectors: both passes row by
// row, in memory order. Each column adds its rows in order, as the column
// walk's <4, 1> groups do, so the bits are the same. Pass 2 prefetches the
// next block's rows, so that reads from DRAM go on while it works from L1
// (docs/performance.md).
void RowsMomentsByRow(const uint16_t* x, int64_t rows, int64_t width, Moments* out) {
  const DF df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const int64_t block = MomentsBlockRows(width);
  alignas(64) float first[kByRowMaxWidth], s[kByRowMaxWidth], q[kByRowMaxWidth];
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t n = std::min(block, rows - r0);
    const uint16_t* xb = x + r0 * width;
    // Pass 1: sums shifted by the block's first row.
    for (int64_t w = 0; w < width; w += lanes) {
      hn::Store(Widen(xb + w), df, first + w);
      hn::Store(hn::Zero(df), df, s + w);
    }
    // Rows of 4, 8 or 16 vectors: the sums in registers (register_sums-inl.h).
    const auto shifted_sums = [&]<int K>() {
      const auto shifted = [&](int64_t r, int k) {
        return hn::Sub(Widen(xb + r * width + k * lanes), hn::Load(df, first + k * lanes));
      };
      RegisterSums<K>(df, 1, n, shifted, s);
    };
    if (!InRegisters<kRegisterSumsMax>(width / lanes, shifted_sums)) {
      for (int64_t r = 1; r < n; ++r)
        for (int64_t w = 0; w < width; w += lanes)
          hn::Store(hn::Add(hn::Load(df, s + w),
                            hn::Sub(Widen(xb + r * width + w), hn::Load(df, first + w))),
                    df, s + w);
    }
    // Pass 2 (from L2): deviations from the float mean, first now the mean.
    const auto inv_n = hn::Set(df, 1.0f / static_cast<float>(n));
    for (int64_t w = 0; w < width; w += lanes) {
      hn::Store(hn::MulAdd(hn::Load(df, s + w), inv_n, hn::Load(df, first + w)), df, first + w);
      hn::Store(hn::Zero(df), df, s + w);
      hn::Store(hn::Zero(df), df, q + w);
    }
    const uint16_t* next = xb + n * width;
    const int64_t next_rows = std::min(block, rows - r0 - n);
    // Rows of 4 vectors, or of a multiple of kChunk vectors: the sums in
    // registers, kChunk column vectors side by side (a row of 16 vectors in
    // two walks down the block), the same part of a row of the next block
    // prefetched per row as below.
    constexpr int kChunk = static_cast<int>(kRegisterSumsMax / 2);
    const auto deviation_sums = [&]<int K>(int64_t w0) {
      const auto deviation = [&](int64_t r, int k) {
        if (k == 0 && r < next_rows) PrefetchRangeAhead(next, r * width + w0, K * lanes);
        const auto d =
            hn::Sub(Widen(xb + r * width + w0 + k * lanes), hn::Load(df, first + w0 + k * lanes));
        return std::pair{d, d};
      };
      RegisterSumAndDot<K>(df, 0, n, deviation, s + w0, q + w0);
    };
    const int64_t vectors = width / lanes;
    if (vectors == 4) {
      deviation_sums.template operator()<4>(0);
    } else if (vectors % kChunk == 0) {
      for (int64_t w0 = 0; w0 < width; w0 += kChunk * lanes)
        deviation_sums.template operator()<kChunk>(w0);
    } else {
      for (int64_t r = 0; r < n; ++r) {
        if (r < next_rows) PrefetchRangeAhead(next, r * width, width);
        for (int64_t w = 0; w < width; w += lanes) {
          const auto d = hn::Sub(Widen(xb + r * width + w), hn::Load(df, first + w));
          hn::Store(hn::Add(hn::Load(df, s + w), d), df, s + w);
          hn::Store(hn::MulAdd(d, d, hn::Load(df, q + w)), df, q + w);
        }
      }
    }
    MergeFloatBlock(out, width, n, first, s, q);
  }
}

// The same per column of `rows` contiguous rows of `width` columns, blocks of
// MomentsBlockRows rows, merged into out[w]; column groups as ForColumnGroups.
void RowsMoments(const uint16_t* x, int64_t rows, int64_t width, Moments* out) {
  const DF df;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  const int64_t whole = width / lanes * lanes;
  if (whole == width && width >= 4 * lanes && width <= kByRowMaxWidth) {
    RowsMomentsByRow(x, rows, width, out);
    return;
  }
  // Pass 2 prefetches the next block in memory order, as batch_norm_simd.cpp's
  // does (one-vector rows: docs/performance.md, 'bf16 kernels').
  const int64_t block = MomentsBlockRows(width);
  for (int64_t r0 = 0; r0 < rows; r0 += block) {
    const int64_t n = std::min(block, rows - r0);
    const uint16_t* xb = x + r0 * width;
    int64_t ahead = n * width;  // the next block, prefetched in memory order during pass 2
    ForColumnGroups(whole, lanes, [&]<int K, int R>(int64_t w) {
      using V = hn::Vec<DF>;
      const auto at = [&](int64_t r, int k) { return Widen(xb + r * width + w + k * lanes); };
      // Pass 1: sums shifted by the block's first row.
      V first[K], s[K][R];
      for (int k = 0; k < K; ++k) {
        first[k] = at(0, k);
        for (int c = 0; c < R; ++c) s[k][c] = hn::Zero(df);
      }
      int64_t r = 1;
      for (; r + R <= n; r += R)
        for (int c = 0; c < R; ++c)
          for (int k = 0; k < K; ++k) s[k][c] = hn::Add(s[k][c], hn::Sub(at(r + c, k), first[k]));
      for (; r < n; ++r)
        for (int k = 0; k < K; ++k) s[k][0] = hn::Add(s[k][0], hn::Sub(at(r, k), first[k]));
      // Pass 2 (from cache): deviations from the float mean.
      V mean[K], a[K][R], q[K][R];
      for (int k = 0; k < K; ++k) {
        for (int c = 1; c < R; ++c) s[k][0] = hn::Add(s[k][0], s[k][c]);
        mean[k] = hn::MulAdd(s[k][0], hn::Set(df, 1.0f / static_cast<float>(n)), first[k]);
        for (int c = 0; c < R; ++c) a[k][c] = q[k][c] = hn::Zero(df);
      }
      const auto deviate = [&](int64_t row, int k, int c) {
        const V d = hn::Sub(at(row, k), mean[k]);
        a[k][c] = hn::Add(a[k][c], d);
        q[k][c] = hn::MulAdd(d, d, q[k][c]);
      };
      r = 0;
      for (; r + R <= n; r += R) {
        if (whole == width) {
          PrefetchRangeAhead(xb, ahead, R * K * lanes);
          ahead += R * K * lanes;
        }
        for (int c = 0; c < R; ++c)
          for (int k = 0; k < K; ++k) deviate(r + c, k, c);
      }
      for (; r < n; ++r)
        for (int k = 0; k < K; ++k) deviate(r, k, 0);
      alignas(64) float lane_mean[kMaxLanes], lane_a[kMaxLanes], lane_q[kMaxLanes];
      for (int k = 0; k < K; ++k) {
        for (int c = 1; c < R; ++c) {
          a[k][0] = hn::Add(a[k][0], a[k][c]);
          q[k][0] = hn::Add(q[k][0], q[k][c]);
        }
        hn::Store(mean[k], df, lane_mean);
        hn::Store(a[k][0], df, lane_a);
        hn::Store(q[k][0], df, lane_q);
        MergeFloatBlock(out + w + k * lanes, lanes, n, lane_mean, lane_a, lane_q);
      }
    });
    for (int64_t w = whole; w < width; ++w) {  // columns left over: one at a time
      double sum = 0.0;
      for (int64_t r = 0; r < n; ++r) sum += bf16_to_float(xb[r * width + w]);
      const double mean = sum / n;
      double m2 = 0.0;
      for (int64_t r = 0; r < n; ++r) {
        const double d = bf16_to_float(xb[r * width + w]) - mean;
        m2 += d * d;
      }
      out[w].merge({static_cast<double>(n), mean, m2});
    }
  }
}

const Bf16Conversions* GetConversions() {
  static const Bf16Conversions conversions{hwy::TargetName(HWY_TARGET),
                                           ToFloat,
                                           FromFloat,
                                           SpanNormalize,
                                           RowsNormalize,
                                           SpanGradInput,
                                           RowsGradInput,
                                           SpanGradSums,
                                           RowsGradSums,
                                           SpanMoments,
                                           RowsMoments};
  return &conversions;
}

}  // namespace HWY_NAMESPACE
}  // namespace bnlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <vector>

#include "kernels/simd_targets.hpp"

namespace bnlab::kernels {

HWY_EXPORT(GetConversions);

namespace {
const std::vector<const Bf16Conversions*>& supported_tables() {
  static const std::vector<const Bf16Conversions*> tables =
      simd_tables([] { return HWY_DYNAMIC_DISPATCH(GetConversions)(); });
  return tables;
}
}  // namespace

int simd_bf16_variant_count() { return static_cast<int>(supported_tables().size()); }
const Bf16Conversions* simd_bf16_conversions(int index) { return supported_tables()[index]; }

}  // namespace bnlab::kernels
#endif  // HWY_ONCE
