/* The C API called from C, as its users call it: a layout is any int here (in
 * C an enum holds any value of its type), which C++ may not load as the enum.
 * fuzz_capi.cpp passes the fuzzed int through these. */
#include "bnlab/bnlab.h"

bnlab_status fuzz_forward_training(const float* x, int64_t n, int64_t c, int64_t s, int layout,
                                   const float* weight, const float* bias, float* running_mean,
                                   float* running_var, double momentum, int unbiased, double eps,
                                   float* y, float* save_mean, float* save_invstd) {
  return bnlab_batch_norm_forward_training(x, n, c, s, (bnlab_layout)layout, weight, bias,
                                           running_mean, running_var, momentum, unbiased, eps, y,
                                           save_mean, save_invstd);
}

bnlab_status fuzz_forward_inference(const float* x, int64_t n, int64_t c, int64_t s, int layout,
                                    const float* weight, const float* bias,
                                    const float* running_mean, const float* running_var,
                                    double eps, float* y) {
  return bnlab_batch_norm_forward_inference(x, n, c, s, (bnlab_layout)layout, weight, bias,
                                            running_mean, running_var, eps, y);
}

bnlab_status fuzz_backward(const float* x, const float* dy, int64_t n, int64_t c, int64_t s,
                           int layout, const float* weight, const float* save_mean,
                           const float* save_invstd, float* dx, float* dweight, float* dbias) {
  return bnlab_batch_norm_backward(x, dy, n, c, s, (bnlab_layout)layout, weight, save_mean,
                                   save_invstd, dx, dweight, dbias);
}

/* The bf16 twins (bf16 tensors as uint16_t bit patterns). */
bnlab_status fuzz_forward_training_bf16(const uint16_t* x, int64_t n, int64_t c, int64_t s,
                                        int layout, const float* weight, const float* bias,
                                        float* running_mean, float* running_var, double momentum,
                                        int unbiased, double eps, uint16_t* y, float* save_mean,
                                        float* save_invstd) {
  return bnlab_batch_norm_forward_training_bf16(x, n, c, s, (bnlab_layout)layout, weight, bias,
                                                running_mean, running_var, momentum, unbiased, eps,
                                                y, save_mean, save_invstd);
}

bnlab_status fuzz_forward_inference_bf16(const uint16_t* x, int64_t n, int64_t c, int64_t s,
                                         int layout, const float* weight, const float* bias,
                                         const float* running_mean, const float* running_var,
                                         double eps, uint16_t* y) {
  return bnlab_batch_norm_forward_inference_bf16(x, n, c, s, (bnlab_layout)layout, weight, bias,
                                                 running_mean, running_var, eps, y);
}

bnlab_status fuzz_backward_bf16(const uint16_t* x, const uint16_t* dy, int64_t n, int64_t c,
                                int64_t s, int layout, const float* weight, const float* save_mean,
                                const float* save_invstd, uint16_t* dx, float* dweight,
                                float* dbias) {
  return bnlab_batch_norm_backward_bf16(x, dy, n, c, s, (bnlab_layout)layout, weight, save_mean,
                                        save_invstd, dx, dweight, dbias);
}
