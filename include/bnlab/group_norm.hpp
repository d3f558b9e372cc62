// Group normalization kernels (Wu & He 2018), the C++ surface; PyTorch's
// F.group_norm semantics. The C API in bnlab.h is a thin shell over these.
//
// Data is fp32, described by a GroupNormShape: n samples, c channels in
// `groups` groups of c/groups consecutive channels, s spatial positions (the
// product of the spatial sizes), and a Layout (batch_norm.hpp):
//   channels_first (N, C, S): element (i, j, k) at x[(i*c + j)*s + k]
//   channels_last  (N, S, C): element (i, j, k) at x[(i*s + k)*c + j]
//   blocked16 (N, C/16, S, 16), c a multiple of 16:
//     element (i, j, k) at x[((i*(c/16) + j/16)*s + k)*16 + j%16]
//
// InstanceNorm (InstanceNorm1d/2d/3d, Ulyanov et al. 2016) is GroupNorm with
// groups = c: one channel per group, statistics per (sample, channel). Its
// optional running statistics (track_running_stats) belong to the layer, not
// to these kernels.
#pragma once

#include <cstdint>
#include <string>

#include "bnlab/batch_norm.hpp"  // Layout

namespace bnlab {

struct GroupNormShape {
  int64_t n = 0;
  int64_t c = 0;
  int64_t s = 1;
  int64_t groups = 1;
  Layout layout = Layout::channels_first;

  int64_t channels_per_group() const { return c / groups; }
  int64_t per_group() const { return c / groups * s; }  // values each group's statistics see
  int64_t numel() const { return n * c * s; }
};

// Throws bnlab::Error naming the field when a size is negative, groups < 1,
// c is not a multiple of groups, n*c*s overflows, or blocked16 has c not a
// multiple of 16.
void validate(const GroupNormShape& shape);

// Forward (the same in training and eval mode). Per sample i and group g, over
// the M = (c/groups)*s values of channels g*c/groups .. (g+1)*c/groups - 1:
//   mean = sum(x)/M,  var = sum((x - mean)^2)/M (biased),  invstd = 1/sqrt(var + eps)
//   y = (x - mean) * invstd * weight[j] + bias[j]
// weight/bias (c floats) may be null (affine=False). save_mean/save_invstd
// (n*groups floats each, index i*groups + g) may be null. y may alias x.
// Sums are taken in float over blocks of at most 4096 values and merged in
// double (Chan et al.), so a group with mean 1e4 and std 1 keeps its variance.
// Passes over memory: 2 when a task's slice (a group's values, channels-first,
// or a sample's, the others) stays in cache between the statistics and the
// normalize pass, 3 otherwise.
void group_norm_forward(const float* x, const GroupNormShape& shape, const float* weight,
                        const float* bias, double eps, float* y, float* save_mean,
                        float* save_invstd);

// Backward of the forward, from its save_mean and save_invstd. With
// xhat = (x - mean)*invstd and M = (c/groups)*s, per (i, g):
//   dbias[j]   = sum over i, k of dy
//   dweight[j] = sum over i, k of dy * xhat
//   dx = invstd * (weight[j]*dy - sum_g(weight*dy)/M - xhat * sum_g(weight*dy*xhat)/M)
// where sum_g runs over the group's M values of sample i. Every output may be
// null; weight null means 1.
void group_norm_backward(const float* x, const float* dy, const GroupNormShape& shape,
                         const float* weight, const float* save_mean, const float* save_invstd,
                         float* dx, float* dweight, float* dbias);

// Vector code selection for GroupNorm and LayerNorm (they share their loops),
// for tests and benchmarks: "auto" picks the best the CPU runs, "plain" is the
// scalar reference loop, other names are the Highway targets compiled in that
// the CPU supports (e.g. "AVX3", "AVX2").
std::string group_norm_kernel_variant();
void set_group_norm_kernel_variant(const std::string& name);  // throws on unknown names
std::string group_norm_kernel_variants();                     // "auto,AVX3,...,plain"

}  // namespace bnlab
