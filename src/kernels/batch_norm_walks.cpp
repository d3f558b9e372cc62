// The walk each layout takes, chosen by shape (batch_norm_walks.hpp).
#include "kernels/batch_norm_walks.hpp"

namespace bnlab::kernels {

Workspace& workspace() {
  thread_local Workspace w;
  return w;
}

void channel_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2) {
  if (sh.layout == Layout::blocked16) return blocked16_moments(x, sh, mean, m2);
  if (uses_spans(sh)) return spans_moments(x, sh, mean, m2);
  rows_view_moments(x, sh, mean, m2);
}

bool forward_by_channel(const float* x, float* y, const BatchNormShape& sh, double* mean,
                        double* m2, const ForwardFinish& finish, bool relu) {
  if (sh.layout == Layout::blocked16)
    return blocked16_forward_by_block(x, y, sh, mean, m2, finish, relu);
  return spans_forward_by_channel(x, y, sh, mean, m2, finish, relu);  // false unless spans
}

void normalize(const float* x, float* y, const BatchNormShape& sh, const float* mean,
               const float* scale, const float* shift, bool relu) {
  if (sh.layout == Layout::blocked16)
    return blocked16_normalize(x, y, sh, mean, scale, shift, relu);
  if (uses_spans(sh)) return spans_normalize(x, y, sh, mean, scale, shift, relu);
  rows_view_normalize(x, y, sh, mean, scale, shift, relu);
}

void channel_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                       double* sum_dy_xmu) {
  if (sh.layout == Layout::blocked16) return blocked16_grad_sums(g, sh, sum_dy, sum_dy_xmu);
  if (uses_spans(sh)) return spans_grad_sums(g, sh, sum_dy, sum_dy_xmu);
  rows_view_grad_sums(g, sh, sum_dy, sum_dy_xmu);
}

void grad_input(const GradInput& g, const BatchNormShape& sh) {
  if (sh.layout == Layout::blocked16) return blocked16_grad_input(g, sh);
  if (uses_spans(sh)) return spans_grad_input(g, sh);
  rows_view_grad_input(g, sh);
}

}  // namespace bnlab::kernels
