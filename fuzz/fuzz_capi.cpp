// libFuzzer target: the C API's argument checks (include/bnlab/bnlab.h), the
// fp32 batch-norm calls and their bf16 twins. The input chooses a function, sizes (small, extreme or raw 64-bit), a layout (any
// int), eps, momentum, which pointers are NULL, and the floats. Buffers are
// real and of the claimed size when the sizes are valid and small; when they
// are invalid (negative, overflowing, a bad layout) the pointers are a few
// floats, which the API must not touch; when valid but too large to allocate
// the pointers are NULL. Properties: a known status, a message on every
// failure, INVALID_ARGUMENT for invalid arguments, and no crash (ASan, UBSan).
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <vector>

#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/bnlab.h"

// capi_calls.c: the C API with the layout as an int, called from C.
extern "C" {
bnlab_status fuzz_forward_training(const float* x, int64_t n, int64_t c, int64_t s, int layout,
                                   const float* weight, const float* bias, float* running_mean,
                                   float* running_var, double momentum, int unbiased, double eps,
                                   float* y, float* save_mean, float* save_invstd);
bnlab_status fuzz_forward_inference(const float* x, int64_t n, int64_t c, int64_t s, int layout,
                                    const float* weight, const float* bias,
                                    const float* running_mean, const float* running_var,
                                    double eps, float* y);
bnlab_status fuzz_backward(const float* x, const float* dy, int64_t n, int64_t c, int64_t s,
                           int layout, const float* weight, const float* save_mean,
                           const float* save_invstd, float* dx, float* dweight, float* dbias);
bnlab_status fuzz_forward_training_bf16(const uint16_t* x, int64_t n, int64_t c, int64_t s,
                                        int layout, const float* weight, const float* bias,
                                        float* running_mean, float* running_var, double momentum,
                                        int unbiased, double eps, uint16_t* y, float* save_mean,
                                        float* save_invstd);
bnlab_status fuzz_forward_inference_bf16(const uint16_t* x, int64_t n, int64_t c, int64_t s,
                                         int layout, const float* weight, const float* bias,
                                         const float* running_mean, const float* running_var,
                                         double eps, uint16_t* y);
bnlab_status fuzz_backward_bf16(const uint16_t* x, const uint16_t* dy, int64_t n, int64_t c,
                                int64_t s, int layout, const float* weight, const float* save_mean,
                                const float* save_invstd, uint16_t* dx, float* dweight,
                                float* dbias);
}

namespace {

constexpr int64_t kMaxValues = int64_t{1} << 16;

int64_t fuzzed_size(FuzzedDataProvider& in) {
  static constexpr int64_t kExtremes[] = {-1,
                                          std::numeric_limits<int64_t>::min(),
                                          std::numeric_limits<int64_t>::max(),
                                          int64_t{1} << 31,
                                          int64_t{1} << 32,
                                          int64_t{1} << 62,
                                          int64_t{1} << 60,
                                          16,
                                          32};
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0: return in.ConsumeIntegralInRange<int64_t>(0, 8);
    case 1: return in.PickValueInArray(kExtremes);
    case 2: return in.ConsumeIntegral<int64_t>();
    default: return in.ConsumeIntegralInRange<int64_t>(0, 64);
  }
}

double fuzzed_double(FuzzedDataProvider& in, double usual) {
  static constexpr double kExtremes[] = {0.0, -1.0, 1e-5, 0.1, 1.0, 1.5, 1e308, -0.0,
                                         std::numeric_limits<double>::infinity(),
                                         std::numeric_limits<double>::quiet_NaN(),
                                         std::numeric_limits<double>::denorm_min()};
  switch (in.ConsumeIntegralInRange(0, 2)) {
    case 0: return usual;
    case 1: return in.PickValueInArray(kExtremes);
    default: return in.ConsumeFloatingPoint<double>();
  }
}

