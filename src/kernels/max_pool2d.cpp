// The 2x2 max pool's row loops, NCHW and nChw16c: scalar (for the plain
// variant) and vector, written once with Highway and compiled per x86
// instruction set; see max_pool2d.hpp for the formulas and the tie and NaN
// rules.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/max_pool2d.cpp"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/load_tail-inl.h"
#include "kernels/max_pool2d.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<DF>;
// LoadTail: kernels/load_tail-inl.h.

// The winners of `lanes` windows whose four candidates are a, b (row0, left
// and right column), c, e (row1); index of lane 0's top left is base[0], and
// so on.
template <class D>
HWY_INLINE void Windows(D df, hn::Vec<D> a, hn::Vec<D> b, hn::Vec<D> c, hn::Vec<D> e,
                        hn::Vec<hn::RebindToSigned<D>> base, int32_t w, hn::Vec<D>& best,
                        hn::Vec<hn::RebindToSigned<D>>& at) {
  const hn::RebindToSigned<D> di;
  best = a;
  at = base;
  // A candidate wins when larger, or when it is NaN and the best so far is not.
  const auto consider = [&](hn::Vec<D> v, int32_t offset) {
    const auto take = hn::Or(hn::Gt(v, best), hn::AndNot(hn::IsNaN(best), hn::IsNaN(v)));
    best = hn::IfThenElse(take, v, best);
    at = hn::IfThenElse(hn::RebindMask(di, take), hn::Add(base, hn::Set(di, offset)), at);
  };
  consider(b, 1);
  consider(c, w);
  consider(e, w + 1);
  (void)df;
}

void MaxPool2x2Row(const float* row0, const float* row1, int64_t out_w, int32_t first_index,
                   int32_t w, float* y, int32_t* argmax) {
  const DF df;
  const DI di;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const auto two_iota = hn::Add(hn::Iota(di, 0), hn::Iota(di, 0));  // 0, 2, 4, ...
  hn::Vec<DF> a, b, c, e, best;
  hn::Vec<DI> at;
  int64_t ow = 0;
  for (; ow + n <= out_w; ow += n) {
    hn::LoadInterleaved2(df, row0 + 2 * ow, a, b);
    hn::LoadInterleaved2(df, row1 + 2 * ow, c, e);
    const auto base = hn::Add(two_iota, hn::Set(di, first_index + static_cast<int32_t>(2 * ow)));
    Windows(df, a, b, c, e, base, w, best, at);
    hn::StoreU(best, df, y + ow);
    hn::StoreU(at, di, argmax + ow);
  }
  if (ow == out_w) return;
  // The last (fewer than a vector of) windows: masked loads of the 2 * left
  // values of each row (zeros past them), split into even and odd columns as
  // LoadInterleaved2 does, and masked stores of the live lanes.
  const size_t left = static_cast<size_t>(out_w - ow);
  const size_t first = std::min<size_t>(2 * left, static_cast<size_t>(n));
  const size_t second = 2 * left - first;
  const auto split = [&](const float* row, hn::Vec<DF>& even, hn::Vec<DF>& odd) {
    const auto lo = LoadTail(df, row + 2 * ow, first);
    const auto hi = LoadTail(df, row + 2 * ow + n, second);
#if HWY_TARGET == HWY_SCALAR  // one lane: lo holds the even column, hi the odd one
    even = lo;
    odd = hi;
#else
    even = hn::ConcatEven(df, hi, lo);
    odd = hn::ConcatOdd(df, hi, lo);
#endif
  };
  split(row0, a, b);
  split(row1, c, e);
  const auto base = hn::Add(two_iota, hn::Set(di, first_index + static_cast<int32_t>(2 * ow)));
  Windows(df, a, b, c, e, base, w, best, at);
  hn::BlendedStore(best, hn::FirstN(df, left), df, y + ow);
  hn::BlendedStore(at, hn::FirstN(di, left), di, argmax + ow);
}

// nChw16c: the window's four positions are whole 16-channel vectors, so the
// lanes are channels, all with the same base index; 16 is a multiple of
// every x86 vector's float count, so no tail.
void MaxPool2x2Nchw16cRow(const float* row0, const float* row1, int64_t out_w, int32_t first_index,
                          int32_t w, float* y, int32_t* argmax) {
  constexpr int64_t kBlock = 16;
  const hn::CappedTag<float, kBlock> df;
  const hn::RebindToSigned<decltype(df)> di;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  hn::Vec<decltype(df)> best;
  hn::Vec<decltype(di)> at;
  for (int64_t ow = 0; ow < out_w; ++ow) {
    const float* top = row0 + 2 * kBlock * ow;
    const float* bottom = row1 + 2 * kBlock * ow;
    const auto base = hn::Set(di, first_index + static_cast<int32_t>(2 * ow));
    for (int64_t l = 0; l < kBlock; l += n) {
      Windows(df, hn::LoadU(df, top + l), hn::LoadU(df, top + kBlock + l),
              hn::LoadU(df, bottom + l), hn::LoadU(df, bottom + kBlock + l), base, w, best, at);
      hn::StoreU(best, df, y + kBlock * ow + l);
      hn::StoreU(at, di, argmax + kBlock * ow + l);
    }
  }
}

