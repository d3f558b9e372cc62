// LayerNorm kernels: F.layer_norm over the trailing `cols` values of each row
// is GroupNorm with one group per row (n = rows, c = cols, s = 1,
// channels-first), whose plan in group_norm.cpp has a path for exactly this
// shape: each row normalized with the per-element affine in one loop from
// cache, and a backward that sums the affine parameters' gradients over
// blocks of rows while they are in cache.
#include "bnlab/layer_norm.hpp"

#include <limits>
#include <string>

#include "bnlab/error.hpp"
#include "bnlab/group_norm.hpp"

namespace bnlab {
namespace {

GroupNormShape as_group_norm(const LayerNormShape& shape) {
  return {shape.rows, shape.cols, 1, 1, Layout::channels_first};
}

}  // namespace

void validate(const LayerNormShape& shape) {
  if (shape.rows < 0) throw Error("rows must be non-negative, got " + std::to_string(shape.rows));
  if (shape.cols < 0) throw Error("cols must be non-negative, got " + std::to_string(shape.cols));
  int64_t product = 0;
  if (__builtin_mul_overflow(shape.rows, shape.cols, &product) ||
      product > std::numeric_limits<int64_t>::max() / 8)
    throw Error("rows*cols overflows: rows=" + std::to_string(shape.rows) +
                ", cols=" + std::to_string(shape.cols));
}

void layer_norm_forward(const float* x, const LayerNormShape& shape, const float* weight,
                        const float* bias, double eps, float* y, float* save_mean,
                        float* save_invstd) {
  validate(shape);
  group_norm_forward(x, as_group_norm(shape), weight, bias, eps, y, save_mean, save_invstd);
}

void layer_norm_backward(const float* x, const float* dy, const LayerNormShape& shape,
                         const float* weight, const float* save_mean, const float* save_invstd,
                         float* dx, float* dweight, float* dbias) {
  validate(shape);
  group_norm_backward(x, dy, as_group_norm(shape), weight, save_mean, save_invstd, dx, dweight,
                      dbias);
}

}  // namespace bnlab
