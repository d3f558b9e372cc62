// The 2x2 max pool's row loop: scalar (for the plain variant) and vector,
// written once with Highway and compiled per x86 instruction set; see
// max_pool2d.hpp for the formula and the tie and NaN rules.
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

// The winners of `lanes` adjacent windows whose four candidates are a, b
// (row0, even and odd columns), c, e (row1); index of window 0's top left
// is base[0], and so on.
HWY_INLINE void Windows(DF df, hn::Vec<DF> a, hn::Vec<DF> b, hn::Vec<DF> c, hn::Vec<DF> e,
                        hn::Vec<DI> base, int32_t w, hn::Vec<DF>& best, hn::Vec<DI>& at) {
  const DI di;
  best = a;
  at = base;
  // A candidate wins when larger, or when it is NaN and the best so far is not.
  const auto consider = [&](hn::Vec<DF> v, int32_t offset) {
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

using RowFn = void (*)(const float*, const float*, int64_t, int32_t, int32_t, float*, int32_t*);
RowFn GetRow() { return &MaxPool2x2Row; }

}  // namespace HWY_NAMESPACE
}  // namespace bnlab::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include "kernels/simd_targets.hpp"

namespace bnlab::kernels {

HWY_EXPORT(GetRow);

namespace {

using RowFn = void (*)(const float*, const float*, int64_t, int32_t, int32_t, float*, int32_t*);

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

struct Variant {
  std::string name;
  RowFn row;
};

// Every compiled target this CPU supports, best first, then the plain loop.
const std::vector<Variant>& variants() {
  static const std::vector<Variant> table = [] {
    std::vector<Variant> out;
    for_each_simd_target(
        [&](const char* name) { out.push_back({name, HWY_DYNAMIC_DISPATCH(GetRow)()}); });
    out.push_back({"plain", plain_row});
    return out;
  }();
  return table;
}

}  // namespace

void max_pool_2x2_row(const float* row0, const float* row1, int64_t out_w, int32_t first_index,
                      int32_t w, float* y, int32_t* argmax) {
  variants().front().row(row0, row1, out_w, first_index, w, y, argmax);
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

}  // namespace bnlab::kernels
#endif  // HWY_ONCE
