// Batch normalization kernels, the C++ surface (the C API in bnlab.h is a thin
// shell over these). Ioffe & Szegedy 2015; PyTorch's semantics by default.
//
// Data is fp32, described by a BatchNormShape: n samples, c channels, s spatial
// positions (the product of the spatial sizes), and a layout:
//   channels_first (N, C, S): element (i, j, k) at x[(i*c + j)*s + k]
//   channels_last  (N, S, C): element (i, j, k) at x[(i*s + k)*c + j]
//   blocked16 (N, C/16, S, 16), c a multiple of 16: element (i, j, k) at
//     x[((i*(c/16) + j/16)*s + k)*16 + j%16] (oneDNN's nChw16c / nCdhw16c, the
//     layout its AVX-512 convolutions write)
#pragma once

#include <cstdint>
#include <string>

namespace bnlab {

enum class Layout : int { channels_first = 0, channels_last = 1, blocked16 = 2 };

struct BatchNormShape {
  int64_t n = 0;
  int64_t c = 0;
  int64_t s = 1;
  Layout layout = Layout::channels_first;

  int64_t per_channel() const { return n * s; }  // values each channel's statistics see
  int64_t numel() const { return n * c * s; }
};

// Throws bnlab::Error naming the field when a size is negative, n*c*s overflows, or
// blocked16 has c not a multiple of 16.
void validate(const BatchNormShape& shape);

// The running statistics a training step updates (both null: not tracked).
struct RunningStats {
  float* mean = nullptr;
  float* var = nullptr;
  double momentum = 0.1;  // weight of the new batch (ONNX's momentum is 1 - this)
  bool unbiased = true;   // var_u = var * M / (M - 1) (PyTorch) or var (ONNX, Keras)
};

// What follows the normalization inside the same pass over memory.
enum class Activation { none, relu };

// The outcome of a training forward: ok, or statistics that were not finite
// (NaN or Inf in x), in which case y and save_* are written but the running
// statistics are left untouched. Invalid arguments throw bnlab::Error.
enum class BatchNormStatus { ok, non_finite };

// Forward, training mode. Per channel, over the M = n*s values:
//   mean = sum(x)/M,  var = sum((x - mean)^2)/M,  invstd = 1/sqrt(var + eps)
//   y = act((x - mean) * invstd * weight + bias)
// weight/bias may be null (affine=False). save_mean/save_invstd (c floats) may
// be null. y may alias x. Throws Error(too_few_values) when M == 1.
BatchNormStatus batch_norm_forward_training(const float* x, const BatchNormShape& shape,
                                            const float* weight, const float* bias,
                                            const RunningStats& running, double eps, float* y,
                                            float* save_mean, float* save_invstd,
                                            Activation activation = Activation::none);

// Forward, inference mode: y = act((x - running_mean) / sqrt(running_var + eps) * weight + bias).
void batch_norm_forward_inference(const float* x, const BatchNormShape& shape,
                                  const float* weight, const float* bias,
                                  const float* running_mean, const float* running_var, double eps,
                                  float* y, Activation activation = Activation::none);

// Backward of the training forward. xhat = (x - mean)*invstd, M = n*s:
//   dbias = sum(dy),  dweight = sum(dy*xhat),
//   dx = weight*invstd*(dy - dbias/M - xhat*dweight/M)
// With activation == relu, dy is the gradient at the ReLU's output and y (the
// forward's output) gives the mask: dy is taken as 0 where y <= 0.
// Every output may be null; weight null means 1.
void batch_norm_backward(const float* x, const float* dy, const BatchNormShape& shape,
                         const float* weight, const float* save_mean, const float* save_invstd,
                         float* dx, float* dweight, float* dbias,
                         Activation activation = Activation::none, const float* y = nullptr);

// Backward of the inference forward (eval mode: the running statistics are
// constants, so no term flows through them). invstd_r = 1/sqrt(running_var + eps):
//   dbias = sum(dy),  dweight = sum(dy*(x - running_mean)*invstd_r),
//   dx = weight*invstd_r*dy
// with dy masked by y > 0 under the fused ReLU, as above. Every output may be
// null; weight null means 1.
void batch_norm_backward_inference(const float* x, const float* dy, const BatchNormShape& shape,
                                   const float* weight, const float* running_mean,
                                   const float* running_var, double eps, float* dx,
                                   float* dweight, float* dbias,
                                   Activation activation = Activation::none,
                                   const float* y = nullptr);

// ---- The pieces of a synchronized (multi-process) batch norm ----
// Each process holds a part of the batch (n may differ between parts, and may
// be 0). Statistics cross processes as doubles: per channel a count, a mean
// and m2 = sum((x - mean)^2).
//   stats per part -> merge (or allreduce) -> forward_with_stats on each part;
//   backward_reduce per part -> sum the sums -> backward_with_sums on each part.

// This part's per-channel mean and m2 over its n*s values (c each). n*s == 0:
// mean and m2 are 0 (count 0, which a merge skips).
void batch_norm_stats(const float* x, const BatchNormShape& shape, double* mean, double* m2);

// Merges parts in part order (Chan et al.): part p has counts[p] values per
// channel, means[p*c + j] and m2s[p*c + j]. Writes mean, m2 (c each) and the
// total count. Parts with count 0 are skipped.
void batch_norm_merge_stats(int64_t parts, int64_t c, const int64_t* counts, const double* means,
                            const double* m2s, double* mean, double* m2, int64_t* count);

// The training forward of this part with the batch's statistics over `count`
// values per channel (count >= n*s; count == 1 throws too_few_values):
//   var = m2/count, then as batch_norm_forward_training: y, save_*, and the
//   running statistics (Bessel's factor count/(count - 1)), untouched when
//   the statistics are not finite.
BatchNormStatus batch_norm_forward_with_stats(const float* x, const BatchNormShape& shape,
                                              const float* weight, const float* bias,
                                              const double* mean, const double* m2, int64_t count,
                                              const RunningStats& running, double eps, float* y,
                                              float* save_mean, float* save_invstd,
                                              Activation activation = Activation::none);

// This part's backward sums (c each), g = dy (masked by y > 0 under the fused ReLU):
//   sum_dy = sum(g),  sum_dy_xhat = sum(g * (x - save_mean) * save_invstd)
// Summed over the parts they are dbias and dweight.
void batch_norm_backward_reduce(const float* x, const float* dy, const BatchNormShape& shape,
                                const float* save_mean, const float* save_invstd, double* sum_dy,
                                double* sum_dy_xhat, Activation activation = Activation::none,
                                const float* y = nullptr);

// This part's dx from the sums over all parts, M = count (>= n*s):
//   dx = weight*invstd*(g - sum_dy/M - xhat*sum_dy_xhat/M)
void batch_norm_backward_with_sums(const float* x, const float* dy, const BatchNormShape& shape,
                                   const float* weight, const float* save_mean,
                                   const float* save_invstd, const double* sum_dy,
                                   const double* sum_dy_xhat, int64_t count, float* dx,
                                   Activation activation = Activation::none,
                                   const float* y = nullptr);

// Vector code selection, for tests and benchmarks. "auto" picks the best the
// CPU runs; "plain" is the scalar reference loop; other names are the Highway
// targets compiled into this build that the CPU supports (e.g. "AVX3", "AVX2").
std::string batch_norm_kernel_variant();
void set_batch_norm_kernel_variant(const std::string& name);  // throws on unknown names
std::string batch_norm_kernel_variants();                      // comma-separated list

}  // namespace bnlab
