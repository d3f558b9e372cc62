// The bf16 conversions written once with Google Highway and compiled for each
// x86 instruction set; each gives the bits of the plain loops in
// bf16_convert.cpp (Highway 1.0's own DemoteTo truncates, so the rounding is
// done here on the integer bits). Tails shorter than a vector go through the
// plain functions.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/bf16_convert_simd.cpp"
#include <hwy/foreach_target.h>  // re-includes this file once per target
#include <hwy/highway.h>

#include "bnlab/batch_norm_bf16.hpp"
#include "kernels/bf16_convert.hpp"

HWY_BEFORE_NAMESPACE();
namespace bnlab::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
using DU32 = hn::RebindToUnsigned<DF>;
using DI32 = hn::RebindToSigned<DF>;
using DU16 = hn::Rebind<uint16_t, DF>;  // half-width: one u16 lane per float lane

void ToFloat(const uint16_t* in, float* out, int64_t count) {
  const DF df;
  const DU32 du32;
  const DU16 du16;
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + lanes <= count; i += lanes) {
    const auto wide = hn::PromoteTo(du32, hn::LoadU(du16, in + i));
    hn::StoreU(hn::BitCast(df, hn::ShiftLeft<16>(wide)), df, out + i);
  }
  for (; i < count; ++i) out[i] = bf16_to_float(in[i]);
}

// float_to_bf16 lane by lane: signed zero for zeros and denormals, the top
// half with the quiet bit for NaN, else bits + 0x7fff + lsb, top half.
void FromFloat(const float* in, uint16_t* out, int64_t count) {
  const DF df;
  const DU32 du32;
  const DI32 di32;
  const DU16 du16;
  const auto exponent_mask = hn::Set(du32, 0x7f800000u);
  const auto round_bias = hn::Set(du32, 0x7fffu);
  const auto one = hn::Set(du32, 1u);
  const auto quiet = hn::Set(du32, 0x0040u);
  const auto sign = hn::Set(du32, 0x8000u);
  const int64_t lanes = static_cast<int64_t>(hn::Lanes(df));
  int64_t i = 0;
  for (; i + lanes <= count; i += lanes) {
    const auto v = hn::LoadU(df, in + i);
    const auto bits = hn::BitCast(du32, v);
    const auto top = hn::ShiftRight<16>(bits);
    auto r = hn::ShiftRight<16>(hn::Add(hn::Add(bits, round_bias), hn::And(top, one)));
    r = hn::IfThenElse(hn::RebindMask(du32, hn::IsNaN(v)), hn::Or(top, quiet), r);
    r = hn::IfThenElse(hn::Eq(hn::And(bits, exponent_mask), hn::Zero(du32)), hn::And(top, sign), r);
    hn::StoreU(hn::DemoteTo(du16, hn::BitCast(di32, r)), du16, out + i);
  }
  for (; i < count; ++i) out[i] = float_to_bf16(in[i]);
}

const Bf16Conversions* GetConversions() {
  static const Bf16Conversions conversions{hwy::TargetName(HWY_TARGET), ToFloat, FromFloat};
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
