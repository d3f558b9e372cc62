// Argument checks of the batch-norm API (batch_norm_validation.hpp).
#include "kernels/batch_norm_validation.hpp"

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "bnlab/error.hpp"

namespace bnlab {

void validate(const BatchNormShape& shape) {
  const std::pair<const char*, int64_t> sizes[] = {{"n", shape.n}, {"c", shape.c}, {"s", shape.s}};
  for (const auto& [name, value] : sizes)
    if (value < 0)
      throw Error(std::string(name) + " must be non-negative, got " + std::to_string(value));
  if (shape.layout != Layout::channels_first && shape.layout != Layout::channels_last &&
      shape.layout != Layout::blocked16)
    throw Error("layout must be channels_first (0), channels_last (1) or blocked16 (2), got " +
                std::to_string(static_cast<int>(shape.layout)));
  if (shape.layout == Layout::blocked16 && shape.c % 16 != 0)
    throw Error("layout blocked16 needs c to be a multiple of 16, got c=" +
                std::to_string(shape.c));
  int64_t product = 0;
  if (__builtin_mul_overflow(shape.n, shape.c, &product) ||
      __builtin_mul_overflow(product, shape.s, &product) ||
      product > std::numeric_limits<int64_t>::max() / 8)
    throw Error("n*c*s overflows: n=" + std::to_string(shape.n) + ", c=" + std::to_string(shape.c) +
                ", s=" + std::to_string(shape.s));
}

namespace kernels {

void check_not_null(const void* p, const char* name) {
  if (p == nullptr) throw Error(std::string(name) + " must not be null");
}

void check_eps(double eps) {
  if (!(eps > 0.0) || !std::isfinite(eps))
    throw Error("eps must be positive and finite, got " + std::to_string(eps));
}

void check_running(const RunningStats& running) {
  if ((running.mean == nullptr) != (running.var == nullptr))
    throw Error(std::string(running.mean == nullptr ? "running_mean" : "running_var") +
                " must not be null when the other running statistic is given");
  if (running.mean != nullptr && !(running.momentum >= 0.0 && running.momentum <= 1.0))
    throw Error("momentum must be in [0, 1], got " + std::to_string(running.momentum));
}

void check_count(int64_t count, const BatchNormShape& sh) {
  if (count < sh.per_channel())
    throw Error("count must be at least this part's n*s=" + std::to_string(sh.per_channel()) +
                ", got " + std::to_string(count));
}

void check_training_count(int64_t count, const BatchNormShape& sh) {
  if (count <= 1)
    throw Error(ErrorCode::too_few_values,
                "expected more than 1 value per channel when training, got " +
                    std::to_string(count) + " (n=" + std::to_string(sh.n) +
                    ", s=" + std::to_string(sh.s) + ")");
}

void check_training_arguments(const BatchNormShape& sh, double eps, const RunningStats& running) {
  validate(sh);
  check_eps(eps);
  check_running(running);
}

void check_backward_inputs(const float* x, const float* dy, const float* save_mean,
                           const float* save_invstd, Activation activation, const float* y) {
  check_not_null(x, "x");
  check_not_null(dy, "dy");
  check_not_null(save_mean, "save_mean");
  check_not_null(save_invstd, "save_invstd");
  if (activation == Activation::relu)
    check_not_null(y, "y (the fused ReLU's output, needed for its mask)");
}

void check_inference_inputs(const void* x, const void* y, const float* running_mean,
                            const float* running_var) {
  check_not_null(x, "x");
  check_not_null(y, "y");
  check_not_null(running_mean, "running_mean");
  check_not_null(running_var, "running_var");
}

void inference_coefficients(const void* x, const void* y, const BatchNormShape& sh,
                            const float* weight, const float* bias, const float* running_mean,
                            const float* running_var, double eps, float* scale, float* shift) {
  check_inference_inputs(x, y, running_mean, running_var);
  for (int64_t j = 0; j < sh.c; ++j) {
    const double w = weight != nullptr ? weight[j] : 1.0;
    scale[j] = static_cast<float>(w / std::sqrt(static_cast<double>(running_var[j]) + eps));
    shift[j] = bias != nullptr ? bias[j] : 0.0f;
  }
}

}  // namespace kernels
}  // namespace bnlab
