// ReLU on bf16 values (bit patterns, see MemoryFormat), for ReLU and for the
// ReLU a BatchNorm applies in bf16 chains: the fp32 rules on the widened
// values, so the results are the fp32 ones exactly (no rounding: y is x or 0,
// dx is dy or 0). y may alias x, dx may alias dy.
#pragma once

#include <cstdint>

namespace bnlab::nn {

// y = 0 where x < 0, else x.
void relu_bf16(const uint16_t* x, uint16_t* y, int64_t count);
// dx = 0 where y <= 0, else dy.
void relu_backward_bf16(const uint16_t* dy, const uint16_t* y, uint16_t* dx, int64_t count);

}  // namespace bnlab::nn
