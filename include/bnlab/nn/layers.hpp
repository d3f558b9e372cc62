// The layers of the toolkit, PyTorch's names, arguments, defaults and reprs.
// Each keeps its own output and input-gradient tensors and reuses them.
// Initialisation follows PyTorch: Linear and Conv2d draw weight and bias from
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5));
// BatchNorm starts at weight 1, bias 0, running_mean 0, running_var 1.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bnlab/aligned.hpp"
#include "bnlab/batch_norm.hpp"
#include "bnlab/nn/module.hpp"
#include "bnlab/nn/precision.hpp"
#include "bnlab/random.hpp"

namespace bnlab::nn {

// y = x W^T + b; x (N, in), W (out, in), b (out). GEMM through oneDNN's sgemm.
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen);
  Linear(int64_t in_features, int64_t out_features, bool bias, Deferred);
  ~Linear() override;
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  // Under bf16: a bf16 input (and gradient out) and a bf16 output (and gradient in).
  const Tensor& forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) override;
  ChainUse bf16_use(const Shape& input) const override;
  bool can_output_bf16(const Shape&) const override { return true; }
  std::string repr() const override;
  Shape output_shape(const Shape& input) const override;
  std::vector<std::pair<std::string, Parameter*>> parameters() override;
  bool has_parameters() override { return true; }
  void reset_parameters(Generator& gen) override;
  double state_bytes() const override;
  bool can_absorb_channel_affine() const override { return true; }
  ModulePtr absorb_channel_affine(const ChannelAffine& affine, Generator& gen) const override;

  int64_t in_features, out_features;
  Parameter weight;           // (out, in)
  std::optional<Parameter> bias;  // (out)
 private:
  struct Matmul;  // oneDNN's matmul primitive for the last batch size (linear.cpp)
  std::unique_ptr<Matmul> matmul_;
  const Tensor* input_ = nullptr;
  MemoryFormat in_format_ = MemoryFormat::plain, out_format_ = MemoryFormat::plain;  // the last forward's
  const Tensor& forward_bf16(const Tensor& input);
  const Tensor& backward_bf16(const Tensor& grad_output);
  Shape checked_input_shape_;  // the last input shape validated (no Shape built per step)
  Tensor output_, grad_input_;
  AlignedVector<uint16_t> weight16_, input16_;  // the last bf16 forward's W and float x, rounded
  bool rounded_in_forward_ = false;               // whether the last forward filled them
};

// 2-D convolution, square kernel, NCHW tensors; oneDNN's convolution
// primitives (forward, backward data, backward weights), in oneDNN's blocked
// layouts inside where the channel counts allow (see conv2d.cpp).
// weight (out, in, k, k).
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
         int64_t padding, bool bias, Generator& gen);
  Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
         int64_t padding, bool bias, Deferred);
  ~Conv2d() override;
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  // nChw16c input when in_channels is a multiple of 16, output when out_channels is.
  const Tensor& forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) override;
  Blocked16Use blocked16_use(const Shape& input) const override;
  bool can_output_blocked16(const Shape& input) const override;
  // Under bf16: a bf16 input (and gradient out) and output (and gradient in), either layout.
  ChainUse bf16_use(const Shape& input) const override;
  bool can_output_bf16(const Shape& input) const override { return input.size() == 4; }
  std::string repr() const override;
  Shape output_shape(const Shape& input) const override;
  std::vector<std::pair<std::string, Parameter*>> parameters() override;
  bool has_parameters() override { return true; }
  void reset_parameters(Generator& gen) override;
  double state_bytes() const override;
  bool can_absorb_channel_affine() const override { return true; }
  ModulePtr absorb_channel_affine(const ChannelAffine& affine, Generator& gen) const override;

  int64_t in_channels, out_channels, kernel_size, stride, padding;
  Parameter weight;
  std::optional<Parameter> bias;

 private:
  struct Primitives;  // oneDNN's primitives for the last input shape and formats (conv2d.cpp)
  Primitives& primitives_for(const Shape& input, MemoryFormat in, MemoryFormat out);
  MemoryFormat in_format_ = MemoryFormat::plain, out_format_ = MemoryFormat::plain;
  std::unique_ptr<Primitives> primitives_;
  const Tensor* input_ = nullptr;
  Shape checked_input_shape_;  // as Linear's
  // grad_weight_/grad_bias_: this batch's gradients, added into the Parameters' grads.
  Tensor output_, grad_input_, grad_weight_, grad_bias_, scratchpad_;
};

