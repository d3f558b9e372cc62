// InstanceNorm1d/2d: GroupNorm's kernels with one channel per group, and
// PyTorch's optional running statistics (track_running_stats), which eval
// normalizes with through BatchNorm's inference kernels.
#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/group_norm.hpp"
#include "bnlab/nn/norm_layers.hpp"
#include "nn/init.hpp"
#include "nn/norm_common.hpp"
#include "nn/python_repr.hpp"

namespace bnlab::nn {

InstanceNorm::InstanceNorm(int dims, int64_t num_features, double eps, double momentum, bool affine,
                           bool track_running_stats)
    : InstanceNorm(dims, num_features, eps, momentum, affine, track_running_stats, deferred) {
  Generator unused(0);
  reset_parameters(unused);
}

InstanceNorm::InstanceNorm(int dims, int64_t num_features, double eps, double momentum, bool affine,
                           bool track_running_stats, Deferred)
    : dims(dims),
      num_features(num_features),
      eps(eps),
      momentum(momentum),
      affine(affine),
      track_running_stats(track_running_stats) {
  if (dims < 1 || dims > 2)
    throw Error("InstanceNorm: dims must be 1 or 2, got " + std::to_string(dims));
  const std::string name = "InstanceNorm" + std::to_string(dims) + "d";
  if (num_features <= 0)
    throw Error(name + ": num_features must be positive, got " + std::to_string(num_features));
  if (!(eps > 0.0)) throw Error(name + ": eps must be positive, got " + python_float(eps));
  if (!(momentum >= 0.0 && momentum <= 1.0))
    throw Error(name + ": momentum must be in [0, 1], got " + python_float(momentum));
}

void InstanceNorm::reset_parameters(Generator&) {
  if (affine) init_affine({num_features}, weight, bias, batch_grad_weight_, batch_grad_bias_);
  if (track_running_stats) {
    running_mean = Tensor({num_features}, 0.0f);
    running_var = Tensor({num_features}, 1.0f);
  }
}

double InstanceNorm::state_bytes() const {
  const double per_channel = (affine ? 6.0 : 0.0) + (track_running_stats ? 2.0 : 0.0);
  return per_channel * static_cast<double>(num_features) * sizeof(float);
}

std::string InstanceNorm::repr() const {
  return "InstanceNorm" + std::to_string(dims) + "d(" + std::to_string(num_features) +
         ", eps=" + python_float(eps) + ", momentum=" + python_float(momentum) +
         ", affine=" + python_bool(affine) +
         ", track_running_stats=" + python_bool(track_running_stats) + ")";
}

// Batched (N, C, spatial...) or, as PyTorch allows, unbatched (C, spatial...).
Shape InstanceNorm::output_shape(const Shape& input) const {
  const size_t batched = static_cast<size_t>(dims) + 2;
  if (input.size() != batched && input.size() != batched - 1)
    throw Error(repr() + ": expected " + std::to_string(batched - 1) + "-D or " +
                std::to_string(batched) + "-D input, got " + std::to_string(input.size()) +
                "-D input of shape " + shape_string(input));
  const int64_t channels = input[input.size() == batched ? 1 : 0];
  if (channels != num_features)
    throw Error(repr() + ": input has " + std::to_string(channels) + " channels (shape " +
                shape_string(input) + ") but num_features is " + std::to_string(num_features));
  return input;
}

BatchNormShape InstanceNorm::kernel_shape(const Shape& input) const {
  output_shape(input);
  const bool batched = input.size() == static_cast<size_t>(dims) + 2;
  BatchNormShape shape;
  shape.n = batched ? input[0] : 1;
  shape.c = num_features;
  for (size_t d = batched ? 2 : 1; d < input.size(); ++d) shape.s *= input[d];
  return shape;
}

/* Forward.
 * Training, or no running statistics: per sample i and channel j over its s positions,
 *   y = (x - mean_ij) * invstd_ij * w + b   (group_norm_forward, groups = C);
 *   with track_running_stats in training also (PyTorch's rule)
 *   running_mean = (1 - momentum) running_mean + momentum * mean_i(mean_ij)
 *   running_var  = (1 - momentum) running_var  + momentum * mean_i(var_ij * s / (s - 1)),
 *   mean_ij and var_ij recomputed in double (one more pass, only then).
 * Eval with running statistics: y = (x - running_mean) / sqrt(running_var + eps) * w + b. */
const Tensor& InstanceNorm::forward(const Tensor& input) {
  const BatchNormShape shape = kernel_shape(input.shape());
  input_ = &input;
  output_.resize(input.shape());
  const float* w = affine ? weight.value.data() : nullptr;
  const float* b = affine ? bias.value.data() : nullptr;
  used_running_stats_ = !training_ && track_running_stats;
  if (used_running_stats_) {
    batch_norm_forward_inference(input.data(), shape, w, b, running_mean.data(), running_var.data(),
                                 eps, output_.data());
    return output_;
  }
  const GroupNormShape group_shape{shape.n, shape.c, shape.s, shape.c, Layout::channels_first};
  save_mean_.resize({shape.n * shape.c});
  save_invstd_.resize({shape.n * shape.c});
  group_norm_forward(input.data(), group_shape, w, b, eps, output_.data(), save_mean_.data(),
                     save_invstd_.data());
  if (training_ && track_running_stats) {
    if (shape.s < 2)
      throw Error(repr() +
                  ": expected more than 1 spatial element per channel when training "
                  "with running statistics, got input of shape " +
                  shape_string(input.shape()));
    const double s = static_cast<double>(shape.s);
    for (int64_t j = 0; j < shape.c; ++j) {
      double mean_sum = 0.0, var_sum = 0.0;
      for (int64_t i = 0; i < shape.n; ++i) {
        const float* x = input.data() + (i * shape.c + j) * shape.s;
        double sum = 0.0;
        for (int64_t k = 0; k < shape.s; ++k) sum += x[k];
        const double mean = sum / s;
        double squares = 0.0;
        for (int64_t k = 0; k < shape.s; ++k) squares += (x[k] - mean) * (x[k] - mean);
        mean_sum += mean;
        var_sum += squares / (s - 1.0);
      }
      const double count = static_cast<double>(shape.n);
      running_mean[j] =
          static_cast<float>((1.0 - momentum) * running_mean[j] + momentum * mean_sum / count);
      running_var[j] =
          static_cast<float>((1.0 - momentum) * running_var[j] + momentum * var_sum / count);
    }
  }
  return output_;
}

/* Backward: group_norm_backward (groups = C) after instance statistics;
 * batch_norm_backward_inference after running statistics (constants). */
const Tensor& InstanceNorm::backward(const Tensor& grad_output) {
  check_backward_args(*this, input_, grad_output);
  const BatchNormShape shape = kernel_shape(input_->shape());
  grad_input_.resize(compute_grad_input ? input_->shape() : kNoGradInputShape);
  float* dx = compute_grad_input ? grad_input_.data() : nullptr;
  const float* w = affine ? weight.value.data() : nullptr;
  float* dweight = affine ? batch_grad_weight_.data() : nullptr;
  float* dbias = affine ? batch_grad_bias_.data() : nullptr;
  if (used_running_stats_) {
    batch_norm_backward_inference(input_->data(), grad_output.data(), shape, w, running_mean.data(),
                                  running_var.data(), eps, dx, dweight, dbias);
  } else {
    const GroupNormShape group_shape{shape.n, shape.c, shape.s, shape.c, Layout::channels_first};
    group_norm_backward(input_->data(), grad_output.data(), group_shape, w, save_mean_.data(),
                        save_invstd_.data(), dx, dweight, dbias);
  }
  if (affine) {
    add_batch_grad(weight, batch_grad_weight_);
    add_batch_grad(bias, batch_grad_bias_);
  }
  return grad_input_;
}

std::vector<std::pair<std::string, Parameter*>> InstanceNorm::parameters() {
  if (!affine) return {};
  return affine_parameters(weight, bias);
}

std::vector<Buffer> InstanceNorm::buffers() {
  if (!track_running_stats) return {};
  return running_stats_buffers(running_mean, running_var, num_batches_tracked);
}

}  // namespace bnlab::nn
