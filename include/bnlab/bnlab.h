/* bnlab C API: batch normalization kernels for C and for other languages' bindings.
 *
 * Shapes: x holds n * c * s floats, s being the product of the spatial sizes
 * (1 for (N, C), L for (N, C, L), H*W for (N, C, H, W), D*H*W for 3-D).
 *   BNLAB_CHANNELS_FIRST: element (i, j, k) is at x[(i * c + j) * s + k]   (NCHW)
 *   BNLAB_CHANNELS_LAST:  element (i, j, k) is at x[(i * s + k) * c + j]   (NHWC)
 *   BNLAB_BLOCKED16:      element (i, j, k) is at x[((i * (c / 16) + j / 16) * s + k) * 16 + j % 16]
 *                         (oneDNN's nChw16c; c must be a multiple of 16)
 *
 * Every function returns a status. On failure bnlab_last_error() gives a message
 * naming the argument and its value; the message belongs to the calling thread
 * and stays valid until that thread's next bnlab call.
 */
#ifndef BNLAB_BNLAB_H
#define BNLAB_BNLAB_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define BNLAB_API __attribute__((visibility("default")))
#else
#define BNLAB_API
#endif

typedef enum { BNLAB_CHANNELS_FIRST = 0, BNLAB_CHANNELS_LAST = 1, BNLAB_BLOCKED16 = 2 } bnlab_layout;
typedef enum {
  BNLAB_OK = 0,
  BNLAB_INVALID_ARGUMENT = 1, /* null required pointer, negative size, overflow, bad eps */
  BNLAB_TOO_FEW_VALUES = 2,   /* n * s == 1 in training: no variance to compute */
  BNLAB_NON_FINITE = 3        /* the batch's statistics are NaN or Inf: running stats untouched */
} bnlab_status;

/* Forward in training mode. Per channel j, over the n * s values:
 *   mean = sum(x) / (n*s);  var = sum((x - mean)^2) / (n*s);  invstd = 1 / sqrt(var + eps)
 *   y = (x - mean) * invstd * weight[j] + bias[j]          (weight = 1, bias = 0 when NULL)
 * Running statistics (when both pointers are given):
 *   running_mean = (1 - momentum) * running_mean + momentum * mean
 *   running_var  = (1 - momentum) * running_var  + momentum * var_u
 *   var_u = var * (n*s) / (n*s - 1) when unbiased_running_var (PyTorch), else var (ONNX, Keras).
 * save_mean and save_invstd (c floats each, may be NULL) keep what backward needs.
 * y may alias x. On BNLAB_NON_FINITE, y and save_* are written but the running
 * statistics are left as they were. */
BNLAB_API bnlab_status bnlab_batch_norm_forward_training(
    const float* x, int64_t n, int64_t c, int64_t s, bnlab_layout layout,
    const float* weight, const float* bias,        /* NULL: affine=False */
    float* running_mean, float* running_var,       /* NULL: no running statistics */
    double momentum, int unbiased_running_var, double eps,
    float* y, float* save_mean, float* save_invstd);   /* save_* may be NULL */

/* Forward in inference mode: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
 * y may alias x. */
BNLAB_API bnlab_status bnlab_batch_norm_forward_inference(
    const float* x, int64_t n, int64_t c, int64_t s, bnlab_layout layout,
    const float* weight, const float* bias,
    const float* running_mean, const float* running_var, double eps, float* y);

/* Backward of the training-mode forward, from its save_mean and save_invstd.
 * With xhat = (x - mean) * invstd and M = n*s:
 *   dbias   = sum(dy);  dweight = sum(dy * xhat)
 *   dx      = weight * invstd * (dy - dbias / M - xhat * dweight / M)
 * Each output may be NULL; weight NULL means 1. */
BNLAB_API bnlab_status bnlab_batch_norm_backward(
    const float* x, const float* dy, int64_t n, int64_t c, int64_t s, bnlab_layout layout,
    const float* weight, const float* save_mean, const float* save_invstd,
    float* dx, float* dweight, float* dbias);        /* each output may be NULL */

