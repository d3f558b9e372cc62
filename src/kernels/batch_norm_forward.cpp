// The batch-norm forward: training (fused, or from given statistics for a
// synchronized BN), inference, and the statistics a synchronized BN exchanges.
// The walks are in batch_norm_walks.hpp; each call makes, over memory:
//   training 3 passes (read x for the moments, read x + write y), 2 over DRAM
//   when a large tensor is walked channel by channel or block by block
//   (batch_norm_walks.hpp); inference 2.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "bnlab/batch_norm.hpp"
#include "bnlab/error.hpp"
#include "kernels/batch_norm_validation.hpp"
#include "kernels/batch_norm_walks.hpp"
#include "kernels/split_mean.hpp"

namespace bnlab {
namespace kernels {
namespace {

bool finite_as_float(double v) {
  return std::isfinite(v) && std::fabs(v) <= std::numeric_limits<float>::max();
}

// The training forward's per-channel step over channels whose mean and m2
// come over `count` values each, its coefficients in the calling thread's
// workspace (ForwardFinish, batch_norm_walks.hpp).
ForwardFinish forward_finish(const BatchNormShape& sh, const float* weight, const float* bias,
                             const double* mean, const double* m2, int64_t count, double eps) {
  float* floats = Workspace::grown(workspace().channel_floats, 4 * sh.c);
  return {.weight = weight,
          .bias = bias,
          .mean = mean,
          .m2 = m2,
          .mean_f = floats,
          .scale = floats + sh.c,
          .shift = floats + 2 * sh.c,
          .invstd_f = floats + 3 * sh.c,
          .count = static_cast<double>(count),
          .eps = eps};
}

// The training forward from each channel's mean and m2:
//   var = m2/count, invstd = 1/sqrt(var + eps), y = act((x - mean)*invstd*weight + bias)
// with the mean split in two floats (split_mean.hpp), unless a walk has
// already written y and the coefficients (normalized), then save_*, and the
// running statistics when every statistic is finite.
BatchNormStatus forward_from_moments(const float* x, const BatchNormShape& sh,
                                     const ForwardFinish& f, bool normalized,
                                     const RunningStats& running, float* y, float* save_mean,
                                     float* save_invstd, Activation activation) {
  const int64_t c = sh.c;
  const double* mean = f.mean;
  const double* m2 = f.m2;
  const float* mean_f = f.mean_f;
  const float* invstd_f = f.invstd_f;
  const double count_d = f.count;
  if (!normalized) {
    for (int64_t j = 0; j < c; ++j) f(j);
    if (sh.numel() > 0)
      normalize(x, y, sh, f.mean_f, f.scale, f.shift, activation == Activation::relu);
  }
  bool finite = true;
  for (int64_t j = 0; j < c; ++j) {
    const double var = m2[j] / count_d;
    finite =
        finite && finite_as_float(mean[j]) && finite_as_float(var) && std::isfinite(invstd_f[j]);
  }
  if (save_mean != nullptr) std::copy(mean_f, mean_f + c, save_mean);
  if (save_invstd != nullptr) std::copy(invstd_f, invstd_f + c, save_invstd);
  if (!finite) return BatchNormStatus::non_finite;  // running statistics untouched (pytorch#90342)

  if (running.mean != nullptr) {
    const double m = running.momentum;
    const double bessel = running.unbiased ? count_d / (count_d - 1.0) : 1.0;
    for (int64_t j = 0; j < c; ++j) {
      const double var = m2[j] / count_d;
      running.mean[j] = static_cast<float>((1.0 - m) * running.mean[j] + m * mean[j]);
      running.var[j] = static_cast<float>((1.0 - m) * running.var[j] + m * var * bessel);
    }
  }
  return BatchNormStatus::ok;
}

}  // namespace

void ForwardFinish::operator()(int64_t j) const {
  const double var = m2[j] / count;
  const double invstd = 1.0 / std::sqrt(var + eps);
  const double w = weight != nullptr ? weight[j] : 1.0;
  invstd_f[j] = static_cast<float>(invstd);
  scale[j] = static_cast<float>(invstd * w);
  const SplitMean split = split_mean(mean[j], scale[j], bias != nullptr ? bias[j] : 0.0);
  mean_f[j] = split.hi;
  shift[j] = split.shift;
}

}  // namespace kernels

BatchNormStatus batch_norm_forward_training(const float* x, const BatchNormShape& sh,
                                            const float* weight, const float* bias,
                                            const RunningStats& running, double eps, float* y,
                                            float* save_mean, float* save_invstd,
                                            Activation activation) {
  using namespace kernels;
  check_training_arguments(sh, eps, running);
  if (sh.c == 0) return BatchNormStatus::ok;
  check_training_count(sh.per_channel(), sh);
  check_not_null(x, "x");
  check_not_null(y, "y");
  double* mean = Workspace::grown(workspace().channel_doubles, 2 * sh.c);
  double* m2 = mean + sh.c;
  const ForwardFinish finish = forward_finish(sh, weight, bias, mean, m2, sh.per_channel(), eps);
  const bool relu = activation == Activation::relu;
  const bool normalized = forward_by_channel(x, y, sh, mean, m2, finish, relu);
  if (!normalized) channel_moments(x, sh, mean, m2);
  return forward_from_moments(x, sh, finish, normalized, running, y, save_mean, save_invstd,
                              activation);
}

void batch_norm_stats(const float* x, const BatchNormShape& sh, double* mean, double* m2) {
  using namespace kernels;
  validate(sh);
  if (sh.c == 0) return;
  check_not_null(mean, "mean");
  check_not_null(m2, "m2");
  if (sh.numel() == 0) {  // an empty part: count 0, which a merge skips
    std::fill(mean, mean + sh.c, 0.0);
    std::fill(m2, m2 + sh.c, 0.0);
    return;
  }
  check_not_null(x, "x");
  channel_moments(x, sh, mean, m2);
}

void batch_norm_merge_stats(int64_t parts, int64_t c, const int64_t* counts, const double* means,
                            const double* m2s, double* mean, double* m2, int64_t* count) {
  using namespace kernels;
  if (parts < 0) throw Error("parts must be non-negative, got " + std::to_string(parts));
  if (c < 0) throw Error("c must be non-negative, got " + std::to_string(c));
  check_not_null(count, "count");
  if (parts > 0) check_not_null(counts, "counts");
  int64_t total = 0;
  for (int64_t p = 0; p < parts; ++p) {
    if (counts[p] < 0)
      throw Error("counts[" + std::to_string(p) + "] must be non-negative, got " +
                  std::to_string(counts[p]));
    if (__builtin_add_overflow(total, counts[p], &total))
      throw Error("the sum of counts overflows at counts[" + std::to_string(p) + "]");
  }
  if (c > 0) {
    check_not_null(mean, "mean");
    check_not_null(m2, "m2");
    if (parts > 0) {
      check_not_null(means, "means");
      check_not_null(m2s, "m2s");
    }
  }
  merge_parts<Moments>(
      0, c, parts,
      [&](int64_t j, int64_t p) {
        return Moments{static_cast<double>(counts[p]), means[p * c + j], m2s[p * c + j]};
      },
      mean, m2);
  *count = total;
}

BatchNormStatus batch_norm_forward_with_stats(const float* x, const BatchNormShape& sh,
                                              const float* weight, const float* bias,
                                              const double* mean, const double* m2, int64_t count,
                                              const RunningStats& running, double eps, float* y,
                                              float* save_mean, float* save_invstd,
                                              Activation activation) {
  using namespace kernels;
  check_training_arguments(sh, eps, running);
  check_count(count, sh);
  if (sh.c == 0) return BatchNormStatus::ok;
  check_training_count(count, sh);
  check_not_null(mean, "mean");
  check_not_null(m2, "m2");
  if (sh.numel() > 0) {
    check_not_null(x, "x");
    check_not_null(y, "y");
  }
  return forward_from_moments(x, sh, forward_finish(sh, weight, bias, mean, m2, count, eps), false,
                              running, y, save_mean, save_invstd, activation);
}

void batch_norm_forward_inference(const float* x, const BatchNormShape& sh, const float* weight,
                                  const float* bias, const float* running_mean,
                                  const float* running_var, double eps, float* y,
                                  Activation activation) {
  using namespace kernels;
  validate(sh);
  check_eps(eps);
  if (sh.numel() == 0) return;
  check_inference_inputs(x, y, running_mean, running_var);
  float* scale = Workspace::grown(workspace().channel_floats, 2 * sh.c);
  float* shift = scale + sh.c;
  // y = (x - running_mean) * scale + shift, scale = weight / sqrt(running_var + eps).
  inference_coefficients(x, y, sh, weight, bias, running_mean, running_var, eps, scale, shift);
  normalize(x, y, sh, running_mean, scale, shift, activation == Activation::relu);
}

}  // namespace bnlab
