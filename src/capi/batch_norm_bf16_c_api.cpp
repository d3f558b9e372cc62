// The C API's bf16 batch-norm functions: thin shells over the C++ kernels
// (bnlab/batch_norm_bf16.hpp); every exception becomes a status and a
// bnlab_last_error() message (capi/c_api_status.hpp).
#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/bnlab.h"
#include "capi/c_api_status.hpp"

using bnlab::capi::fail;
using bnlab::capi::guarded;
using bnlab::capi::make_shape;

extern "C" {

bnlab_status bnlab_batch_norm_forward_training_bf16(
    const uint16_t* x, int64_t n, int64_t c, int64_t s, bnlab_layout layout, const float* weight,
    const float* bias, float* running_mean, float* running_var, double momentum,
    int unbiased_running_var, double eps, uint16_t* y, float* save_mean, float* save_invstd) {
  return guarded([&] {
    const bnlab::RunningStats running{running_mean, running_var, momentum,
                                      unbiased_running_var != 0};
    const auto status = bnlab::batch_norm_forward_training_bf16(
        x, make_shape(n, c, s, layout), weight, bias, running, eps, y, save_mean, save_invstd);
    if (status == bnlab::BatchNormStatus::non_finite)
      return fail(BNLAB_NON_FINITE, bnlab::capi::kNonFinite);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_batch_norm_forward_inference_bf16(const uint16_t* x, int64_t n, int64_t c,
                                                     int64_t s, bnlab_layout layout,
                                                     const float* weight, const float* bias,
                                                     const float* running_mean,
                                                     const float* running_var, double eps,
                                                     uint16_t* y) {
  return guarded([&] {
    bnlab::batch_norm_forward_inference_bf16(x, make_shape(n, c, s, layout), weight, bias,
                                             running_mean, running_var, eps, y);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_batch_norm_backward_bf16(const uint16_t* x, const uint16_t* dy, int64_t n,
                                            int64_t c, int64_t s, bnlab_layout layout,
                                            const float* weight, const float* save_mean,
                                            const float* save_invstd, uint16_t* dx,
                                            float* dweight, float* dbias) {
  return guarded([&] {
    bnlab::batch_norm_backward_bf16(x, dy, make_shape(n, c, s, layout), weight, save_mean,
                                    save_invstd, dx, dweight, dbias);
    return BNLAB_OK;
  });
}

}  // extern "C"