/* The pieces of a synchronized (multi-process) batch norm. Each process holds a part of the
 * batch (n may differ between parts, and may be 0); statistics cross processes as doubles:
 *   stats on each part -> merge -> forward_with_stats on each part;
 *   backward_reduce on each part -> add the sums of the parts -> backward_with_sums on each part. */

/* Per-channel statistics of this process's part of the batch: count = n*s values per channel.
 *   mean = sum(x) / (n*s);  m2 = sum((x - mean)^2)            (both 0 when n*s == 0) */
BNLAB_API bnlab_status bnlab_batch_norm_stats(
    const float* x, int64_t n, int64_t c, int64_t s, bnlab_layout layout,
    double* mean, double* m2);                                /* c each */

/* Merge parts in part order (Chan et al.): counts[p], means[p*c + j], m2s[p*c + j] for p < parts.
 *   count = count_a + count_b;  delta = mean_b - mean_a
 *   mean = mean_a + delta * count_b / count
 *   m2   = m2_a + m2_b + delta^2 * count_a * count_b / count
 * Parts with count 0 are skipped; with none left, count = 0 and mean = m2 = 0. */
BNLAB_API bnlab_status bnlab_batch_norm_merge_stats(
    int64_t parts, int64_t c, const int64_t* counts,
    const double* means, const double* m2s,
    double* mean, double* m2, int64_t* count);

/* The training forward with given (global) statistics over `count` values: y, save_mean, save_invstd,
 * and the running statistics updated as bnlab_batch_norm_forward_training would with `count` values.
 *   var = m2 / count;  invstd = 1 / sqrt(var + eps);  y = (x - mean) * invstd * weight[j] + bias[j]
 * count must be at least n*s (BNLAB_INVALID_ARGUMENT) and above 1 (BNLAB_TOO_FEW_VALUES). */
BNLAB_API bnlab_status bnlab_batch_norm_forward_with_stats(
    const float* x, int64_t n, int64_t c, int64_t s, bnlab_layout layout,
    const float* weight, const float* bias, const double* mean, const double* m2, int64_t count,
    float* running_mean, float* running_var, double momentum, int unbiased_running_var, double eps,
    float* y, float* save_mean, float* save_invstd);

/* The backward in two steps: this process's sums, then dx from the summed sums over `count` values.
 *   sum_dy = sum(dy);  sum_dy_xhat = sum(dy * xhat),  xhat = (x - save_mean) * save_invstd
 * (added over the parts they are dbias and dweight), then with M = count (at least n*s):
 *   dx = weight * save_invstd * (dy - sum_dy / M - xhat * sum_dy_xhat / M) */
BNLAB_API bnlab_status bnlab_batch_norm_backward_reduce(
    const float* x, const float* dy, int64_t n, int64_t c, int64_t s,
    bnlab_layout layout, const float* save_mean, const float* save_invstd,
    double* sum_dy, double* sum_dy_xhat);                     /* c each */
BNLAB_API bnlab_status bnlab_batch_norm_backward_with_sums(
    const float* x, const float* dy, int64_t n, int64_t c, int64_t s,
    bnlab_layout layout, const float* weight, const float* save_mean, const float* save_invstd,
    const double* sum_dy, const double* sum_dy_xhat, int64_t count, float* dx);

/* bf16 batch norm: x, y, dy and dx are bfloat16 bit patterns in uint16_t; weight, bias, the
 * saved and the running statistics stay float. Same formulas, layouts, statuses and rules as
 * the float functions above; per-element math in float, sums in float blocks merged in double;
 * outputs rounded to the nearest bf16, ties to even (NaN stays NaN, float denormals become 0). */
BNLAB_API bnlab_status bnlab_batch_norm_forward_training_bf16(
    const uint16_t* x, int64_t n, int64_t c, int64_t s, bnlab_layout layout,
    const float* weight, const float* bias, float* running_mean, float* running_var,
    double momentum, int unbiased_running_var, double eps,
    uint16_t* y, float* save_mean, float* save_invstd);
BNLAB_API bnlab_status bnlab_batch_norm_forward_inference_bf16(
    const uint16_t* x, int64_t n, int64_t c, int64_t s, bnlab_layout layout,
    const float* weight, const float* bias, const float* running_mean,
    const float* running_var, double eps, uint16_t* y);
