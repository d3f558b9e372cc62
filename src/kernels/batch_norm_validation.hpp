// The checks at the batch-norm API's edge: each throws bnlab::Error naming the
// argument and its value (batch_norm_validation.cpp; validate() is public).
#pragma once

#include <cstdint>

#include "bnlab/batch_norm.hpp"

namespace bnlab::kernels {

void check_not_null(const void* p, const char* name);
void check_eps(double eps);
// Both running statistics or neither, momentum in [0, 1].
void check_running(const RunningStats& running);
// count values per channel, of which this part holds n*s.
void check_count(int64_t count, const BatchNormShape& sh);
// Training needs more than 1 value per channel (ErrorCode::too_few_values).
void check_training_count(int64_t count, const BatchNormShape& sh);
// What every training forward checks first: the shape, eps, the running statistics.
void check_training_arguments(const BatchNormShape& sh, double eps, const RunningStats& running);
// The inputs every backward reads; the fused ReLU's backward needs y for its mask.
void check_backward_inputs(const float* x, const float* dy, const float* save_mean,
                           const float* save_invstd, Activation activation, const float* y);
// Inference, fp32 and bf16 alike: x, y and the running statistics are given.
// Called before any scratch of c values is taken, so that a null buffer with a
// huge c is an error, not a giant allocation.
void check_inference_inputs(const void* x, const void* y, const float* running_mean,
                            const float* running_var);
// Then scale = weight / sqrt(running_var + eps) and shift = bias into c floats each
// (checking the inputs again).
void inference_coefficients(const void* x, const void* y, const BatchNormShape& sh,
                            const float* weight, const float* bias, const float* running_mean,
                            const float* running_var, double eps, float* scale, float* shift);

}  // namespace bnlab::kernels
