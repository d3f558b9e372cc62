// The C API: a thin shell over the C++ kernels. Every C++ exception stops
// here and becomes a status plus a message for bnlab_last_error().
#include <exception>
#include <cstring>
#include <string>

#include "bnlab/batch_norm.hpp"
#include "bnlab/bnlab.h"
#include "bnlab/error.hpp"
#include "bnlab/threading.hpp"
#include "capi/c_api_status.hpp"

namespace bnlab::capi {

thread_local std::string t_last_error;

bnlab_status fail(bnlab_status status, const char* message) {
  t_last_error = message;
  return status;
}

void clear_last_error() { t_last_error.clear(); }

}  // namespace bnlab::capi

namespace {

using bnlab::capi::enum_bits;
using bnlab::capi::fail;
using bnlab::capi::guarded;
using bnlab::capi::kNonFinite;
using bnlab::capi::make_shape;

}  // namespace

extern "C" {

bnlab_status bnlab_batch_norm_forward_training(const float* x, int64_t n, int64_t c, int64_t s,
                                               bnlab_layout layout, const float* weight,
                                               const float* bias, float* running_mean,
                                               float* running_var, double momentum,
                                               int unbiased_running_var, double eps, float* y,
                                               float* save_mean, float* save_invstd) {
  return guarded([&] {
    const bnlab::RunningStats running{running_mean, running_var, momentum,
                                      unbiased_running_var != 0};
    const auto status = bnlab::batch_norm_forward_training(x, make_shape(n, c, s, layout), weight,
                                                           bias, running, eps, y, save_mean,
                                                           save_invstd);
    if (status == bnlab::BatchNormStatus::non_finite) return fail(BNLAB_NON_FINITE, kNonFinite);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_batch_norm_forward_inference(const float* x, int64_t n, int64_t c, int64_t s,
                                                bnlab_layout layout, const float* weight,
                                                const float* bias, const float* running_mean,
                                                const float* running_var, double eps, float* y) {
  return guarded([&] {
    bnlab::batch_norm_forward_inference(x, make_shape(n, c, s, layout), weight, bias, running_mean,
                                        running_var, eps, y);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_batch_norm_backward(const float* x, const float* dy, int64_t n, int64_t c,
                                       int64_t s, bnlab_layout layout, const float* weight,
                                       const float* save_mean, const float* save_invstd,
                                       float* dx, float* dweight, float* dbias) {
  return guarded([&] {
    bnlab::batch_norm_backward(x, dy, make_shape(n, c, s, layout), weight, save_mean, save_invstd,
                               dx, dweight, dbias);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_batch_norm_stats(const float* x, int64_t n, int64_t c, int64_t s,
                                    bnlab_layout layout, double* mean, double* m2) {
  return guarded([&] {
    bnlab::batch_norm_stats(x, make_shape(n, c, s, layout), mean, m2);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_batch_norm_merge_stats(int64_t parts, int64_t c, const int64_t* counts,
                                          const double* means, const double* m2s, double* mean,
                                          double* m2, int64_t* count) {
  return guarded([&] {
    bnlab::batch_norm_merge_stats(parts, c, counts, means, m2s, mean, m2, count);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_batch_norm_forward_with_stats(
    const float* x, int64_t n, int64_t c, int64_t s, bnlab_layout layout, const float* weight,
    const float* bias, const double* mean, const double* m2, int64_t count, float* running_mean,
    float* running_var, double momentum, int unbiased_running_var, double eps, float* y,
    float* save_mean, float* save_invstd) {
  return guarded([&] {
    const bnlab::RunningStats running{running_mean, running_var, momentum,
                                      unbiased_running_var != 0};
    const auto status =
        bnlab::batch_norm_forward_with_stats(x, make_shape(n, c, s, layout), weight, bias, mean, m2,
                                             count, running, eps, y, save_mean, save_invstd);
    if (status == bnlab::BatchNormStatus::non_finite) return fail(BNLAB_NON_FINITE, kNonFinite);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_batch_norm_backward_reduce(const float* x, const float* dy, int64_t n, int64_t c,
                                              int64_t s, bnlab_layout layout,
                                              const float* save_mean, const float* save_invstd,
                                              double* sum_dy, double* sum_dy_xhat) {
  return guarded([&] {
    bnlab::batch_norm_backward_reduce(x, dy, make_shape(n, c, s, layout), save_mean, save_invstd,
                                      sum_dy, sum_dy_xhat);
    return BNLAB_OK;
  });
}

bnlab_status bnlab_batch_norm_backward_with_sums(const float* x, const float* dy, int64_t n,
                                                 int64_t c, int64_t s, bnlab_layout layout,
                                                 const float* weight, const float* save_mean,
                                                 const float* save_invstd, const double* sum_dy,
                                                 const double* sum_dy_xhat, int64_t count,
                                                 float* dx) {
  return guarded([&] {
    bnlab::batch_norm_backward_with_sums(x, dy, make_shape(n, c, s, layout), weight, save_mean,
                                         save_invstd, sum_dy, sum_dy_xhat, count, dx);
    return BNLAB_OK;
  });
}

const char* bnlab_status_string(bnlab_status status) {
  switch (enum_bits(status)) {
    case BNLAB_OK: return "ok";
    case BNLAB_INVALID_ARGUMENT: return "invalid argument";
    case BNLAB_TOO_FEW_VALUES: return "too few values per channel";
    case BNLAB_NON_FINITE: return "non-finite statistics";
  }
  return "unknown status";
}

const char* bnlab_last_error(void) { return bnlab::capi::t_last_error.c_str(); }

void bnlab_set_num_threads(int threads) {
  // void in the ABI: a count above the maximum is clamped to it (and named in
  // bnlab_last_error()) rather than thrown across the C boundary.
  bnlab::capi::clear_last_error();
  try {
    bnlab::set_num_threads(threads);
  } catch (const bnlab::Error& e) {
    fail(BNLAB_INVALID_ARGUMENT, e.what());
    bnlab::set_num_threads(bnlab::kMaxThreads);
  }
}

}  // extern "C"
