// The C API's GroupNorm and LayerNorm functions: thin shells over the C++
// kernels (bnlab/group_norm.hpp, bnlab/layer_norm.hpp); every exception becomes
// a status and a bnlab_last_error() message (capi/c_api_status.hpp).
#include "bnlab/bnlab.h"
#include "bnlab/group_norm.hpp"
#include "bnlab/layer_norm.hpp"
#include "capi/c_api_status.hpp"

namespace {

bnlab::GroupNormShape group_shape(int64_t n, int64_t c, int64_t s, int64_t groups,
                                  const bnlab_layout& layout) {
  return {n, c, s, groups, static_cast<bnlab::Layout>(bnlab::capi::enum_bits(layout))};
}

}  // namespace

extern "C" {

bnlab_status bnlab_group_norm_forward(const float* x, int64_t n, int64_t c, int64_t s,
                                      int64_t groups, bnlab_layout layout, const float* weight,
                                      const float* bias, double eps, float* y, float* save_mean,
                                      float* save_invstd) {
  return bnlab::capi::guarded([&] {
    bnlab::group_norm_forward(x, group_shape(n, c, s, groups, layout), weight, bias, eps, y,
                              save_mean, save_invstd);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_group_norm_backward(const float* x, const float* dy, int64_t n, int64_t c,
                                       int64_t s, int64_t groups, bnlab_layout layout,
                                       const float* weight, const float* save_mean,
                                       const float* save_invstd, float* dx, float* dweight,
                                       float* dbias) {
  return bnlab::capi::guarded([&] {
    bnlab::group_norm_backward(x, dy, group_shape(n, c, s, groups, layout), weight, save_mean,
                               save_invstd, dx, dweight, dbias);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_layer_norm_forward(const float* x, int64_t rows, int64_t cols,
                                      const float* weight, const float* bias, double eps, float* y,
                                      float* save_mean, float* save_invstd) {
  return bnlab::capi::guarded([&] {
    bnlab::layer_norm_forward(x, {rows, cols}, weight, bias, eps, y, save_mean, save_invstd);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_layer_norm_backward(const float* x, const float* dy, int64_t rows, int64_t cols,
                                       const float* weight, const float* save_mean,
                                       const float* save_invstd, float* dx, float* dweight,
                                       float* dbias) {
  return bnlab::capi::guarded([&] {
    bnlab::layer_norm_backward(x, dy, {rows, cols}, weight, save_mean, save_invstd, dx, dweight,
                               dbias);
    return BNLAB_OK;
  });
}

}  // extern "C"