// What makes a BatchNorm a SyncBatchNorm: the statistics and the backward's
// sums of every process's part of the batch, combined in rank order so the
// result is the same on each (bnlab_dist implements it over MPI).
class BatchNormSync {
 public:
  virtual ~BatchNormSync() = default;
  // In: this process's count and per-channel mean and m2 (c each); out: those of
  // the whole batch over every process (batch_norm_merge_stats in rank order).
  virtual void merge_stats(int64_t c, int64_t& count, double* mean, double* m2) = 0;
  // sum_dy and sum_dy_xhat (c each) summed over every process, in place.
  virtual void sum_grad_sums(int64_t c, double* sum_dy, double* sum_dy_xhat) = 0;
};

// BatchNorm1d (input (N, C) or (N, C, L)), BatchNorm2d (N, C, H, W),
// BatchNorm3d (N, C, D, H, W), over the kernels of batch_norm.hpp.
// momentum = nullopt: cumulative moving average (factor 1/num_batches_tracked).
// fuse_relu: the ReLU after it runs inside the same passes (set by
// Sequential when the architecture has BN followed by ReLU; the ReLU module
// then passes its input through).
class BatchNorm : public Module {
 public:
  BatchNorm(int dims, int64_t num_features, double eps = 1e-5,
            std::optional<double> momentum = 0.1, bool affine = true,
            bool track_running_stats = true);
  BatchNorm(int dims, int64_t num_features, double eps, std::optional<double> momentum, bool affine,
            bool track_running_stats, Deferred);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  // BatchNorm2d keeps nChw16c when num_features is a multiple of 16; every
  // BatchNorm keeps bf16 (bnlab/batch_norm_bf16.hpp) unless synced or frozen.
  const Tensor& forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) override;
  Blocked16Use blocked16_use(const Shape& input) const override;
  ChainUse bf16_use(const Shape& input) const override;
  std::string repr() const override;  // "BatchNorm1d(512, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
  Shape output_shape(const Shape& input) const override;
  std::vector<std::pair<std::string, Parameter*>> parameters() override;
  std::vector<Buffer> buffers() override;  // running_mean, running_var, num_batches_tracked
  bool has_parameters() override { return affine; }
  // Starts at weight 1, bias 0, running_mean 0, running_var 1 (gen unused).
  void reset_parameters(Generator& gen) override;
  double state_bytes() const override;
  bool apply_activation(Activation activation) override;  // ReLU only
  void freeze_batch_norm(bool freeze_affine) override;    // sets freeze_statistics
  bool folds_into_previous() const override { return true; }
  // scale = gamma / sqrt(running_var + eps), shift = beta - running_mean * scale
  ChannelAffine eval_channel_affine() const override;

  int dims;  // 1, 2 or 3
  int64_t num_features;
  double eps;
  std::optional<double> momentum;
  bool affine, track_running_stats;
  bool fuse_relu = false;
  bool freeze_statistics = false;    // training normalizes as eval does (freeze_batch_norm)
  Parameter weight, bias;            // empty tensors when !affine
  Tensor running_mean, running_var;  // empty when !track_running_stats
  int64_t num_batches_tracked = 0;
  // Set when the last training batch had non-finite statistics (running stats untouched).
  bool last_batch_non_finite = false;
  // Non-null: a training forward normalizes with the statistics of the whole
  // batch over every process (SyncBatchNorm); weight/bias grads get this
  // process's share, which the data-parallel gradient sum completes.
  BatchNormSync* sync = nullptr;

 private:
  const Tensor* input_ = nullptr;
  Shape checked_input_shape_;  // as Linear's
  bool used_batch_stats_ = true;
  bool synced_ = false;  // the last forward used the statistics over every process
  MemoryFormat format_ = MemoryFormat::plain;  // the last forward's
  Tensor output_, grad_input_, save_mean_, save_invstd_;
  // The kernel writes this batch's dweight/dbias here; backward adds them into the grads.
  Tensor batch_grad_weight_, batch_grad_bias_;
  Tensor masked_grad_;  // bf16: dy where y > 0 (fused ReLU)
  BatchNormShape kernel_shape(const Shape& input, MemoryFormat format) const;
  void backward_bf16(const Tensor& grad_output, const BatchNormShape& shape, float* dweight,
                     float* dbias);
  // SyncBatchNorm's per-channel doubles, and the batch's value count over every process.
  std::vector<double> sync_mean_, sync_m2_, sync_sum_dy_, sync_sum_dy_xhat_;
  int64_t sync_count_ = 0;
};