// bf16 bit patterns of floats, rounded to nearest even (the library's own rounding).
void floats_to_bf16_bits(const std::vector<float>& in, std::vector<uint16_t>& out) {
  bnlab::floats_to_bf16(in.data(), out.data(), static_cast<int64_t>(in.size()));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const int op = in.ConsumeIntegralInRange(0, 3);
  if (op == 3) {
    // Any int: clamped at the maximum, with a message; then back to one thread.
    const int threads = in.ConsumeIntegral<int>();
    bnlab_set_num_threads(threads);
    if (threads > 1024 && bnlab_last_error()[0] == '\0') std::abort();
    bnlab_set_num_threads(1);
    return 0;
  }
  bnlab_set_num_threads(in.ConsumeIntegralInRange(1, 3));
  const int64_t n = fuzzed_size(in), c = fuzzed_size(in), s = fuzzed_size(in);
  // Any int, as a C caller may pass (C++ may not hold it in the enum: see capi_calls.c).
  const int layout_bits =
      in.ConsumeBool() ? in.ConsumeIntegralInRange(0, 2) : in.ConsumeIntegral<int>();
  const double eps = fuzzed_double(in, 1e-5);
  const double momentum = fuzzed_double(in, 0.1);
  const int unbiased = in.ConsumeIntegral<int>();
  const uint16_t null_mask = in.ConsumeIntegral<uint16_t>();

  int64_t numel = 0;
  const bool bad_layout = layout_bits < 0 || layout_bits > 2 || (layout_bits == 2 && c % 16 != 0);
  const bool invalid = n < 0 || c < 0 || s < 0 || bad_layout || __builtin_mul_overflow(n, c, &numel) ||
                       __builtin_mul_overflow(numel, s, &numel) ||
                       numel > std::numeric_limits<int64_t>::max() / 8;
  const bool small = !invalid && numel <= kMaxValues && c <= kMaxValues;

  // Values: small sizes get buffers of their own size, invalid ones a few
  // floats the API must not reach, large valid ones none.
  const size_t values = small ? static_cast<size_t>(numel) : (invalid ? 4 : 0);
  const size_t channels = small ? static_cast<size_t>(c) : (invalid ? 4 : 0);
  std::vector<float> x(values), dy(values), y(values), dx(values);
  for (float& v : x) v = in.ConsumeFloatingPoint<float>();
  for (float& v : dy) v = in.ConsumeFloatingPoint<float>();
  std::vector<float> weight(channels, 1.0f), bias(channels), mean(channels), var(channels, 1.0f);
  std::vector<float> save_mean(channels), save_invstd(channels, 1.0f), dweight(channels),
      dbias(channels);
  for (float& v : var) v = std::fabs(in.ConsumeFloatingPoint<float>());
  // Last, so that inputs written before the bf16 calls decode as they did: the bf16
  // twin of the chosen call, on x and dy rounded to bf16.
  const bool bf16 = op != 3 && in.ConsumeBool();
  std::vector<uint16_t> xb(values), dyb(values), yb(values), dxb(values);
  if (bf16) {
    floats_to_bf16_bits(x, xb);
    floats_to_bf16_bits(dy, dyb);
  }
  int bit = 0;
  const auto ptr = [&](std::vector<float>& v) -> float* {
    const bool null = (null_mask >> (bit++ % 16)) & 1;
    return null || (!small && !invalid) ? nullptr : v.data();
  };
  const auto ptr16 = [&](std::vector<uint16_t>& v) -> uint16_t* {
    const bool null = (null_mask >> (bit++ % 16)) & 1;
    return null || (!small && !invalid) ? nullptr : v.data();
  };

  // BNLAB_FUZZ_PRINT=1 says what an input calls (to write up a finding).
  static const bool print = std::getenv("BNLAB_FUZZ_PRINT") != nullptr;
  if (print)
    std::fprintf(stderr,
                 "%s n=%lld c=%lld s=%lld layout=%d eps=%g momentum=%g unbiased=%d null_mask=0x%04x\n",
                 op == 0 ? (bf16 ? "forward_training_bf16" : "forward_training")
                 : op == 1 ? (bf16 ? "forward_inference_bf16" : "forward_inference")
                           : (bf16 ? "backward_bf16" : "backward"),
                 static_cast<long long>(n), static_cast<long long>(c), static_cast<long long>(s),
                 layout_bits, eps, momentum, unbiased, null_mask);

  bnlab_status status;
  if (bf16 && op == 0) {
    status = fuzz_forward_training_bf16(ptr16(xb), n, c, s, layout_bits, ptr(weight), ptr(bias),
                                        ptr(mean), ptr(var), momentum, unbiased, eps, ptr16(yb),
                                        ptr(save_mean), ptr(save_invstd));
  } else if (bf16 && op == 1) {
    status = fuzz_forward_inference_bf16(ptr16(xb), n, c, s, layout_bits, ptr(weight), ptr(bias),
                                         ptr(mean), ptr(var), eps, ptr16(yb));
  } else if (bf16) {
    status = fuzz_backward_bf16(ptr16(xb), ptr16(dyb), n, c, s, layout_bits, ptr(weight),
                                ptr(save_mean), ptr(save_invstd), ptr16(dxb), ptr(dweight),
                                ptr(dbias));
  } else if (op == 0) {
    status = fuzz_forward_training(ptr(x), n, c, s, layout_bits, ptr(weight), ptr(bias), ptr(mean),
                                   ptr(var), momentum, unbiased, eps, ptr(y), ptr(save_mean),
                                   ptr(save_invstd));
  } else if (op == 1) {
    status = fuzz_forward_inference(ptr(x), n, c, s, layout_bits, ptr(weight), ptr(bias),
                                    ptr(mean), ptr(var), eps, ptr(y));
  } else {
    status = fuzz_backward(ptr(x), ptr(dy), n, c, s, layout_bits, ptr(weight), ptr(save_mean),
                           ptr(save_invstd), ptr(dx), ptr(dweight), ptr(dbias));
  }
  if (status != BNLAB_OK && status != BNLAB_INVALID_ARGUMENT && status != BNLAB_TOO_FEW_VALUES &&
      status != BNLAB_NON_FINITE)
    std::abort();
  if (bnlab_status_string(status) == nullptr) std::abort();
  if (status != BNLAB_OK && bnlab_last_error()[0] == '\0') std::abort();
  if (invalid && status != BNLAB_INVALID_ARGUMENT) std::abort();
  if (op != 2 && !(eps > 0 && std::isfinite(eps)) && status != BNLAB_INVALID_ARGUMENT)
    std::abort();
  return 0;
}
