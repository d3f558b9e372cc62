// BatchNorm1d/2d/3d: the module around the kernels of bnlab/batch_norm.hpp,
// with PyTorch's semantics for running statistics, eval() and fused ReLU.
#include <cmath>

#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "nn/init.hpp"
#include "nn/python_repr.hpp"
#include "nn/relu_bf16.hpp"

namespace bnlab::nn {

BatchNorm::BatchNorm(int dims, int64_t num_features, double eps, std::optional<double> momentum,
                     bool affine, bool track_running_stats)
    : BatchNorm(dims, num_features, eps, momentum, affine, track_running_stats, deferred) {
  Generator unused(0);
  reset_parameters(unused);
}

BatchNorm::BatchNorm(int dims, int64_t num_features, double eps, std::optional<double> momentum,
                     bool affine, bool track_running_stats, Deferred)
    : dims(dims),
      num_features(num_features),
      eps(eps),
      momentum(momentum),
      affine(affine),
      track_running_stats(track_running_stats) {
  if (dims < 1 || dims > 3)
    throw Error("BatchNorm: dims must be 1, 2 or 3, got " + std::to_string(dims));
  if (num_features <= 0)
    throw Error("BatchNorm" + std::to_string(dims) + "d: num_features must be positive, got " +
                std::to_string(num_features));
  if (!(eps > 0.0))
    throw Error("BatchNorm" + std::to_string(dims) + "d: eps must be positive, got " +
                python_float(eps));
}

void BatchNorm::reset_parameters(Generator&) {
  if (affine) {
    weight.value = Tensor({num_features}, 1.0f);
    weight.grad = Tensor({num_features}, 0.0f);
    bias.value = Tensor({num_features}, 0.0f);
    bias.grad = Tensor({num_features}, 0.0f);
    batch_grad_weight_.resize({num_features});
    batch_grad_bias_.resize({num_features});
  }
  if (track_running_stats) {
    running_mean = Tensor({num_features}, 0.0f);
    running_var = Tensor({num_features}, 1.0f);
  }
  save_mean_.resize({num_features});
  save_invstd_.resize({num_features});
}

double BatchNorm::state_bytes() const {
  // weight, bias and their grads and this batch's; running mean and variance; save_mean/invstd
  const double per_channel = (affine ? 6.0 : 0.0) + (track_running_stats ? 2.0 : 0.0) + 2.0;
  return per_channel * static_cast<double>(num_features) * sizeof(float);
}

bool BatchNorm::apply_activation(Activation activation) {
  fuse_relu = activation == Activation::relu;
  return fuse_relu;
}

void BatchNorm::freeze_batch_norm(bool freeze_affine) {
  if (!track_running_stats)
    throw Error(repr() + ": freezing needs running statistics (track_running_stats=True)");
  freeze_statistics = true;
  weight.requires_grad = bias.requires_grad = !freeze_affine;
}

ChannelAffine BatchNorm::eval_channel_affine() const {
  if (!track_running_stats)
    throw Error(repr() +
                ": it has no running statistics (track_running_stats=False), so eval "
                "mode normalizes with each batch's statistics");
  ChannelAffine affine_map;
  affine_map.scale.assign(static_cast<size_t>(num_features), 0.0);
  affine_map.shift.assign(static_cast<size_t>(num_features), 0.0);
  for (int64_t j = 0; j < num_features; ++j) {
    const double gamma = affine ? weight.value[j] : 1.0;
    const double beta = affine ? bias.value[j] : 0.0;
    const double s = gamma / std::sqrt(static_cast<double>(running_var[j]) + eps);
    affine_map.scale[static_cast<size_t>(j)] = s;
    affine_map.shift[static_cast<size_t>(j)] = beta - running_mean[j] * s;
  }
  return affine_map;
}

// (N, C) -> n = N, c = C, s = 1; (N, C, d1, ...) -> s = d1 * ...; channels
// first, or blocked16 for an nChw16c input (see MemoryFormat). A bf16 (N, C)
// is passed as channels-last, the same memory: the bf16 kernels run rows of
// channels in registers, but channels-first runs of one value through a
// float buffer.
BatchNormShape BatchNorm::kernel_shape(const Shape& input, MemoryFormat format) const {
  if (input != checked_input_shape_) output_shape(input);  // throws on a bad shape
  BatchNormShape shape;
  shape.n = input[0];
  shape.c = input[1];
  shape.s = 1;
  for (size_t d = 2; d < input.size(); ++d) shape.s *= input[d];
  shape.layout = is_blocked16(format) ? Layout::blocked16 : Layout::channels_first;
  if (is_bf16(format) && shape.s == 1) shape.layout = Layout::channels_last;
  return shape;
}

Shape BatchNorm::output_shape(const Shape& input) const {
  const std::string name = "BatchNorm" + std::to_string(dims) + "d";
  const bool rank_ok = dims == 1 ? (input.size() == 2 || input.size() == 3)
                                 : input.size() == static_cast<size_t>(dims + 2);
  if (!rank_ok) {
    const std::string expected = dims == 1 ? "2-D or 3-D input" : std::to_string(dims + 2) + "-D input";
    throw Error(name + ": expected " + expected + ", got " + std::to_string(input.size()) +
                "-D input of shape " + shape_string(input));
  }
  if (input[1] != num_features)
    throw Error(name + "(" + std::to_string(num_features) + "): input has " +
                std::to_string(input[1]) + " channels (shape " + shape_string(input) +
                ") but num_features is " + std::to_string(num_features));
  return input;
}

/* Forward.
 * Training, or eval without running statistics: batch statistics,
 *   y = act((x - mean_B) * invstd_B * w + b), through batch_norm_forward_training,
 *   which also folds the batch into running_mean/var (when tracked) with factor
 *   momentum, or 1/num_batches_tracked when momentum is None (after the counter
 *   is incremented, as PyTorch does). save_mean/save_invstd are kept for backward.
 * Eval with running statistics:
 *   y = act((x - running_mean) / sqrt(running_var + eps) * w + b). */
const Tensor& BatchNorm::forward(const Tensor& input) {
  return forward_formatted(input, MemoryFormat::plain, MemoryFormat::plain);
}

Blocked16Use BatchNorm::blocked16_use(const Shape& input) const {
  return dims == 2 && fits_blocked16(input) ? Blocked16Use::keeps : Blocked16Use::no;
}

// bf16 through the kernels of bnlab/batch_norm_bf16.hpp; SyncBatchNorm's
// collectives and the frozen statistics' backward have float kernels only.
ChainUse BatchNorm::bf16_use(const Shape&) const {
  return sync == nullptr && !freeze_statistics ? ChainUse::keeps : ChainUse::no;
}

const Tensor& BatchNorm::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  check_kept_format(input.shape(), in, out);  // a valid shape that fits is BatchNorm2d's
  format_ = in;
  const BatchNormShape shape = kernel_shape(input.shape(), format_);
  checked_input_shape_ = input.shape();
  input_ = &input;
  output_.resize(input.shape());
  const float* w = affine ? weight.value.data() : nullptr;
  const float* b = affine ? bias.value.data() : nullptr;
  const Activation activation = fuse_relu ? Activation::relu : Activation::none;
  used_batch_stats_ = (training_ && !freeze_statistics) || !track_running_stats;
  const bool bf16 = is_bf16(format_);
  if (!used_batch_stats_) {
    synced_ = false;  // the backward that follows is the inference one, with no collective
    if (bf16) {
      batch_norm_forward_inference_bf16(bf16_data(input), shape, w, b, running_mean.data(),
                                        running_var.data(), eps, bf16_data(output_), activation);
      return output_;
    }
    batch_norm_forward_inference(input.data(), shape, w, b, running_mean.data(),
                                 running_var.data(), eps, output_.data(), activation);
    return output_;
  }
  RunningStats running;
  if (training_ && track_running_stats) {
    ++num_batches_tracked;
    running.mean = running_mean.data();
    running.var = running_var.data();
    running.momentum = momentum ? *momentum : 1.0 / static_cast<double>(num_batches_tracked);
  }
  synced_ = training_ && sync != nullptr;
  BatchNormStatus status;
  if (bf16) {
    status = batch_norm_forward_training_bf16(bf16_data(input), shape, w, b, running, eps,
                                              bf16_data(output_), save_mean_.data(),
                                              save_invstd_.data(), activation);
  } else if (synced_) {
    // SyncBatchNorm: this process's statistics, merged with every process's.
    sync_mean_.resize(size_t(num_features));
    sync_m2_.resize(size_t(num_features));
    batch_norm_stats(input.data(), shape, sync_mean_.data(), sync_m2_.data());
    sync_count_ = shape.per_channel();
    sync->merge_stats(num_features, sync_count_, sync_mean_.data(), sync_m2_.data());
    status = batch_norm_forward_with_stats(
        input.data(), shape, w, b, sync_mean_.data(), sync_m2_.data(), sync_count_, running, eps,
        output_.data(), save_mean_.data(), save_invstd_.data(), activation);
  } else {
    status = batch_norm_forward_training(input.data(), shape, w, b, running, eps, output_.data(),
                                         save_mean_.data(), save_invstd_.data(), activation);
  }
  if (training_) last_batch_non_finite = status == BatchNormStatus::non_finite;
  return output_;
}

