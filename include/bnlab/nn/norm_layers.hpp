// The normalization layers beside BatchNorm (issue 14), PyTorch's (and
// torchvision's) names, arguments, defaults, reprs and state-dict keys:
// GroupNorm, LayerNorm, InstanceNorm1d/2d over the kernels of group_norm.hpp
// and layer_norm.hpp; torchvision's FrozenBatchNorm2d, GhostBatchNorm1d/2d and
// BatchRenorm1d/2d over BatchNorm's kernels. Affine parameters start at
// weight 1, bias 0; running statistics at mean 0, var 1.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bnlab/nn/module.hpp"

namespace bnlab::nn {

// GroupNorm(num_groups, num_channels, eps, affine): input (N, C, *), each
// sample's channels split into num_groups groups of consecutive channels,
// each normalized over its channels and positions; weight/bias (C) per channel.
class GroupNorm : public Module {
 public:
  GroupNorm(int64_t num_groups, int64_t num_channels, double eps = 1e-5, bool affine = true);
  GroupNorm(int64_t num_groups, int64_t num_channels, double eps, bool affine, Deferred);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // "GroupNorm(2, 4, eps=1e-05, affine=True)"
  Shape output_shape(const Shape& input) const override;
  std::vector<std::pair<std::string, Parameter*>> parameters() override;
  bool has_parameters() override { return affine; }
  void reset_parameters(Generator& gen) override;
  double state_bytes() const override;

  int64_t num_groups, num_channels;
  double eps;
  bool affine;
  Parameter weight, bias;  // empty when !affine
 private:
  const Tensor* input_ = nullptr;
  Tensor output_, grad_input_, save_mean_, save_invstd_, batch_grad_weight_, batch_grad_bias_;
};

// LayerNorm(normalized_shape, eps, elementwise_affine, bias): each input's
// trailing dims equal to normalized_shape are normalized together;
// weight/bias have normalized_shape (bias only with bias=True, PyTorch 2.1).
class LayerNorm : public Module {
 public:
  LayerNorm(Shape normalized_shape, double eps = 1e-5, bool elementwise_affine = true,
            bool bias = true);
  LayerNorm(Shape normalized_shape, double eps, bool elementwise_affine, bool bias, Deferred);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // "LayerNorm((4,), eps=1e-05, elementwise_affine=True)"
  Shape output_shape(const Shape& input) const override;
  std::vector<std::pair<std::string, Parameter*>> parameters() override;
  bool has_parameters() override { return elementwise_affine; }
  void reset_parameters(Generator& gen) override;
  double state_bytes() const override;

  Shape normalized_shape;
  double eps;
  bool elementwise_affine, has_bias;
  Parameter weight, bias;  // empty when absent
 private:
  int64_t cols() const;
  const Tensor* input_ = nullptr;
  Tensor output_, grad_input_, save_mean_, save_invstd_, batch_grad_weight_, batch_grad_bias_;
};

// InstanceNorm1d (N, C, L) / InstanceNorm2d (N, C, H, W) (or without N):
// each (sample, channel) normalized over its positions, GroupNorm with one
// channel per group. With track_running_stats, training folds the mean over
// the batch of the per-instance means and unbiased variances into
// running_mean/var (PyTorch's rule; num_batches_tracked is kept but, as in
// PyTorch, never counts), and eval normalizes with them.
class InstanceNorm : public Module {
 public:
  InstanceNorm(int dims, int64_t num_features, double eps = 1e-5, double momentum = 0.1,
               bool affine = false, bool track_running_stats = false);
  InstanceNorm(int dims, int64_t num_features, double eps, double momentum, bool affine,
               bool track_running_stats, Deferred);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  // "InstanceNorm2d(4, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)"
  std::string repr() const override;
  Shape output_shape(const Shape& input) const override;
  std::vector<std::pair<std::string, Parameter*>> parameters() override;
  std::vector<Buffer> buffers() override;  // running_mean, running_var, num_batches_tracked
  bool has_parameters() override { return affine; }
  void reset_parameters(Generator& gen) override;
  double state_bytes() const override;

  int dims;  // 1 or 2
  int64_t num_features;
  double eps, momentum;
  bool affine, track_running_stats;
  Parameter weight, bias;            // empty when !affine
  Tensor running_mean, running_var;  // empty when !track_running_stats
  int64_t num_batches_tracked = 0;

 private:
  BatchNormShape kernel_shape(const Shape& input) const;  // (n, c, s) channels first
  const Tensor* input_ = nullptr;
  bool used_running_stats_ = false;
  Tensor output_, grad_input_, save_mean_, save_invstd_, batch_grad_weight_, batch_grad_bias_;
};

// FrozenBatchNorm2d(num_features, eps) as torchvision defines it
// (torchvision.ops.misc): BatchNorm2d with every tensor fixed, in training
// too: y = x * scale + shift, scale = weight / sqrt(running_var + eps),
// shift = bias - running_mean * scale. weight, bias, running_mean and
// running_var are buffers (the state dict has them, the optimizer does not).
class FrozenBatchNorm2d : public Module {
 public:
  explicit FrozenBatchNorm2d(int64_t num_features, double eps = 1e-5);
  FrozenBatchNorm2d(int64_t num_features, double eps, Deferred);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;  // dx = dy * scale
  // Keeps nChw16c when num_features is a multiple of 16, as BatchNorm2d.
  const Tensor& forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) override;
  Blocked16Use blocked16_use(const Shape& input) const override;
  std::string repr() const override;  // "FrozenBatchNorm2d(64, eps=1e-05)"
  Shape output_shape(const Shape& input) const override;
  std::vector<Buffer> buffers() override;  // weight, bias, running_mean, running_var
  bool has_parameters() override { return false; }
  void reset_parameters(Generator& gen) override;
  double state_bytes() const override;
  bool folds_into_previous() const override { return true; }
  ChannelAffine eval_channel_affine() const override;