BNLAB_API bnlab_status bnlab_batch_norm_backward_bf16(
    const uint16_t* x, const uint16_t* dy, int64_t n, int64_t c, int64_t s, bnlab_layout layout,
    const float* weight, const float* save_mean, const float* save_invstd,
    uint16_t* dx, float* dweight, float* dbias);

BNLAB_API const char* bnlab_status_string(bnlab_status status);
BNLAB_API const char* bnlab_last_error(void); /* message of this thread's last failure */
/* threads <= 0: all cores (OpenMP's default). At most 1024 threads: a larger
 * count is clamped to 1024 and bnlab_last_error() says so. */
BNLAB_API void bnlab_set_num_threads(int threads);

/* ---- GroupNorm, InstanceNorm and LayerNorm (PyTorch's F.group_norm, F.instance_norm,
 * F.layer_norm). No running statistics: training and eval compute the same. ---- */

/* GroupNorm forward. x holds n * c * s floats in `layout` (as above); its c channels
 * form `groups` groups of c / groups consecutive channels (groups = c: InstanceNorm).
 * Per sample i and group g, over the group's M = (c / groups) * s values:
 *   mean = sum(x) / M;  var = sum((x - mean)^2) / M;  invstd = 1 / sqrt(var + eps)
 *   y = (x - mean) * invstd * weight[j] + bias[j]          (weight = 1, bias = 0 when NULL)
 * save_mean and save_invstd (n * groups floats each, index i * groups + g, may be NULL)
 * keep what backward needs. y may alias x. BNLAB_INVALID_ARGUMENT names groups when
 * groups < 1 or c is not a multiple of groups. */
BNLAB_API bnlab_status bnlab_group_norm_forward(
    const float* x, int64_t n, int64_t c, int64_t s, int64_t groups, bnlab_layout layout,
    const float* weight, const float* bias,          /* NULL: affine=False */
    double eps, float* y, float* save_mean, float* save_invstd);   /* save_* may be NULL */

/* Backward of bnlab_group_norm_forward, from its save_mean and save_invstd. With
 * xhat = (x - mean) * invstd, g = weight[j] * dy, and the sums over a (sample, group)'s M values:
 *   dx      = invstd * (g - sum(g) / M - xhat * sum(g * xhat) / M)
 *   dbias   = sum(dy);  dweight = sum(dy * xhat)       (per channel, over samples and positions)
 * Each output may be NULL; weight NULL means 1. */
BNLAB_API bnlab_status bnlab_group_norm_backward(
    const float* x, const float* dy, int64_t n, int64_t c, int64_t s, int64_t groups,
    bnlab_layout layout, const float* weight, const float* save_mean, const float* save_invstd,
    float* dx, float* dweight, float* dbias);        /* each output may be NULL */

/* LayerNorm forward: x as `rows` rows of `cols` contiguous floats (cols = the product of
 * normalized_shape, rows = the product of the leading dimensions). Per row, over cols values:
 *   mean = sum(x) / cols;  var = sum((x - mean)^2) / cols;  invstd = 1 / sqrt(var + eps)
 *   y = (x - mean) * invstd * weight[k] + bias[k]      (cols floats each; 1 and 0 when NULL)
 * save_mean and save_invstd (rows floats each) may be NULL. y may alias x. */
BNLAB_API bnlab_status bnlab_layer_norm_forward(
    const float* x, int64_t rows, int64_t cols, const float* weight, const float* bias,
    double eps, float* y, float* save_mean, float* save_invstd);

/* Backward of bnlab_layer_norm_forward. xhat = (x - mean) * invstd, g = weight[k] * dy,
 * sums over the row's cols values:
 *   dx      = invstd * (g - sum(g) / cols - xhat * sum(g * xhat) / cols)
 *   dbias[k] = sum over rows of dy;  dweight[k] = sum over rows of dy * xhat
 * Each output may be NULL; weight NULL means 1. */
BNLAB_API bnlab_status bnlab_layer_norm_backward(
    const float* x, const float* dy, int64_t rows, int64_t cols, const float* weight,
    const float* save_mean, const float* save_invstd,
    float* dx, float* dweight, float* dbias);        /* each output may be NULL */

#ifdef __cplusplus
}
#endif
#endif /* BNLAB_BNLAB_H */
