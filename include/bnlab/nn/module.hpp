// The module interface every layer implements (PyTorch's nn.Module, trimmed to
// what training needs). forward/backward return references to tensors the
// module owns and reuses, so a training step allocates nothing once shapes are
// known. backward must follow the forward whose input it differentiates.
// Containers and passes (Sequential, fold_batch_norm) ask a module only
// through these virtuals, so a new layer needs no change in them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bnlab/batch_norm.hpp"
#include "bnlab/random.hpp"
#include "bnlab/tensor.hpp"

namespace bnlab::nn {

// A learnable tensor and its gradient (same shape).
struct Parameter {
  Tensor value;
  Tensor grad;
  // false: the trainer's optimizer leaves it alone (PyTorch's requires_grad_(False)).
  bool requires_grad = true;
};

// A named non-learnable state tensor (running_mean, ...) or the int64
// num_batches_tracked counter, as PyTorch's state dict has them.
struct Buffer {
  std::string name;
  Tensor* tensor = nullptr;     // float buffer, or
  int64_t* counter = nullptr;   // an int64 scalar (num_batches_tracked)
};

// A height and width (a pooling window, stride, padding or output size);
// `pair` records whether it was written as a pair, for the repr: "2" or
// "(2, 3)" (a 0 in a pair prints as None: AdaptiveAvgPool2d's "keep the input's size").
struct Size2 {
  int64_t h = 0, w = 0;
  bool pair = false;
  std::string repr() const;
};

// How an activation handed between two children of a Sequential lies in
// memory: its layout, plain (row-major NCHW) or oneDNN's nChw16c, (N, C/16, H,
// W, 16) with C a multiple of 16: channel blocks of 16, the layout oneDNN's
// AVX-512 convolutions run on; and its element type, float or bf16 (bit
// patterns in the Tensor's storage, see bf16_data). Sequential::forward lets
// a Conv2d's output stay nChw16c through the modules after it that keep it
// (BatchNorm2d, the elementwise activations, MaxPool2d) up to the next module
// that ends the chain (Conv2d, Flatten), which saves a reorder on each side
// of every convolution. Under ComputePrecision::bf16 it lets a product's
// (Linear, Conv2d) output stay bf16 the same way, through BatchNorm, ReLU,
// MaxPool2d and Flatten up to the next product, which halves the bytes those
// modules move (bnlab/nn/precision.hpp). Tensors a caller passes or receives
// are always plain float.
enum class MemoryFormat { plain, blocked16, plain_bf16, blocked16_bf16 };

inline bool is_blocked16(MemoryFormat format) {
  return format == MemoryFormat::blocked16 || format == MemoryFormat::blocked16_bf16;
}
inline bool is_bf16(MemoryFormat format) {
  return format == MemoryFormat::plain_bf16 || format == MemoryFormat::blocked16_bf16;
}
// The same layout with bf16 elements.
inline MemoryFormat with_bf16(MemoryFormat format) {
  return is_blocked16(format) ? MemoryFormat::blocked16_bf16 : MemoryFormat::plain_bf16;
}
// Bytes per value: 4, or 2 for bf16.
inline size_t element_bytes(MemoryFormat format) { return is_bf16(format) ? 2 : 4; }
// "plain", "nChw16c", "bf16", "bf16 nChw16c" (error messages).
std::string format_name(MemoryFormat format);

// A bf16 activation lies in a Tensor's float storage: numel bf16 values from
// its start (the second half of the storage is unused). The tensor's shape
// is the activation's.
inline uint16_t* bf16_data(Tensor& t) { return reinterpret_cast<uint16_t*>(t.data()); }
inline const uint16_t* bf16_data(const Tensor& t) {
  return reinterpret_cast<const uint16_t*>(t.data());
}

// Whether a tensor of this shape can be held nChw16c: 4-D, C a positive multiple of 16.
inline bool fits_blocked16(const Shape& shape) {
  return shape.size() == 4 && shape[1] > 0 && shape[1] % 16 == 0;
}

// What a module can do, for an input of a given (NCHW) shape, with an input
// in a chain's format (nChw16c, or bf16).
enum class ChainUse {
  no,     // not that format
  keeps,  // takes it, and its output and input gradient are in it too
  ends,   // takes it, and writes its output in the format asked (Conv2d, Linear) or plain (Flatten)
};
using Blocked16Use = ChainUse;

// The per-channel affine map y[c] = scale[c] * x[c] + shift[c] that an
// eval-mode BatchNorm computes, which folding moves into the layer before it.
struct ChannelAffine {
  std::vector<double> scale, shift;
};

// Passed to a layer's constructor to record its settings and leave its
// parameters and buffers unallocated until reset_parameters: the arch reader
// checks shapes and memory before it allocates anything.
struct Deferred {};
inline constexpr Deferred deferred{};

class Module;
using ModulePtr = std::unique_ptr<Module>;

class Module {
 public:
  virtual ~Module() = default;

