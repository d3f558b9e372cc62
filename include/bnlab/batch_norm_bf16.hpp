// Batch normalization on bf16 tensors (bfloat16 bit patterns in uint16_t),
// beside the fp32 kernels of batch_norm.hpp: same shapes, layouts, formulas,
// checks and statuses. Weight, bias, the batch statistics and the running
// statistics stay float; the math is float per element (bf16 widens exactly),
// sums in float blocks merged in double, as in the fp32 kernels; outputs are
// rounded to the nearest bf16, ties to even. BN is memory-bound, so bf16
// halves its bytes.
#pragma once

#include <cstdint>
#include <string>

#include "bnlab/batch_norm.hpp"

namespace bnlab {

// float -> bf16, round to nearest even. NaN stays NaN (made quiet, sign and top
// payload kept); float denormals become a signed zero, as AVX512-BF16's
// VCVTNEPS2BF16 does, so every variant gives the same bits.
uint16_t float_to_bf16(float value);
inline float bf16_to_float(uint16_t value) {  // exact: the bf16 bits are a float's top half
  const uint32_t bits = static_cast<uint32_t>(value) << 16;
  float out;
  __builtin_memcpy(&out, &bits, sizeof out);
  return out;
}
// count values, with the selected conversion variant (vector where the CPU has one).
void floats_to_bf16(const float* in, uint16_t* out, int64_t count);
void bf16_to_floats(const uint16_t* in, float* out, int64_t count);

// The conversion variant in use, those this CPU runs ("auto,...,plain"), and a
// choice among them (tests and benchmarks): avx512_bf16 is the CPU's own
// instruction, the others Highway's per-target code, plain the scalar loop.
std::string bf16_conversion_variant();
std::string bf16_conversion_variants();
void set_bf16_conversion_variant(const std::string& name);  // throws on unknown names

// As batch_norm_forward_training, the fused ReLU included (applied before the
// rounding to bf16); y may alias x.
BatchNormStatus batch_norm_forward_training_bf16(const uint16_t* x, const BatchNormShape& shape,
                                                 const float* weight, const float* bias,
                                                 const RunningStats& running, double eps,
                                                 uint16_t* y, float* save_mean,
                                                 float* save_invstd,
                                                 Activation activation = Activation::none);

// As batch_norm_forward_inference; y may alias x.
void batch_norm_forward_inference_bf16(const uint16_t* x, const BatchNormShape& shape,
                                       const float* weight, const float* bias,
                                       const float* running_mean, const float* running_var,
                                       double eps, uint16_t* y,
                                       Activation activation = Activation::none);

// As batch_norm_backward: dx in bf16, dweight and dbias in float; every output
// may be null. With activation == relu, y (the forward's bf16 output) gives
// the mask: dy is taken as 0 where y <= 0.
void batch_norm_backward_bf16(const uint16_t* x, const uint16_t* dy, const BatchNormShape& shape,
                              const float* weight, const float* save_mean,
                              const float* save_invstd, uint16_t* dx, float* dweight,
                              float* dbias, Activation activation = Activation::none,
                              const uint16_t* y = nullptr);

}  // namespace bnlab