/* Backward with batch statistics: batch_norm_backward (the batch terms through
 * mean and var), masked by y > 0 when the ReLU is fused.
 * Backward with running statistics (eval): they are constants, so
 *   dx = dy * w * invstd_r,  dw = sum(dy * (x - running_mean) * invstd_r),  db = sum(dy)
 * with invstd_r = 1/sqrt(running_var + eps): batch_norm_backward_inference.
 * dw and db are added into the parameter grads. */
const Tensor& BatchNorm::backward(const Tensor& grad_output) {
  if (input_ == nullptr) throw Error(repr() + ": backward called before forward");
  if (grad_output.shape() != input_->shape())
    throw Error(repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the input " + shape_string(input_->shape()));
  const BatchNormShape shape = kernel_shape(input_->shape(), format_);
  grad_input_.resize(compute_grad_input ? input_->shape() : kNoGradInputShape);
  float* dx_out = compute_grad_input ? grad_input_.data() : nullptr;
  const Activation activation = fuse_relu ? Activation::relu : Activation::none;
  float* dweight = affine ? batch_grad_weight_.data() : nullptr;
  float* dbias = affine ? batch_grad_bias_.data() : nullptr;
  if (is_bf16(format_)) {
    backward_bf16(grad_output, shape, dweight, dbias);
  } else if (synced_) {
    /* SyncBatchNorm: this process's sums; dweight/dbias take them as this
       process's share (the data-parallel gradient sum adds the others', so
       nothing is counted twice), dx the sums over every process. */
    sync_sum_dy_.resize(size_t(num_features));
    sync_sum_dy_xhat_.resize(size_t(num_features));
    const float* y = fuse_relu ? output_.data() : nullptr;
    batch_norm_backward_reduce(input_->data(), grad_output.data(), shape, save_mean_.data(),
                               save_invstd_.data(), sync_sum_dy_.data(), sync_sum_dy_xhat_.data(),
                               activation, y);
    for (int64_t j = 0; affine && j < num_features; ++j) {
      dweight[j] = static_cast<float>(sync_sum_dy_xhat_[size_t(j)]);
      dbias[j] = static_cast<float>(sync_sum_dy_[size_t(j)]);
    }
    // Every process skips dx alike (the first layer), and with it the collective.
    if (dx_out != nullptr) {
      sync->sum_grad_sums(num_features, sync_sum_dy_.data(), sync_sum_dy_xhat_.data());
      batch_norm_backward_with_sums(input_->data(), grad_output.data(), shape,
                                    affine ? weight.value.data() : nullptr, save_mean_.data(),
                                    save_invstd_.data(), sync_sum_dy_.data(),
                                    sync_sum_dy_xhat_.data(), sync_count_, dx_out, activation, y);
    }
  } else if (used_batch_stats_) {
    batch_norm_backward(input_->data(), grad_output.data(), shape,
                        affine ? weight.value.data() : nullptr, save_mean_.data(),
                        save_invstd_.data(), dx_out, dweight, dbias, activation,
                        fuse_relu ? output_.data() : nullptr);
  } else {
    batch_norm_backward_inference(input_->data(), grad_output.data(), shape,
                                  affine ? weight.value.data() : nullptr, running_mean.data(),
                                  running_var.data(), eps, dx_out, dweight, dbias, activation,
                                  fuse_relu ? output_.data() : nullptr);
  }
  if (affine)
    for (int64_t j = 0; j < num_features; ++j) {
      weight.grad[j] += dweight[j];
      bias.grad[j] += dbias[j];
    }
  return grad_input_;
}

/* Backward on bf16 x and dy (a bf16 chain): batch_norm_backward_bf16 with
 * batch statistics, the fused ReLU's mask (y > 0) taken inside its passes.
 * With running statistics (eval) dy is masked by a bf16 pass into
 * masked_grad_, x and dy are widened and the float kernel runs, dx rounded to
 * bf16: a path for gradient checks (training never takes it: bf16_use says no
 * to frozen statistics). */
void BatchNorm::backward_bf16(const Tensor& grad_output, const BatchNormShape& shape,
                              float* dweight, float* dbias) {
  const int64_t count = grad_output.numel();
  const uint16_t* dy = bf16_data(grad_output);
  uint16_t* dx = compute_grad_input ? bf16_data(grad_input_) : nullptr;
  const float* w = affine ? weight.value.data() : nullptr;
  if (used_batch_stats_) {
    batch_norm_backward_bf16(bf16_data(*input_), dy, shape, w, save_mean_.data(),
                             save_invstd_.data(), dx, dweight, dbias,
                             fuse_relu ? Activation::relu : Activation::none,
                             bf16_data(output_));
    return;
  }
  if (fuse_relu) {
    masked_grad_.resize(grad_output.shape());
    relu_backward_bf16(dy, bf16_data(output_), bf16_data(masked_grad_), count);
    dy = bf16_data(masked_grad_);
  }
  Tensor x(input_->shape()), dy_wide(input_->shape()), dx_wide(input_->shape());
  bf16_to_floats(bf16_data(*input_), x.data(), count);
  bf16_to_floats(dy, dy_wide.data(), count);
  batch_norm_backward_inference(x.data(), dy_wide.data(), shape, w, running_mean.data(),
                                running_var.data(), eps, dx ? dx_wide.data() : nullptr, dweight,
                                dbias, Activation::none, nullptr);
  if (dx) floats_to_bf16(dx_wide.data(), dx, count);
}

std::string BatchNorm::repr() const {
  return "BatchNorm" + std::to_string(dims) + "d(" + std::to_string(num_features) +
         ", eps=" + python_float(eps) +
         ", momentum=" + (momentum ? python_float(*momentum) : std::string("None")) +
         ", affine=" + python_bool(affine) +
         ", track_running_stats=" + python_bool(track_running_stats) + ")";
}

std::vector<std::pair<std::string, Parameter*>> BatchNorm::parameters() {
  if (!affine) return {};
  return {{"weight", &weight}, {"bias", &bias}};
}

std::vector<Buffer> BatchNorm::buffers() {
  if (!track_running_stats) return {};
  return {{"running_mean", &running_mean, nullptr},
          {"running_var", &running_var, nullptr},
          {"num_batches_tracked", nullptr, &num_batches_tracked}};
}

}  // namespace bnlab::nn