  virtual const Tensor& forward(const Tensor& input) = 0;
  // forward with the input in format `in` and the output wanted in `out`, as
  // Sequential's plan says (see MemoryFormat); the backward that follows takes
  // its gradient in `out` and returns one in `in`. The default serves modules
  // that handle plain tensors only.
  virtual const Tensor& forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out);
  // The plan's questions, for an input of this shape. Defaults: plain only.
  virtual Blocked16Use blocked16_use(const Shape&) const { return Blocked16Use::no; }
  virtual bool can_output_blocked16(const Shape&) const { return false; }
  // The same for bf16 (asked under ComputePrecision::bf16 only): a chain
  // starts at a module that can write bf16 and ends at one that reads it.
  virtual ChainUse bf16_use(const Shape&) const { return ChainUse::no; }
  virtual bool can_output_bf16(const Shape&) const { return false; }
  // Gradient w.r.t. the last forward's input; adds into parameter grads.
  virtual const Tensor& backward(const Tensor& grad_output) = 0;

  // PyTorch's repr, e.g. "Linear(in_features=784, out_features=512, bias=False)".
  virtual std::string repr() const = 0;
  // Shape out for a shape in; throws bnlab::Error naming the module on a mismatch.
  virtual Shape output_shape(const Shape& input) const = 0;

  // State-dict entries, PyTorch's names relative to this module ("weight", "bias", ...).
  virtual std::vector<std::pair<std::string, Parameter*>> parameters() { return {}; }
  virtual std::vector<Buffer> buffers() { return {}; }
  // Whether parameters() is non-empty, asked in each training step without building the list.
  virtual bool has_parameters() { return !parameters().empty(); }
  // Allocates and initialises the parameters and buffers as at construction
  // (a layer built with `deferred` has none before this).
  virtual void reset_parameters(Generator& gen) {}
  // The bytes the parameters, their gradients and the buffers take once allocated.
  virtual double state_bytes() const { return 0.0; }

  // false: backward fills the parameter grads only and returns an empty tensor
  // (the first learnable layer of a network, whose input is data: Sequential
  // sets it, which saves the largest product of a training step). Modules
  // that have no cheaper path ignore it.
  bool compute_grad_input = true;

  // Activation fusion (BatchNorm + ReLU in one pass, see BatchNorm): the
  // activation this module is, when the module before it may apply it instead;
  virtual Activation fusable_activation() const { return Activation::none; }
  // asks this module to apply `activation` to its own output (none: stop);
  // returns whether it does;
  virtual bool apply_activation(Activation activation) { return false; }
  // the module before applies this one's activation: forward and backward pass through;
  virtual void set_applied_by_previous(bool on) {}
  // containers: fuse each child that can apply the activation after it.
  virtual void fuse_batch_norm_relu(bool on = true) {}

  // Fine-tuning (bnlab train --freeze-bn): every BatchNorm normalizes with its
  // running statistics in training too and never updates them; with
  // freeze_affine its weight and bias stop training as well. Containers recurse.
  virtual void freeze_batch_norm(bool freeze_affine) {}

  // Folding (fold.hpp): whether this module is a per-channel affine map in
  // eval mode that folds into the layer before it (BatchNorm);
  virtual bool folds_into_previous() const { return false; }
  // that map; throws Error naming the module when it has none;
  virtual ChannelAffine eval_channel_affine() const;
  // whether this layer can absorb such a map into its weights (Linear, Conv2d),
  virtual bool can_absorb_channel_affine() const { return false; }
  // and a copy of this layer with `affine` applied to its output channels.
  virtual ModulePtr absorb_channel_affine(const ChannelAffine& affine, Generator& gen) const;

  virtual void train(bool on = true) { training_ = on; }
  void eval() { train(false); }
  bool is_training() const { return training_; }

 protected:
  // For forward_formatted: throws Error naming this module when `in` is
  // nChw16c and the input cannot be (fits_blocked16) or bf16 and the module
  // has no bf16 path (bf16_use), and check_kept_format also when out differs
  // from in (a module that keeps its input's format).
  void check_blocked16_input(const Shape& input, MemoryFormat in) const;
  void check_kept_format(const Shape& input, MemoryFormat in, MemoryFormat out) const;
  // For backward: throws Error naming this module when grad_output's shape is not the output's.
  void check_grad_output(const Tensor& grad_output, const Tensor& output) const;

  bool training_ = true;
};

}  // namespace bnlab::nn
