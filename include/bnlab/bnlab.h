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

BNLAB_API const char* bnlab_status_string(bnlab_status status);
BNLAB_API const char* bnlab_last_error(void); /* message of this thread's last failure */
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