// An activation computed value by value: it takes any format that fits, keeps
// it (see MemoryFormat), and gives an output of the input's shape.
class Elementwise : public Module {
 public:
  const Tensor& forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) override;
  Blocked16Use blocked16_use(const Shape& input) const override;
  Shape output_shape(const Shape& input) const override { return input; }
};

class ReLU : public Elementwise {
 public:
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  // Keeps bf16 as well as nChw16c (see MemoryFormat).
  const Tensor& forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) override;
  ChainUse bf16_use(const Shape&) const override { return ChainUse::keeps; }
  std::string repr() const override { return "ReLU()"; }
  Activation fusable_activation() const override { return Activation::relu; }
  void set_applied_by_previous(bool on) override { fused = on; }
  bool fused = false;  // the BatchNorm before it applies it: forward/backward pass through
 private:
  bool bf16_ = false;  // the last forward's values were bf16
  Tensor output_, grad_input_;
};

class LeakyReLU : public Elementwise {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : negative_slope(negative_slope) {}
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // "LeakyReLU(negative_slope=0.01)"
  double negative_slope;
 private:
  const Tensor* input_ = nullptr;
  Tensor output_, grad_input_;
};

class Sigmoid : public Elementwise {
 public:
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override { return "Sigmoid()"; }
 private:
  Tensor output_, grad_input_;
};

class Tanh : public Elementwise {
 public:
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override { return "Tanh()"; }
 private:
  Tensor output_, grad_input_;
};

// GELU: x * Phi(x) (approximate "none") or PyTorch's tanh form ("tanh").
class GELU : public Elementwise {
 public:
  explicit GELU(const std::string& approximate = "none");
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // "GELU(approximate='none')"
  bool tanh_approximation;
 private:
  const Tensor* input_ = nullptr;
  Tensor output_, grad_input_;
};

// ELU: x if x > 0, else alpha * (exp(x) - 1).
class ELU : public Elementwise {
 public:
  explicit ELU(double alpha = 1.0) : alpha(alpha) {}
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // "ELU(alpha=1.0)"
  double alpha;
 private:
  const Tensor* input_ = nullptr;
  Tensor output_, grad_input_;
};

// SiLU (swish): x * sigmoid(x).
class SiLU : public Elementwise {
 public:
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override { return "SiLU()"; }
 private:
  const Tensor* input_ = nullptr;
  Tensor output_, grad_input_;
};

// ReLU6: min(max(x, 0), 6).
class ReLU6 : public Elementwise {
 public:
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override { return "ReLU6()"; }
 private:
  const Tensor* input_ = nullptr;
  Tensor output_, grad_input_;
};

// Hardswish: x * ReLU6(x + 3) / 6.
class Hardswish : public Elementwise {
 public:
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override { return "Hardswish()"; }
 private:
  const Tensor* input_ = nullptr;
  Tensor output_, grad_input_;
};

// PReLU: x if x > 0, else a * x, with a learnable slope `weight` shared by
// all channels (num_parameters = 1) or one per channel (dim 1 of the input).
class PReLU : public Module {
 public:
  PReLU(int64_t num_parameters, double init, Deferred);
  PReLU(int64_t num_parameters = 1, double init = 0.25);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // "PReLU(num_parameters=1)"
  Shape output_shape(const Shape& input) const override;
  std::vector<std::pair<std::string, Parameter*>> parameters() override;
  bool has_parameters() override { return true; }
  void reset_parameters(Generator& gen) override;  // every slope = init
  double state_bytes() const override;
  int64_t num_parameters;
  double init;
  Parameter weight;  // (num_parameters)
 private:
  const Tensor* input_ = nullptr;
  Tensor output_, grad_input_;
};