// Its backward: per window and lane, the gradient goes to the candidate
// whose index equals argmax, a select per candidate, no branches.
void MaxPool2x2Nchw16cRowBackward(const float* dy, const int32_t* argmax, int64_t out_w,
                                  int32_t first_index, int32_t w, float* dx_row0, float* dx_row1) {
  constexpr int64_t kBlock = 16;
  const hn::CappedTag<float, kBlock> df;
  const hn::RebindToSigned<decltype(df)> di;
  const int64_t n = static_cast<int64_t>(hn::Lanes(df));
  const auto one = hn::Set(di, 1), below = hn::Set(di, w);
  for (int64_t ow = 0; ow < out_w; ++ow) {
    const auto top_left = hn::Set(di, first_index + static_cast<int32_t>(2 * ow));
    const auto top_right = hn::Add(top_left, one);
    const auto bottom_left = hn::Add(top_left, below);
    const auto bottom_right = hn::Add(bottom_left, one);
    float* top = dx_row0 + 2 * kBlock * ow;
    float* bottom = dx_row1 + 2 * kBlock * ow;
    for (int64_t l = 0; l < kBlock; l += n) {
      const auto at = hn::LoadU(di, argmax + kBlock * ow + l);
      const auto g = hn::Add(hn::Zero(df), hn::LoadU(df, dy + kBlock * ow + l));
      const auto to = [&](hn::Vec<decltype(di)> index) {
        return hn::IfThenElseZero(hn::RebindMask(df, hn::Eq(at, index)), g);
      };
      hn::StoreU(to(top_left), df, top + l);
      hn::StoreU(to(top_right), df, top + kBlock + l);
      hn::StoreU(to(bottom_left), df, bottom + l);
      hn::StoreU(to(bottom_right), df, bottom + kBlock + l);
    }
  }
}

using RowFn = void (*)(const float*, const float*, int64_t, int32_t, int32_t, float*, int32_t*);
using BackwardRowFn = void (*)(const float*, const int32_t*, int64_t, int32_t, int32_t, float*,
                               float*);
RowFn GetRow() { return &MaxPool2x2Row; }
RowFn GetNchw16cRow() { return &MaxPool2x2Nchw16cRow; }
BackwardRowFn GetNchw16cRowBackward() { return &MaxPool2x2Nchw16cRowBackward; }

}  // namespace HWY_NAMESPACE
}  // namespace bnlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "kernels/simd_targets.hpp"

