// Gradient clipping by the global 2-norm, PyTorch's torch.nn.utils.clip_grad_norm_.
#include <cmath>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/optim/optimizer.hpp"
#include "optim/chunks.hpp"

namespace bnlab::optim {

/* total = sqrt(sum_p sum_i grad_p[i]^2): each fixed chunk's sum of squares in
 * double, the chunks added in order (the same total at any thread count);
 * coef = max_norm / (total + 1e-6), and when coef < 1 one more pass scales
 * every gradient by it (PyTorch multiplies by min(coef, 1); times 1 changes nothing). */
double clip_grad_norm_(const std::vector<std::pair<std::string, nn::Parameter*>>& params,
                       double max_norm) {
  check_at_least("clip_grad_norm_", "max_norm", max_norm, 0.0, false);
  double total_squares = 0.0;
  // Reused from call to call: a training step allocates nothing once sizes are known.
  thread_local std::vector<double> workspace;
  std::vector<double>& chunk_squares = workspace;  // the caller's, also inside the threads
  for (const auto& [name, param] : params) {
    check_grad_size("clip_grad_norm_", name, *param);
    const int64_t numel = param->grad.numel();
    const float* grad = param->grad.data();
    chunk_squares.assign(static_cast<size_t>((numel + kUpdateChunk - 1) / kUpdateChunk), 0.0);
    for_chunks(numel, [&](int64_t begin, int64_t end) {
      double sum = 0.0;
      for (int64_t i = begin; i < end; ++i) sum += double(grad[i]) * double(grad[i]);
      chunk_squares[static_cast<size_t>(begin / kUpdateChunk)] = sum;
    });
    for (double s : chunk_squares) total_squares += s;
  }
  const double total = std::sqrt(total_squares);
  const double coef = max_norm / (total + 1e-6);
  // A NaN total scales by NaN, as PyTorch's does: the run's divergence check sees it.
  if (!(coef < 1.0) && !std::isnan(coef)) return total;
  const float scale = static_cast<float>(coef);
  for (const auto& [name, param] : params) {
    float* grad = param->grad.data();
    for_chunks(param->grad.numel(), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) grad[i] *= scale;
    });
  }
  return total;
}

}  // namespace bnlab::optim