// Identity: the input, and the gradient, passed through unchanged.
class Identity : public Elementwise {
 public:
  const Tensor& forward(const Tensor& input) override { return input; }
  const Tensor& backward(const Tensor& grad_output) override { return grad_output; }
  std::string repr() const override { return "Identity()"; }
};

// Softmax and LogSoftmax along `dim` (negative counts from the end; nullopt:
// PyTorch's implicit choice, dim 0 for 0-, 1- and 3-D inputs, else 1).
class Softmax : public Module {
 public:
  explicit Softmax(std::optional<int64_t> dim = std::nullopt, bool log = false)
      : dim(dim), log(log) {}
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // "Softmax(dim=1)", "LogSoftmax(dim=1)"
  Shape output_shape(const Shape& input) const override;
  std::optional<int64_t> dim;
  bool log;  // LogSoftmax
 private:
  Tensor output_, grad_input_;
};

// Max pooling over k x k windows (stride defaults to k), NCHW; backward routes
// each gradient to the first maximum of its window, as PyTorch does.
class MaxPool2d : public Module {
 public:
  MaxPool2d(int64_t kernel_size, std::optional<int64_t> stride = std::nullopt, int64_t padding = 0);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  // Keeps nChw16c (see MemoryFormat) when the channels are a multiple of 16,
  // and bf16 when the windows do not overlap (stride >= kernel_size).
  const Tensor& forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) override;
  Blocked16Use blocked16_use(const Shape& input) const override;
  ChainUse bf16_use(const Shape& input) const override;
  std::string repr() const override;  // "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
  Shape output_shape(const Shape& input) const override;
  int64_t kernel_size, stride, padding;
 private:
  Shape input_shape_;
  MemoryFormat format_ = MemoryFormat::plain;  // the last forward's
  std::vector<int32_t> argmax_;
  Tensor output_, grad_input_;
};

// Average pooling, PyTorch 1.13's rule, NCHW: window (kh, kw) at stride
// (sh, sw) over the input padded by (ph, pw) with zeros; the output size
// rounds down, or up with ceil_mode (a window starting in the right or bottom
// padding is dropped). Each output is the window's sum divided by
// divisor_override if set, else by the window's size clipped to the padded
// input (count_include_pad) or to the input itself.
class AvgPool2d : public Module {
 public:
  AvgPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt, Size2 padding = {},
            bool ceil_mode = false, bool count_include_pad = true,
            std::optional<int64_t> divisor_override = std::nullopt);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // "AvgPool2d(kernel_size=2, stride=2, padding=0)"
  Shape output_shape(const Shape& input) const override;
  Size2 kernel_size, stride, padding;
  bool ceil_mode, count_include_pad;
  std::optional<int64_t> divisor_override;
 private:
  Shape input_shape_;
  Tensor output_, grad_input_;
};

// Adaptive average pooling to (out_h, out_w), NCHW: output cell i of a
// dimension of size I averages the inputs [floor(i*I/O), ceil((i+1)*I/O)),
// PyTorch's rule, so sizes that do not divide the input give overlapping
// windows. A size of 0 stands for PyTorch's None (keep the input's size).
class AdaptiveAvgPool2d : public Module {
 public:
  explicit AdaptiveAvgPool2d(Size2 output_size);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // "AdaptiveAvgPool2d(output_size=(2, 3))"
  Shape output_shape(const Shape& input) const override;
  Size2 output_size;
 private:
  Shape input_shape_;
  Tensor output_, grad_input_;
};

// Inverted dropout: in training, zero with probability p, scale the rest by
// 1/(1-p); identity in eval.
class Dropout : public Module {
 public:
  Dropout(double p, Generator& gen);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // "Dropout(p=0.5, inplace=False)"
  Shape output_shape(const Shape& input) const override { return input; }
  double p;
 private:
  Generator* gen_;
  std::vector<uint8_t> mask_;
  bool identity_ = false;  // the last forward passed its input through (eval or p == 0)
  Tensor output_, grad_input_;
};