namespace bnlab::kernels {

HWY_EXPORT(GetRow);
HWY_EXPORT(GetNchw16cRow);
HWY_EXPORT(GetNchw16cRowBackward);

namespace {

using RowFn = void (*)(const float*, const float*, int64_t, int32_t, int32_t, float*, int32_t*);
using BackwardRowFn = void (*)(const float*, const int32_t*, int64_t, int32_t, int32_t, float*,
                               float*);

// The scalar loop: the same rule, one window at a time.
void plain_row(const float* row0, const float* row1, int64_t out_w, int32_t first_index,
               int32_t w, float* y, int32_t* argmax) {
  for (int64_t ow = 0; ow < out_w; ++ow) {
    const int32_t base = first_index + static_cast<int32_t>(2 * ow);
    const float candidates[4] = {row0[2 * ow], row0[2 * ow + 1], row1[2 * ow], row1[2 * ow + 1]};
    const int32_t offsets[4] = {0, 1, w, w + 1};
    int k_best = 0;
    for (int k = 1; k < 4; ++k)
      if (candidates[k] > candidates[k_best] ||
          (std::isnan(candidates[k]) && !std::isnan(candidates[k_best])))
        k_best = k;
    y[ow] = candidates[k_best];
    argmax[ow] = base + offsets[k_best];
  }
}

// The same rule on nChw16c: 16 channels per position, each lane on its own.
void plain_blocked16_row(const float* row0, const float* row1, int64_t out_w, int32_t first_index,
                       int32_t w, float* y, int32_t* argmax) {
  constexpr int64_t kBlock = 16;
  for (int64_t ow = 0; ow < out_w; ++ow) {
    const int32_t base = first_index + static_cast<int32_t>(2 * ow);
    const float* candidates[4] = {row0 + 2 * kBlock * ow, row0 + 2 * kBlock * ow + kBlock,
                                  row1 + 2 * kBlock * ow, row1 + 2 * kBlock * ow + kBlock};
    const int32_t offsets[4] = {0, 1, w, w + 1};
    for (int64_t l = 0; l < kBlock; ++l) {
      int k_best = 0;
      for (int k = 1; k < 4; ++k)
        if (candidates[k][l] > candidates[k_best][l] ||
            (std::isnan(candidates[k][l]) && !std::isnan(candidates[k_best][l])))
          k_best = k;
      y[kBlock * ow + l] = candidates[k_best][l];
      argmax[kBlock * ow + l] = base + offsets[k_best];
    }
  }
}

// Its backward, a lane and a candidate at a time.
void plain_blocked16_row_backward(const float* dy, const int32_t* argmax, int64_t out_w,
                                int32_t first_index, int32_t w, float* dx_row0, float* dx_row1) {
  constexpr int64_t kBlock = 16;
  for (int64_t ow = 0; ow < out_w; ++ow) {
    const int32_t base = first_index + static_cast<int32_t>(2 * ow);
    float* candidates[4] = {dx_row0 + 2 * kBlock * ow, dx_row0 + 2 * kBlock * ow + kBlock,
                            dx_row1 + 2 * kBlock * ow, dx_row1 + 2 * kBlock * ow + kBlock};
    const int32_t offsets[4] = {0, 1, w, w + 1};
    for (int k = 0; k < 4; ++k)
      for (int64_t l = 0; l < kBlock; ++l)
        candidates[k][l] =
            argmax[kBlock * ow + l] == base + offsets[k] ? 0.0f + dy[kBlock * ow + l] : 0.0f;
  }
}

struct Variant {
  std::string name;
  RowFn row;
  RowFn blocked16_row;
  BackwardRowFn blocked16_row_backward;
};

// Every compiled target this CPU supports, best first, then the plain loop.
const std::vector<Variant>& variants() {
  static const std::vector<Variant> table = [] {
    std::vector<Variant> out;
    for_each_simd_target([&](const char* name) {
      out.push_back({name, HWY_DYNAMIC_DISPATCH(GetRow)(), HWY_DYNAMIC_DISPATCH(GetNchw16cRow)(),
                     HWY_DYNAMIC_DISPATCH(GetNchw16cRowBackward)()});
    });
    out.push_back({"plain", plain_row, plain_blocked16_row, plain_blocked16_row_backward});
    return out;
  }();
  return table;
}

}  // namespace

void max_pool_2x2_row(const float* row0, const float* row1, int64_t out_w, int32_t first_index,
                      int32_t w, float* y, int32_t* argmax) {
  variants().front().row(row0, row1, out_w, first_index, w, y, argmax);
}

void max_pool_2x2_blocked16_row(const float* row0, const float* row1, int64_t out_w,
                              int32_t first_index, int32_t w, float* y, int32_t* argmax) {
  variants().front().blocked16_row(row0, row1, out_w, first_index, w, y, argmax);
}

void max_pool_2x2_blocked16_row_backward(const float* dy, const int32_t* argmax, int64_t out_w,
                                       int32_t first_index, int32_t w, float* dx_row0,
                                       float* dx_row1) {
  variants().front().blocked16_row_backward(dy, argmax, out_w, first_index, w, dx_row0, dx_row1);
}

std::vector<std::string> max_pool_2x2_variants() {
  std::vector<std::string> names;
  for (const Variant& v : variants()) names.push_back(v.name);
  return names;
}

void max_pool_2x2_row_variant(int variant, const float* row0, const float* row1, int64_t out_w,
                              int32_t first_index, int32_t w, float* y, int32_t* argmax) {
  variants().at(static_cast<size_t>(variant)).row(row0, row1, out_w, first_index, w, y, argmax);
}

void max_pool_2x2_blocked16_row_variant(int variant, const float* row0, const float* row1,
                                      int64_t out_w, int32_t first_index, int32_t w, float* y,
                                      int32_t* argmax) {
  const Variant& chosen = variants().at(static_cast<size_t>(variant));
  chosen.blocked16_row(row0, row1, out_w, first_index, w, y, argmax);
}

void max_pool_2x2_blocked16_row_backward_variant(int variant, const float* dy, const int32_t* argmax,
                                               int64_t out_w, int32_t first_index, int32_t w,
                                               float* dx_row0, float* dx_row1) {
  const Variant& chosen = variants().at(static_cast<size_t>(variant));
  chosen.blocked16_row_backward(dy, argmax, out_w, first_index, w, dx_row0, dx_row1);
}

}  // namespace bnlab::kernels
#endif  // HWY_ONCE
