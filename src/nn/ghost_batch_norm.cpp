// GhostBatchNorm1d/2d: BatchNorm's kernels run on consecutive slices of
// virtual_batch_size examples in training (Hoffer et al. 2017).
#include <algorithm>

#include "bnlab/error.hpp"
#include "bnlab/nn/norm_layers.hpp"
#include "nn/init.hpp"
#include "nn/norm_common.hpp"
#include "nn/python_repr.hpp"

namespace bnlab::nn {

GhostBatchNorm::GhostBatchNorm(int dims, int64_t num_features, int64_t virtual_batch_size,
                               double eps, std::optional<double> momentum, bool affine,
                               bool track_running_stats)
    : GhostBatchNorm(dims, num_features, virtual_batch_size, eps, momentum, affine,
                     track_running_stats, deferred) {
  Generator unused(0);
  reset_parameters(unused);
}

GhostBatchNorm::GhostBatchNorm(int dims, int64_t num_features, int64_t virtual_batch_size,
                               double eps, std::optional<double> momentum, bool affine,
                               bool track_running_stats, Deferred)
    : dims(dims),
      num_features(num_features),
      virtual_batch_size(virtual_batch_size),
      eps(eps),
      momentum(momentum),
      affine(affine),
      track_running_stats(track_running_stats) {
  if (dims < 1 || dims > 2)
    throw Error("GhostBatchNorm: dims must be 1 or 2, got " + std::to_string(dims));
  const std::string name = "GhostBatchNorm" + std::to_string(dims) + "d";
  if (num_features <= 0)
    throw Error(name + ": num_features must be positive, got " + std::to_string(num_features));
  if (virtual_batch_size <= 0)
    throw Error(name + ": virtual_batch_size must be positive, got " +
                std::to_string(virtual_batch_size));
  if (!(eps > 0.0)) throw Error(name + ": eps must be positive, got " + python_float(eps));
  if (momentum && !(*momentum >= 0.0 && *momentum <= 1.0))
    throw Error(name + ": momentum must be in [0, 1] or None, got " + python_float(*momentum));
}

void GhostBatchNorm::reset_parameters(Generator&) {
  if (affine) init_affine({num_features}, weight, bias, batch_grad_weight_, batch_grad_bias_);
  if (track_running_stats) {
    running_mean = Tensor({num_features}, 0.0f);
    running_var = Tensor({num_features}, 1.0f);
  }
}

double GhostBatchNorm::state_bytes() const {
  const double per_channel = (affine ? 6.0 : 0.0) + (track_running_stats ? 2.0 : 0.0);
  return per_channel * static_cast<double>(num_features) * sizeof(float);
}

std::string GhostBatchNorm::repr() const {
  return "GhostBatchNorm" + std::to_string(dims) + "d(" + std::to_string(num_features) +
         ", virtual_batch_size=" + std::to_string(virtual_batch_size) +
         ", eps=" + python_float(eps) +
         ", momentum=" + (momentum ? python_float(*momentum) : std::string("None")) +
         ", affine=" + python_bool(affine) +
         ", track_running_stats=" + python_bool(track_running_stats) + ")";
}

BatchNormShape GhostBatchNorm::kernel_shape(const Shape& input) const {
  return batch_norm_like_shape(repr(), dims, num_features, input);
}

Shape GhostBatchNorm::output_shape(const Shape& input) const {
  kernel_shape(input);
  return input;
}

ChannelAffine GhostBatchNorm::eval_channel_affine() const {
  if (!track_running_stats) throw Error(repr() + ": it has no running statistics");
  return running_stats_affine(num_features, affine ? weight.value.data() : nullptr,
                              affine ? bias.value.data() : nullptr, running_mean.data(),
                              running_var.data(), eps);
}

/* Forward.
 * Training: for each slice of `slice` consecutive examples (the last may be
 * shorter), y = (x - mean_slice) * invstd_slice * w + b through
 * batch_norm_forward_training, which folds the slice into the running
 * statistics (factor momentum, or 1/num_batches_tracked when None) before
 * the next slice. Samples are the outermost dimension, so a slice is a
 * contiguous (n_slice, C, S) block.
 * Eval: BatchNorm's: running statistics, or the whole batch's without them. */
const Tensor& GhostBatchNorm::forward(const Tensor& input) {
  const BatchNormShape whole = kernel_shape(input.shape());
  input_ = &input;
  output_.resize(input.shape());
  const float* w = affine ? weight.value.data() : nullptr;
  const float* b = affine ? bias.value.data() : nullptr;
  used_batch_stats_ = training_ || !track_running_stats;
  if (!used_batch_stats_) {
    batch_norm_forward_inference(input.data(), whole, w, b, running_mean.data(), running_var.data(),
                                 eps, output_.data());
    return output_;
  }
  slice_ = training_ ? std::min(virtual_batch_size, whole.n) : whole.n;
  const int64_t slices = (whole.n + slice_ - 1) / slice_;
  save_mean_.resize({slices * whole.c});
  save_invstd_.resize({slices * whole.c});
  const int64_t example = whole.c * whole.s;
  bool non_finite = false;
  for (int64_t k = 0; k < slices; ++k) {
    BatchNormShape shape = whole;
    shape.n = std::min(slice_, whole.n - k * slice_);
    RunningStats running;
    if (training_ && track_running_stats) {
      ++num_batches_tracked;
      running.mean = running_mean.data();
      running.var = running_var.data();
      running.momentum = momentum ? *momentum : 1.0 / static_cast<double>(num_batches_tracked);
    }
    const int64_t offset = k * slice_ * example;
    non_finite |= batch_norm_forward_training(
                      input.data() + offset, shape, w, b, running, eps, output_.data() + offset,
                      save_mean_.data() + k * whole.c,
                      save_invstd_.data() + k * whole.c) == BatchNormStatus::non_finite;
  }
  if (training_) last_batch_non_finite = non_finite;
  return output_;
}

/* Backward: batch_norm_backward per slice from its saved statistics (dw, db
 * of each slice added into the grads); after running statistics,
 * batch_norm_backward_inference. */
const Tensor& GhostBatchNorm::backward(const Tensor& grad_output) {
  check_backward_args(*this, input_, grad_output);
  const BatchNormShape whole = kernel_shape(input_->shape());
  grad_input_.resize(compute_grad_input ? input_->shape() : kNoGradInputShape);
  float* dx = compute_grad_input ? grad_input_.data() : nullptr;
  const float* w = affine ? weight.value.data() : nullptr;
  float* dweight = affine ? batch_grad_weight_.data() : nullptr;
  float* dbias = affine ? batch_grad_bias_.data() : nullptr;
  auto add_grads = [&] {
    if (!affine) return;
    add_batch_grad(weight, batch_grad_weight_);
    add_batch_grad(bias, batch_grad_bias_);
  };
  if (!used_batch_stats_) {
    batch_norm_backward_inference(input_->data(), grad_output.data(), whole, w, running_mean.data(),
                                  running_var.data(), eps, dx, dweight, dbias);
    add_grads();
    return grad_input_;
  }
  const int64_t example = whole.c * whole.s;
  for (int64_t k = 0; k * slice_ < whole.n; ++k) {
    BatchNormShape shape = whole;
    shape.n = std::min(slice_, whole.n - k * slice_);
    const int64_t offset = k * slice_ * example;
    batch_norm_backward(input_->data() + offset, grad_output.data() + offset, shape, w,
                        save_mean_.data() + k * whole.c, save_invstd_.data() + k * whole.c,
                        dx ? dx + offset : nullptr, dweight, dbias);
    add_grads();
  }
  return grad_input_;
}

std::vector<std::pair<std::string, Parameter*>> GhostBatchNorm::parameters() {
  if (!affine) return {};
  return affine_parameters(weight, bias);
}

std::vector<Buffer> GhostBatchNorm::buffers() {
  if (!track_running_stats) return {};
  return running_stats_buffers(running_mean, running_var, num_batches_tracked);
}

}  // namespace bnlab::nn