// Channel-wise inverted dropout on (N, C, H, W): in training each (n, c)
// plane is zeroed with probability p, the others scaled by 1/(1-p); identity in eval.
class Dropout2d : public Module {
 public:
  Dropout2d(double p, Generator& gen);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // "Dropout2d(p=0.5, inplace=False)"
  Shape output_shape(const Shape& input) const override;
  double p;
 private:
  Generator* gen_;
  std::vector<uint8_t> mask_;  // one per (n, c) plane
  bool identity_ = false;
  Tensor output_, grad_input_;
};

// Flattens dims 1.. into one: (N, C, H, W) -> (N, C*H*W); a 2-D input passes through.
class Flatten : public Module {
 public:
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  // Ends an nChw16c chain: takes it, flattens in NCHW order (see MemoryFormat);
  // keeps bf16.
  const Tensor& forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) override;
  Blocked16Use blocked16_use(const Shape& input) const override;
  ChainUse bf16_use(const Shape& input) const override;
  std::string repr() const override { return "Flatten(start_dim=1, end_dim=-1)"; }
  Shape output_shape(const Shape& input) const override;
 private:
  Shape input_shape_;
  MemoryFormat format_ = MemoryFormat::plain;  // the last forward's input format
  bool passed_through_ = false;  // the last input was 2-D (already flat)
  Tensor output_, grad_input_;
};

// Runs its children in order; state-dict names are "<index>.<name>" as in
// PyTorch's nn.Sequential. Everything it asks a child is a virtual of Module.
class Sequential : public Module {
 public:
  void add(ModulePtr module);
  // Runs the children with a plan of formats (see MemoryFormat): recomputed
  // when the input shape changes; plain in and out.
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;  // PyTorch's multi-line repr
  // The shape walk: throws Error naming the first child whose input does not
  // fit, with its index (as in the state-dict keys), repr and input shape
  // ("layer 1, BatchNorm1d(11): input has 10 channels ...").
  Shape output_shape(const Shape& input) const override;
  std::vector<std::pair<std::string, Parameter*>> parameters() override;
  std::vector<Buffer> buffers() override;
  bool has_parameters() override;
  void reset_parameters(Generator& gen) override;
  double state_bytes() const override;
  void train(bool on = true) override;
  // Marks each child that can apply the activation of the child after it as
  // fusing it (BatchNorm followed by ReLU, see BatchNorm), in nested containers too.
  void fuse_batch_norm_relu(bool on = true) override;
  void freeze_batch_norm(bool freeze_affine) override;
  // compute_grad_input = false: backward stops at the first child with
  // parameters and skips that child's input gradient (nobody reads the
  // gradient w.r.t. the data); backward then returns an empty tensor.
  // Trainers set it; gradient checks leave it true.
  void zero_grad();
  // Called with each child right after its backward (a data-parallel run starts
  // summing a bucket of gradients as soon as the children holding it are done).
  std::function<void(Module& child)> after_child_backward;

  size_t size() const { return children_.size(); }
  Module& operator[](size_t i) { return *children_[i]; }
  // The plan of the last forward: each child's output format (see MemoryFormat).
  const std::vector<MemoryFormat>& output_formats() const { return out_formats_; }
  // The children, to change: the next forward plans the formats anew.
  std::vector<ModulePtr>& children() {
    plan_shape_.clear();
    return children_;
  }
 private:
  std::vector<ModulePtr> children_;
  // The plan: each child's input and output format, for plan_shape_.
  Shape plan_shape_;
  ComputePrecision plan_precision_ = ComputePrecision::fp32;  // bf16: the plan has bf16 chains
  std::vector<MemoryFormat> in_formats_, out_formats_;
  void plan_formats(const Shape& input);
  // shapes[0] = input, shapes[i + 1] = child i's output shape.
  std::vector<Shape> walk_shapes(const Shape& input) const;
  Tensor no_grad_input_;  // the empty tensor returned when !compute_grad_input
};

}  // namespace bnlab::nn
