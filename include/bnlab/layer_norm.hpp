// Layer normalization kernels (Ba et al. 2016), the C++ surface; PyTorch's
// F.layer_norm semantics. The C API in bnlab.h is a thin shell over these.
//
// x is fp32 viewed as `rows` rows of `cols` contiguous values: F.layer_norm(x,
// normalized_shape) has cols = the product of normalized_shape (the trailing
// dimensions) and rows = the product of the leading ones. Element (r, k) is at
// x[r*cols + k]. The loops are GroupNorm's (one group per row);
// set_group_norm_kernel_variant selects them for both.
#pragma once

#include <cstdint>

namespace bnlab {

struct LayerNormShape {
  int64_t rows = 0;
  int64_t cols = 0;

  int64_t numel() const { return rows * cols; }
};

// Throws bnlab::Error naming the field when a size is negative or rows*cols overflows.
void validate(const LayerNormShape& shape);

// Forward. Per row r, over its cols values:
//   mean = sum(x)/cols,  var = sum((x - mean)^2)/cols (biased),  invstd = 1/sqrt(var + eps)
//   y = (x - mean) * invstd * weight[k] + bias[k]
// weight/bias (cols floats, elementwise_affine) may each be null (1 and 0).
// save_mean/save_invstd (rows floats each) may be null. y may alias x. Sums in
// float over blocks of at most 4096 values, merged in double. Two passes over
// memory (a row is normalized from cache).
void layer_norm_forward(const float* x, const LayerNormShape& shape, const float* weight,
                        const float* bias, double eps, float* y, float* save_mean,
                        float* save_invstd);

// Backward, from save_mean and save_invstd. xhat = (x - mean)*invstd, per row:
//   dbias[k]   = sum over rows of dy
//   dweight[k] = sum over rows of dy * xhat
//   dx = invstd * (weight*dy - sum(weight*dy)/cols - xhat * sum(weight*dy*xhat)/cols)
// with the sums over the row. Every output may be null; weight null means 1.
// Three passes over memory (x and dy read once from memory, once from cache).
void layer_norm_backward(const float* x, const float* dy, const LayerNormShape& shape,
                         const float* weight, const float* save_mean, const float* save_invstd,
                         float* dx, float* dweight, float* dbias);

}  // namespace bnlab
