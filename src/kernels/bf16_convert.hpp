// The bf16 <-> float conversion loops the bf16 kernels run, one table per
// variant: the plain loops (bf16_convert.cpp), Highway's per-target ones
// (bf16_convert_simd.cpp) and AVX512-BF16's own instruction
// (bf16_convert_native.cpp). Every variant gives the same bits.
#pragma once

#include <cstdint>

#include "kernels/batch_norm_loops.hpp"  // Moments

namespace bnlab::kernels {

// The bf16 backward's operands: x, dy and the fused ReLU's output (null
// without it), at an offset.
struct Bf16Grad {
  const uint16_t *x, *dy, *relu_y;
  Bf16Grad at(int64_t offset) const {
    return {x + offset, dy + offset, relu_y == nullptr ? nullptr : relu_y + offset};
  }
};

struct Bf16Conversions {
  const char* name;
  void (*to_float)(const uint16_t* in, float* out, int64_t count);
  void (*from_float)(const float* in, uint16_t* out, int64_t count);  // nearest, ties to even
  // y = bf16((x - mean)*scale + shift), zeroed first where it is below zero
  // when relu (NaN kept, as the fp32 kernels' fused ReLU): a span of one
  // channel, or `rows` contiguous rows of `width` columns, column w channel w
  // of the arrays. With stream, the output may be written with non-temporal
  // stores (no read of its lines first; the caller fences): for outputs too
  // large to be read back from cache. Variants without them ignore it.
  void (*span_normalize)(const uint16_t* x, uint16_t* y, int64_t len, float mean, float scale,
                         float shift, bool relu, bool stream);
  void (*rows_normalize)(const uint16_t* x, uint16_t* y, int64_t rows, int64_t width,
                         const float* mean, const float* scale, const float* shift, bool relu,
                         bool stream);
  // dx = bf16(a*g + b*(x - mean) + c) with g = dy, or 0 where the fused ReLU's
  // output relu_y (bf16, null without it) is not above zero; the same two
  // shapes of run.
  void (*span_grad_input)(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y,
                          uint16_t* dx, int64_t len, float mean, float a, float b, float c,
                          bool stream);
  void (*rows_grad_input)(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y,
                          uint16_t* dx, int64_t rows, int64_t width, const float* mean,
                          const float* a, const float* b, const float* c, bool stream);
  // sum_dy += sum(g), sum_dy_xmu += sum(g*(x - mean)) per channel (per column
  // of rows), g as above, in float blocks added in double.
  void (*span_grad_sums)(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y,
                         int64_t len, float mean, double* sum_dy, double* sum_dy_xmu);
  void (*rows_grad_sums)(const uint16_t* x, const uint16_t* dy, const uint16_t* relu_y,
                         int64_t rows, int64_t width, const float* mean, double* sum_dy,
                         double* sum_dy_xmu);
  // Count, mean and m2 of a span; per column of rows, merged into out[w]
  // (float blocks, merged in double).
  Moments (*span_moments)(const uint16_t* x, int64_t len);
  void (*rows_moments)(const uint16_t* x, int64_t rows, int64_t width, Moments* out);
};

const Bf16Conversions* plain_bf16_conversions();
// VCVTNEPS2BF16 (conversion and the fused loops, which stream) when the CPU
// has AVX512-BF16, else null.
const Bf16Conversions* native_bf16_conversions();
// Highway's variants this CPU runs, best first.
int simd_bf16_variant_count();
const Bf16Conversions* simd_bf16_conversions(int index);

// The selected variant (the best this CPU runs unless set_bf16_conversion_variant chose one).
const Bf16Conversions& bf16_conversions();

}  // namespace bnlab::kernels