  int64_t num_features;
  double eps;
  Tensor weight, bias, running_mean, running_var;

 private:
  BatchNormShape kernel_shape(const Shape& input) const;
  const Tensor* input_ = nullptr;
  MemoryFormat format_ = MemoryFormat::plain;
  Tensor output_, grad_input_;
};

// GhostBatchNorm1d/2d(num_features, virtual_batch_size, eps, momentum, affine,
// track_running_stats) (Hoffer et al. 2017; Keras's virtual_batch_size):
// training normalizes each consecutive slice of virtual_batch_size examples
// (the last one may be shorter) with its own statistics, and the running
// statistics take every slice in order, as BatchNorm takes a batch
// (num_batches_tracked counts slices); eval is BatchNorm's, whole batch.
// Its state dict has BatchNorm's keys: a BatchNorm1d/2d loads it.
class GhostBatchNorm : public Module {
 public:
  GhostBatchNorm(int dims, int64_t num_features, int64_t virtual_batch_size, double eps = 1e-5,
                 std::optional<double> momentum = 0.1, bool affine = true,
                 bool track_running_stats = true);
  GhostBatchNorm(int dims, int64_t num_features, int64_t virtual_batch_size, double eps,
                 std::optional<double> momentum, bool affine, bool track_running_stats, Deferred);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  // "GhostBatchNorm2d(16, virtual_batch_size=32, eps=1e-05, momentum=0.1, affine=True,
  // track_running_stats=True)"
  std::string repr() const override;
  Shape output_shape(const Shape& input) const override;
  std::vector<std::pair<std::string, Parameter*>> parameters() override;
  std::vector<Buffer> buffers() override;  // running_mean, running_var, num_batches_tracked
  bool has_parameters() override { return affine; }
  void reset_parameters(Generator& gen) override;
  double state_bytes() const override;
  bool folds_into_previous() const override { return track_running_stats; }
  ChannelAffine eval_channel_affine() const override;

  int dims;  // 1 or 2
  int64_t num_features, virtual_batch_size;
  double eps;
  std::optional<double> momentum;
  bool affine, track_running_stats;
  Parameter weight, bias;
  Tensor running_mean, running_var;
  int64_t num_batches_tracked = 0;
  bool last_batch_non_finite = false;  // as BatchNorm's, for any slice
 private:
  BatchNormShape kernel_shape(const Shape& input) const;  // the whole batch
  const Tensor* input_ = nullptr;
  bool used_batch_stats_ = true;
  int64_t slice_ = 0;  // the last forward's slice size
  Tensor output_, grad_input_, save_mean_, save_invstd_, batch_grad_weight_, batch_grad_bias_;
};

// BatchRenorm1d/2d(num_features, eps, momentum, r_max, d_max, affine)
// (Ioffe 2017). Training, per channel, with sigma_B = sqrt(var_B + eps) and
// sigma = sqrt(running_var + eps) from before this batch's update:
//   r = clip(sigma_B / sigma, 1/r_max, r_max),  d = clip((mu_B - running_mean) / sigma, -d_max,
//   d_max) y = ((x - mu_B) / sigma_B * r + d) * weight + bias
// with r and d constants in the backward; running statistics and
// num_batches_tracked as BatchNorm's (the same keys: a BatchNorm loads it);
// eval is BatchNorm's. momentum defaults to 0.01 (see docs/toolkit.md). The
// paper starts at r_max = 1, d_max = 0 (plain BN) and relaxes them: they
// are members, which a training loop may change between steps.
class BatchRenorm : public Module {
 public:
  BatchRenorm(int dims, int64_t num_features, double eps = 1e-5, double momentum = 0.01,
              double r_max = 3.0, double d_max = 5.0, bool affine = true);
  BatchRenorm(int dims, int64_t num_features, double eps, double momentum, double r_max,
              double d_max, bool affine, Deferred);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  // "BatchRenorm2d(16, eps=1e-05, momentum=0.01, r_max=3.0, d_max=5.0, affine=True)"
  std::string repr() const override;
  Shape output_shape(const Shape& input) const override;
  std::vector<std::pair<std::string, Parameter*>> parameters() override;
  std::vector<Buffer> buffers() override;  // running_mean, running_var, num_batches_tracked
  bool has_parameters() override { return affine; }
  void reset_parameters(Generator& gen) override;
  double state_bytes() const override;
  bool folds_into_previous() const override { return true; }
  ChannelAffine eval_channel_affine() const override;

  int dims;  // 1 or 2
  int64_t num_features;
  double eps, momentum, r_max, d_max;
  bool affine;
  Parameter weight, bias;
  Tensor running_mean, running_var;
  int64_t num_batches_tracked = 0;
  std::vector<double> last_r, last_d;  // the last training forward's, per channel
 private:
  BatchNormShape kernel_shape(const Shape& input) const;
  const Tensor* input_ = nullptr;
  bool used_batch_stats_ = true;
  // scale_ = weight * r (the backward's weight), shift_ = weight * d + bias.
  Tensor output_, grad_input_, save_mean_, save_invstd_, scale_, shift_, batch_grad_weight_,
      batch_grad_bias_;
};

}  // namespace bnlab::nn
