// The batch-norm backward: of the training forward (fused, or in two steps
// for a synchronized BN) and of the inference forward. Over memory: 5 passes
// (read x, dy for the sums; read x, dy + write dx), 3 over DRAM when a large
// tensor is walked channel by channel or block by block (batch_norm_walks.hpp).
#include <algorithm>
#include <cmath>

#include "bnlab/batch_norm.hpp"
#include "kernels/batch_norm_validation.hpp"
#include "kernels/batch_norm_walks.hpp"

namespace bnlab {
namespace kernels {

// dweight = sum(g*xhat) = invstd*sum(g*(x - mean)), dbias = sum(g), and
//   dx = w*invstd*(g - dbias/M - xhat*dweight/M) = a*g + b*(x - mean) + c
// with a = w*invstd, b = -w*invstd^3*sum(g*(x - mean))/M, c = -w*invstd*dbias/M.
void BackwardFinish::operator()(int64_t j) const {
  const double w = weight != nullptr ? weight[j] : 1.0;
  const double inv = invstd[j];
  if (dweight != nullptr) dweight[j] = static_cast<float>(sum_dy_xmu[j] * inv);
  if (dbias != nullptr) dbias[j] = static_cast<float>(sum_dy[j]);
  a[j] = static_cast<float>(w * inv);
  b[j] = constant_statistics ? 0.0f
                             : static_cast<float>(-w * inv * inv * inv * sum_dy_xmu[j] * inv_count);
  c[j] = constant_statistics ? 0.0f : static_cast<float>(-w * inv * sum_dy[j] * inv_count);
}

namespace {

// The backward of both modes. With constant_statistics (eval mode) mean and
// invstd are the running statistics' and dx = weight*invstd*g; the sums for
// dweight and dbias are the same.
void backward(const float* x, const float* dy, const BatchNormShape& sh, const float* weight,
              const float* save_mean, const float* save_invstd, float* dx, float* dweight,
              float* dbias, Activation activation, const float* y, bool constant_statistics) {
  if (sh.numel() == 0) {
    if (dweight != nullptr) std::fill(dweight, dweight + sh.c, 0.0f);
    if (dbias != nullptr) std::fill(dbias, dbias + sh.c, 0.0f);
    return;
  }
  check_backward_inputs(x, dy, save_mean, save_invstd, activation, y);
  if (dx == nullptr && dweight == nullptr && dbias == nullptr) return;

  const int64_t c = sh.c;
  double* sum_dy = Workspace::grown(workspace().channel_doubles, 2 * c);
  double* sum_dy_xmu = sum_dy + c;
  float* coef = Workspace::grown(workspace().channel_floats, 3 * c);  // dx's a, b, c
  const GradInput g = grad_input_of(x, dy, activation, y, dx, save_mean, coef, c);
  const BackwardFinish finish = BackwardFinish::over(sh, weight, save_invstd, sum_dy, dweight,
                                                     dbias, coef, constant_statistics);
  if (spans_backward_by_channel(g, sh, sum_dy, sum_dy_xmu, finish)) return;
  if (blocked16_backward_by_block(g, sh, sum_dy, sum_dy_xmu, finish)) return;
  channel_grad_sums(g, sh, sum_dy, sum_dy_xmu);
  for (int64_t j = 0; j < c; ++j) finish(j);
  if (dx != nullptr) grad_input(g, sh);
}

}  // namespace
}  // namespace kernels

void batch_norm_backward(const float* x, const float* dy, const BatchNormShape& sh,
                         const float* weight, const float* save_mean, const float* save_invstd,
                         float* dx, float* dweight, float* dbias, Activation activation,
                         const float* y) {
  validate(sh);
  kernels::backward(x, dy, sh, weight, save_mean, save_invstd, dx, dweight, dbias, activation, y,
                    false);
}

void batch_norm_backward_reduce(const float* x, const float* dy, const BatchNormShape& sh,
                                const float* save_mean, const float* save_invstd, double* sum_dy,
                                double* sum_dy_xhat, Activation activation, const float* y) {
  using namespace kernels;
  validate(sh);
  if (sh.c == 0) return;
  check_not_null(sum_dy, "sum_dy");
  check_not_null(sum_dy_xhat, "sum_dy_xhat");
  if (sh.numel() == 0) {  // an empty part adds nothing
    std::fill(sum_dy, sum_dy + sh.c, 0.0);
    std::fill(sum_dy_xhat, sum_dy_xhat + sh.c, 0.0);
    return;
  }
  check_backward_inputs(x, dy, save_mean, save_invstd, activation, y);
  const GradInput g = grad_input_of(x, dy, activation, y, nullptr, save_mean, nullptr, sh.c);
  channel_grad_sums(g, sh, sum_dy, sum_dy_xhat);
  // sum(g * xhat) = invstd * sum(g * (x - mean))
  for (int64_t j = 0; j < sh.c; ++j) sum_dy_xhat[j] *= static_cast<double>(save_invstd[j]);
}

void batch_norm_backward_with_sums(const float* x, const float* dy, const BatchNormShape& sh,
                                   const float* weight, const float* save_mean,
                                   const float* save_invstd, const double* sum_dy,
                                   const double* sum_dy_xhat, int64_t count, float* dx,
                                   Activation activation, const float* y) {
  using namespace kernels;
  validate(sh);
  check_count(count, sh);
  if (sh.numel() == 0) return;
  check_backward_inputs(x, dy, save_mean, save_invstd, activation, y);
  check_not_null(sum_dy, "sum_dy");
  check_not_null(sum_dy_xhat, "sum_dy_xhat");
  check_not_null(dx, "dx");
  const int64_t c = sh.c;
  const double inv_count = 1.0 / static_cast<double>(count);
  float* coef = Workspace::grown(workspace().channel_floats, 3 * c);
  // dx = w*invstd*(g - sum_dy/M - xhat*sum_dy_xhat/M) as a*g + b*(x - mean) + c
  for (int64_t j = 0; j < c; ++j) {
    const double w = weight != nullptr ? weight[j] : 1.0;
    const double invstd = save_invstd[j];
    coef[j] = static_cast<float>(w * invstd);
    coef[c + j] = static_cast<float>(-w * invstd * invstd * sum_dy_xhat[j] * inv_count);
    coef[2 * c + j] = static_cast<float>(-w * invstd * sum_dy[j] * inv_count);
  }
  grad_input(grad_input_of(x, dy, activation, y, dx, save_mean, coef, c), sh);
}

void batch_norm_backward_inference(const float* x, const float* dy, const BatchNormShape& sh,
                                   const float* weight, const float* running_mean,
                                   const float* running_var, double eps, float* dx, float* dweight,
                                   float* dbias, Activation activation, const float* y) {
  using namespace kernels;
  validate(sh);
  check_eps(eps);
  if (sh.numel() > 0) {  // before the scratch of c floats below
    check_not_null(x, "x");
    check_not_null(dy, "dy");
    check_not_null(running_mean, "running_mean");
    check_not_null(running_var, "running_var");
  }
  // invstd_r per channel, in its own scratch (backward uses the channel ones).
  float* invstd = Workspace::grown(workspace().statistics, sh.c);
  for (int64_t j = 0; j < sh.c; ++j)
    invstd[j] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var[j]) + eps));
  backward(x, dy, sh, weight, running_mean, invstd, dx, dweight, dbias, activation, y, true);
}

}  // namespace bnlab
