// BatchRenorm1d/2d (Ioffe 2017, "Batch Renormalization"): BatchNorm's
// kernels with the batch statistics corrected towards the running ones by
// r and d, which the backward treats as constants.
#include <algorithm>
#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/norm_layers.hpp"
#include "nn/init.hpp"
#include "nn/norm_common.hpp"
#include "nn/python_repr.hpp"

namespace bnlab::nn {

BatchRenorm::BatchRenorm(int dims, int64_t num_features, double eps, double momentum, double r_max,
                         double d_max, bool affine)
    : BatchRenorm(dims, num_features, eps, momentum, r_max, d_max, affine, deferred) {
  Generator unused(0);
  reset_parameters(unused);
}

BatchRenorm::BatchRenorm(int dims, int64_t num_features, double eps, double momentum, double r_max,
                         double d_max, bool affine, Deferred)
    : dims(dims),
      num_features(num_features),
      eps(eps),
      momentum(momentum),
      r_max(r_max),
      d_max(d_max),
      affine(affine) {
  if (dims < 1 || dims > 2)
    throw Error("BatchRenorm: dims must be 1 or 2, got " + std::to_string(dims));
  const std::string name = "BatchRenorm" + std::to_string(dims) + "d";
  if (num_features <= 0)
    throw Error(name + ": num_features must be positive, got " + std::to_string(num_features));
  if (!(eps > 0.0)) throw Error(name + ": eps must be positive, got " + python_float(eps));
  if (!(momentum >= 0.0 && momentum <= 1.0))
    throw Error(name + ": momentum must be in [0, 1], got " + python_float(momentum));
  if (!(r_max >= 1.0 && std::isfinite(r_max)))
    throw Error(name + ": r_max must be at least 1, got " + python_float(r_max));
  if (!(d_max >= 0.0 && std::isfinite(d_max)))
    throw Error(name + ": d_max must be at least 0, got " + python_float(d_max));
}

void BatchRenorm::reset_parameters(Generator&) {
  if (affine) init_affine({num_features}, weight, bias, batch_grad_weight_, batch_grad_bias_);
  batch_grad_weight_.resize({num_features});  // the kernel's sum(dy * xhat), affine or not
  batch_grad_bias_.resize({num_features});
  running_mean = Tensor({num_features}, 0.0f);
  running_var = Tensor({num_features}, 1.0f);
  save_mean_.resize({num_features});
  save_invstd_.resize({num_features});
  scale_.resize({num_features});
  shift_.resize({num_features});
}

double BatchRenorm::state_bytes() const {
  return 10.0 * static_cast<double>(num_features) * sizeof(float);
}

std::string BatchRenorm::repr() const {
  return "BatchRenorm" + std::to_string(dims) + "d(" + std::to_string(num_features) +
         ", eps=" + python_float(eps) + ", momentum=" + python_float(momentum) +
         ", r_max=" + python_float(r_max) + ", d_max=" + python_float(d_max) +
         ", affine=" + python_bool(affine) + ")";
}

BatchNormShape BatchRenorm::kernel_shape(const Shape& input) const {
  return batch_norm_like_shape(repr(), dims, num_features, input);
}

Shape BatchRenorm::output_shape(const Shape& input) const {
  kernel_shape(input);
  return input;
}

ChannelAffine BatchRenorm::eval_channel_affine() const {
  return running_stats_affine(num_features, affine ? weight.value.data() : nullptr,
                              affine ? bias.value.data() : nullptr, running_mean.data(),
                              running_var.data(), eps);
}

/* Forward, training (shape (N, C, S), M = N*S per channel):
 *   pass 1-2: xhat = (x - mu_B) * invstd_B into y (batch_norm_forward_training,
 *             no affine), which also folds the batch into the running
 *             statistics as BatchNorm does, after r and d read them;
 *   r = clip(sigma_B / sigma, 1/r_max, r_max), d = clip((mu_B - mu) / sigma, -d_max, d_max)
 *   with sigma_B = 1/invstd_B, sigma = sqrt(running_var + eps), mu = running_mean (old);
 *   pass 3:   y = xhat * scale + shift, scale = w * r, shift = w * d + b.
 * Eval: BatchNorm's, y = (x - mu) / sigma * w + b. */
const Tensor& BatchRenorm::forward(const Tensor& input) {
  const BatchNormShape shape = kernel_shape(input.shape());
  input_ = &input;
  output_.resize(input.shape());
  const float* w = affine ? weight.value.data() : nullptr;
  const float* b = affine ? bias.value.data() : nullptr;
  used_batch_stats_ = training_;
  if (!training_) {
    batch_norm_forward_inference(input.data(), shape, w, b, running_mean.data(), running_var.data(),
                                 eps, output_.data());
    return output_;
  }
  const std::vector<float> old_mean(running_mean.data(), running_mean.data() + num_features);
  const std::vector<float> old_var(running_var.data(), running_var.data() + num_features);
  ++num_batches_tracked;
  const RunningStats running{running_mean.data(), running_var.data(), momentum, true};
  batch_norm_forward_training(input.data(), shape, nullptr, nullptr, running, eps, output_.data(),
                              save_mean_.data(), save_invstd_.data());
  last_r.assign(static_cast<size_t>(num_features), 1.0);
  last_d.assign(static_cast<size_t>(num_features), 0.0);
  for (int64_t j = 0; j < num_features; ++j) {
    const double sigma = std::sqrt(static_cast<double>(old_var[j]) + eps);
    const double r = std::clamp(1.0 / save_invstd_[j] / sigma, 1.0 / r_max, r_max);
    const double d = std::clamp((save_mean_[j] - old_mean[j]) / sigma, -d_max, d_max);
    const double gamma = w ? w[j] : 1.0, beta = b ? b[j] : 0.0;
    scale_[j] = static_cast<float>(gamma * r);
    shift_[j] = static_cast<float>(gamma * d + beta);
    last_r[static_cast<size_t>(j)] = r;
    last_d[static_cast<size_t>(j)] = d;
  }
  float* y = output_.data();
  for (int64_t i = 0; i < shape.n; ++i)
    for (int64_t j = 0; j < shape.c; ++j) {
      float* row = y + (i * shape.c + j) * shape.s;
      for (int64_t k = 0; k < shape.s; ++k) row[k] = row[k] * scale_[j] + shift_[j];
    }
  return output_;
}

/* Backward, training, r and d constant: y = xhat * scale + shift is
 * BatchNorm's map with weight scale, so dx = batch_norm_backward with
 * weight scale, and with g = sum(dy * xhat), h = sum(dy) from the same call:
 *   dweight = r * g + d * h,  dbias = h.
 * Eval: batch_norm_backward_inference. */
const Tensor& BatchRenorm::backward(const Tensor& grad_output) {
  check_backward_args(*this, input_, grad_output);
  const BatchNormShape shape = kernel_shape(input_->shape());
  grad_input_.resize(compute_grad_input ? input_->shape() : kNoGradInputShape);
  float* dx = compute_grad_input ? grad_input_.data() : nullptr;
  if (!used_batch_stats_) {
    batch_norm_backward_inference(input_->data(), grad_output.data(), shape,
                                  affine ? weight.value.data() : nullptr, running_mean.data(),
                                  running_var.data(), eps, dx, batch_grad_weight_.data(),
                                  batch_grad_bias_.data());
  } else {
    batch_norm_backward(input_->data(), grad_output.data(), shape, scale_.data(), save_mean_.data(),
                        save_invstd_.data(), dx, batch_grad_weight_.data(),
                        batch_grad_bias_.data());
    for (int64_t j = 0; j < num_features; ++j)
      batch_grad_weight_[j] =
          static_cast<float>(last_r[static_cast<size_t>(j)] * batch_grad_weight_[j] +
                             last_d[static_cast<size_t>(j)] * batch_grad_bias_[j]);
  }
  if (affine) {
    add_batch_grad(weight, batch_grad_weight_);
    add_batch_grad(bias, batch_grad_bias_);
  }
  return grad_input_;
}

std::vector<std::pair<std::string, Parameter*>> BatchRenorm::parameters() {
  if (!affine) return {};
  return affine_parameters(weight, bias);
}

std::vector<Buffer> BatchRenorm::buffers() {
  return running_stats_buffers(running_mean, running_var, num_batches_tracked);
}

}  // namespace bnlab::nn
