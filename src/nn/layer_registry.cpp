// The layer registry: PyTorch's signatures, and arguments bnlab does not
// implement (dilation, groups, ceil_mode, ...) accepted at their default only.
// Note the signatures' order: Conv2d's sixth positional argument is dilation,
// not bias, as in PyTorch.
#include "nn/layer_registry.hpp"

#include <memory>
#include <optional>

#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/norm_layers.hpp"

namespace bnlab::nn {
namespace {

using call_syntax::BoundArgs;
using call_syntax::Value;
using call_syntax::ValueKind;

bool is_one(const Value& v) {
  if (v.kind == ValueKind::integer) return v.int_value == 1;
  if (v.kind == ValueKind::tuple) {
    for (const Value& item : v.items)
      if (item.kind != ValueKind::integer || item.int_value != 1) return false;
    return !v.items.empty();
  }
  return false;
}
bool is_false(const Value& v) { return v.kind == ValueKind::boolean && !v.bool_value; }
bool is_zeros(const Value& v) { return v.kind == ValueKind::string && v.string_value == "zeros"; }
bool is_none(const Value& v) { return v.kind == ValueKind::none; }
bool is_start_dim_one(const Value& v) { return v.kind == ValueKind::integer && v.int_value == 1; }
bool is_end_dim_last(const Value& v) { return v.kind == ValueKind::integer && v.int_value == -1; }

// device and dtype are accepted as None, as PyTorch's factory arguments.
void check_factory_args(const BoundArgs& args) {
  args.require_default("device", "None", is_none);
  args.require_default("dtype", "None", is_none);
}

ModulePtr build_linear(const BoundArgs& args, Generator&) {
  check_factory_args(args);
  return std::make_unique<Linear>(args.size("in_features", 0, 1), args.size("out_features", 0, 1),
                                  args.flag("bias", true), deferred);
}

ModulePtr build_conv2d(const BoundArgs& args, Generator&) {
  check_factory_args(args);
  args.require_default("dilation", "1", is_one);
  args.require_default("groups", "1", is_one);
  args.require_default("padding_mode", "'zeros'", is_zeros);
  const int64_t kernel_size = args.size("kernel_size", 0, 1, true);
  const int64_t stride = args.size("stride", 1, 1, true);
  int64_t padding = 0;
  const Value* padding_value = args.find("padding");
  if (padding_value && padding_value->kind == ValueKind::string) {
    // PyTorch's padding='valid' (none) and padding='same' (output size = input size).
    if (padding_value->string_value == "valid") {
      padding = 0;
    } else if (padding_value->string_value == "same") {
      if (stride != 1) args.fail("padding", "padding='same' needs stride=1");
      if (kernel_size % 2 == 0)
        args.fail("padding", "padding='same' with an even kernel_size is not supported");
      padding = (kernel_size - 1) / 2;
    } else {
      args.fail("padding",
                "padding must be an integer, 'same' or 'valid', got " + padding_value->text);
    }
  } else {
    padding = args.size("padding", 0, 0, true);
  }
  return std::make_unique<Conv2d>(args.size("in_channels", 0, 1), args.size("out_channels", 0, 1),
                                  kernel_size, stride, padding, args.flag("bias", true), deferred);
}

double positive_eps(const BoundArgs& args) {
  const double eps = args.number("eps", 1e-5);
  if (!(eps > 0.0)) args.fail("eps", "eps must be positive, got " + args.find("eps")->text);
  return eps;
}

std::optional<double> batch_norm_momentum(const BoundArgs& args, double default_value) {
  const std::optional<double> momentum = args.optional_number("momentum", default_value);
  if (momentum && !(*momentum >= 0.0 && *momentum <= 1.0))
    args.fail("momentum", "momentum must be in [0, 1] or None, got " + args.find("momentum")->text);
  return momentum;
}

template <int dims>
ModulePtr build_batch_norm(const BoundArgs& args, Generator&) {
  check_factory_args(args);
  const double eps = positive_eps(args);
  const std::optional<double> momentum = batch_norm_momentum(args, 0.1);
  return std::make_unique<BatchNorm>(dims, args.size("num_features", 0, 1), eps, momentum,
                                     args.flag("affine", true),
                                     args.flag("track_running_stats", true), deferred);
}

ModulePtr build_group_norm(const BoundArgs& args, Generator&) {
  check_factory_args(args);
  const int64_t groups = args.size("num_groups", 0, 1);
  const int64_t channels = args.size("num_channels", 0, 1);
  if (channels % groups != 0)
    args.fail("num_channels", "num_channels (" + std::to_string(channels) +
                                  ") must be divisible by num_groups (" + std::to_string(groups) +
                                  ")");
  return std::make_unique<GroupNorm>(groups, channels, positive_eps(args),
                                     args.flag("affine", true), deferred);
}

// normalized_shape: an integer or a tuple of positive integers (the trailing dims).
ModulePtr build_layer_norm(const BoundArgs& args, Generator&) {
  check_factory_args(args);
  const Value* value = args.find("normalized_shape");
  Shape normalized_shape;
  auto positive = [&](const Value& v) {
    if (v.kind != ValueKind::integer || v.int_value < 1)
      args.fail("normalized_shape",
                "normalized_shape must be a positive integer or a tuple of "
                "them, got " +
                    value->text);
    return v.int_value;
  };
  if (value->kind == ValueKind::tuple) {
    for (const Value& item : value->items) normalized_shape.push_back(positive(item));
    if (normalized_shape.empty())
      args.fail("normalized_shape", "normalized_shape must name at least one dimension");
  } else {
    normalized_shape.push_back(positive(*value));
  }
  return std::make_unique<LayerNorm>(normalized_shape, positive_eps(args),
                                     args.flag("elementwise_affine", true), args.flag("bias", true),
                                     deferred);
}

template <int dims>
ModulePtr build_instance_norm(const BoundArgs& args, Generator&) {
  check_factory_args(args);
  const double momentum = args.number("momentum", 0.1);
  if (!(momentum >= 0.0 && momentum <= 1.0))
    args.fail("momentum", "momentum must be in [0, 1], got " + args.find("momentum")->text);
  return std::make_unique<InstanceNorm>(dims, args.size("num_features", 0, 1), positive_eps(args),
                                        momentum, args.flag("affine", false),
                                        args.flag("track_running_stats", false), deferred);
}

// torchvision's (torchvision.ops.misc.FrozenBatchNorm2d).
ModulePtr build_frozen_batch_norm(const BoundArgs& args, Generator&) {
  return std::make_unique<FrozenBatchNorm2d>(args.size("num_features", 0, 1), positive_eps(args),
                                             deferred);
}

// bnlab's own (no PyTorch class): BatchNorm's arguments after virtual_batch_size.
template <int dims>
ModulePtr build_ghost_batch_norm(const BoundArgs& args, Generator&) {
  return std::make_unique<GhostBatchNorm>(dims, args.size("num_features", 0, 1),
                                          args.size("virtual_batch_size", 0, 1), positive_eps(args),
                                          batch_norm_momentum(args, 0.1), args.flag("affine", true),
                                          args.flag("track_running_stats", true), deferred);
}

// bnlab's own: Ioffe's r_max and d_max after BatchNorm's eps and momentum.
template <int dims>
ModulePtr build_batch_renorm(const BoundArgs& args, Generator&) {
  const std::optional<double> momentum = batch_norm_momentum(args, 0.01);
  if (!momentum) args.fail("momentum", "BatchRenorm needs a momentum (None is not supported)");
  const double r_max = args.number("r_max", 3.0), d_max = args.number("d_max", 5.0);
  if (!(r_max >= 1.0))
    args.fail("r_max", "r_max must be at least 1, got " + args.find("r_max")->text);
  if (!(d_max >= 0.0))
    args.fail("d_max", "d_max must be at least 0, got " + args.find("d_max")->text);
  return std::make_unique<BatchRenorm>(dims, args.size("num_features", 0, 1), positive_eps(args),
                                       *momentum, r_max, d_max, args.flag("affine", true),
                                       deferred);
}

ModulePtr build_relu(const BoundArgs& args, Generator&) {
  args.flag("inplace", false);  // in-place or not, the values are the same
  return std::make_unique<ReLU>();
}

ModulePtr build_leaky_relu(const BoundArgs& args, Generator&) {
  args.flag("inplace", false);
  return std::make_unique<LeakyReLU>(args.number("negative_slope", 0.01));
}

ModulePtr build_sigmoid(const BoundArgs&, Generator&) { return std::make_unique<Sigmoid>(); }

ModulePtr build_tanh(const BoundArgs&, Generator&) { return std::make_unique<Tanh>(); }

ModulePtr build_max_pool2d(const BoundArgs& args, Generator&) {
  args.require_default("dilation", "1", is_one);
  args.require_default("return_indices", "False", is_false);
  args.require_default("ceil_mode", "False", is_false);
  const int64_t kernel_size = args.size("kernel_size", 0, 1, true);
  std::optional<int64_t> stride;
  const Value* stride_value = args.find("stride");
  if (stride_value && stride_value->kind != ValueKind::none)
    stride = args.size("stride", 0, 1, true);
  const int64_t padding = args.size("padding", 0, 0, true);
  // PyTorch's rule: each window must hold at least one input element.
  if (padding > kernel_size / 2)
    args.fail("padding", "padding should be at most half of kernel_size, got padding=" +
                             std::to_string(padding) +
                             " with kernel_size=" + std::to_string(kernel_size));
  return std::make_unique<MaxPool2d>(kernel_size, stride, padding);
}

ModulePtr build_dropout(const BoundArgs& args, Generator& gen) {
  args.flag("inplace", false);
  const double p = args.number("p", 0.5);
  if (!(p >= 0.0 && p < 1.0)) args.fail("p", "p must be in [0, 1), got " + args.find("p")->text);
  return std::make_unique<Dropout>(p, gen);
}

ModulePtr build_gelu(const BoundArgs& args, Generator&) {
  const Value* approximate = args.find("approximate");
  if (!approximate) return std::make_unique<GELU>();
  if (approximate->kind != ValueKind::string ||
      (approximate->string_value != "none" && approximate->string_value != "tanh"))
    args.fail("approximate", "approximate must be 'none' or 'tanh', got " + approximate->text);
  return std::make_unique<GELU>(approximate->string_value);
}

ModulePtr build_elu(const BoundArgs& args, Generator&) {
  args.flag("inplace", false);
  return std::make_unique<ELU>(args.number("alpha", 1.0));
}

template <class Activation>
ModulePtr build_inplace_activation(const BoundArgs& args, Generator&) {
  args.flag("inplace", false);
  return std::make_unique<Activation>();
}

ModulePtr build_prelu(const BoundArgs& args, Generator&) {
  check_factory_args(args);
  return std::make_unique<PReLU>(args.size("num_parameters", 1, 1), args.number("init", 0.25),
                                 deferred);
}

ModulePtr build_avg_pool2d(const BoundArgs& args, Generator&) {
  const Size2 kernel_size = args.size_pair("kernel_size", {}, 1);
  std::optional<Size2> stride;
  const Value* stride_value = args.find("stride");
  if (stride_value && stride_value->kind != ValueKind::none)
    stride = args.size_pair("stride", {}, 1);
  const Size2 padding = args.size_pair("padding", {0, 0, false}, 0);
  // PyTorch's rule: each window must hold at least one input element.
  if (2 * padding.h > kernel_size.h || 2 * padding.w > kernel_size.w)
    args.fail("padding", "padding should be at most half of kernel_size, got padding=" +
                             padding.repr() + " with kernel_size=" + kernel_size.repr());
  const std::optional<int64_t> divisor = args.optional_integer("divisor_override", std::nullopt);
  if (divisor && *divisor == 0) args.fail("divisor_override", "divisor_override must not be zero");
  return std::make_unique<AvgPool2d>(kernel_size, stride, padding, args.flag("ceil_mode", false),
                                     args.flag("count_include_pad", true), divisor);
}

ModulePtr build_adaptive_avg_pool2d(const BoundArgs& args, Generator&) {
  const Value* value = args.find("output_size");
  if (value->kind == ValueKind::none)
    args.fail("output_size", "output_size must be an integer or a pair, got None");
  return std::make_unique<AdaptiveAvgPool2d>(args.size_pair("output_size", {}, 1, true));
}

ModulePtr build_dropout2d(const BoundArgs& args, Generator& gen) {
  args.flag("inplace", false);
  const double p = args.number("p", 0.5);
  if (!(p >= 0.0 && p < 1.0)) args.fail("p", "p must be in [0, 1), got " + args.find("p")->text);
  return std::make_unique<Dropout2d>(p, gen);
}

ModulePtr build_identity(const BoundArgs&, Generator&) { return std::make_unique<Identity>(); }

template <bool log>
ModulePtr build_softmax(const BoundArgs& args, Generator&) {
  return std::make_unique<Softmax>(args.optional_integer("dim", std::nullopt), log);
}

ModulePtr build_flatten(const BoundArgs& args, Generator&) {
  args.require_default("start_dim", "1", is_start_dim_one);
  args.require_default("end_dim", "-1", is_end_dim_last);
  return std::make_unique<Flatten>();
}

}  // namespace

const std::vector<LayerEntry>& layer_registry() {
  // BatchNorm's and InstanceNorm's signature.
  static const std::vector<const char*> kNormSignature = {
      "num_features", "eps", "momentum", "affine", "track_running_stats", "device", "dtype"};
  static const std::vector<LayerEntry> kLayers = {
      {"Linear", {{"in_features", "out_features", "bias", "device", "dtype"}, 2}, build_linear},
      {"Conv2d",
       {{"in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
         "bias", "padding_mode", "device", "dtype"},
        3},
       build_conv2d},
      {"BatchNorm1d", {kNormSignature, 1}, build_batch_norm<1>},
      {"BatchNorm2d", {kNormSignature, 1}, build_batch_norm<2>},
      {"BatchNorm3d", {kNormSignature, 1}, build_batch_norm<3>},
      {"GroupNorm",
       {{"num_groups", "num_channels", "eps", "affine", "device", "dtype"}, 2},
       build_group_norm},
      // bias: PyTorch 2.1's; 1.13 has no such argument.
      {"LayerNorm",
       {{"normalized_shape", "eps", "elementwise_affine", "bias", "device", "dtype"}, 1},
       build_layer_norm},
      {"InstanceNorm1d", {kNormSignature, 1}, build_instance_norm<1>},
      {"InstanceNorm2d", {kNormSignature, 1}, build_instance_norm<2>},
      {"FrozenBatchNorm2d", {{"num_features", "eps"}, 1}, build_frozen_batch_norm},
      {"GhostBatchNorm1d",
       {{"num_features", "virtual_batch_size", "eps", "momentum", "affine", "track_running_stats"},
        2},
       build_ghost_batch_norm<1>},
      {"GhostBatchNorm2d",
       {{"num_features", "virtual_batch_size", "eps", "momentum", "affine", "track_running_stats"},
        2},
       build_ghost_batch_norm<2>},
      {"BatchRenorm1d",
       {{"num_features", "eps", "momentum", "r_max", "d_max", "affine"}, 1},
       build_batch_renorm<1>},
      {"BatchRenorm2d",
       {{"num_features", "eps", "momentum", "r_max", "d_max", "affine"}, 1},
       build_batch_renorm<2>},
      {"ReLU", {{"inplace"}, 0}, build_relu},
      {"LeakyReLU", {{"negative_slope", "inplace"}, 0}, build_leaky_relu},
      {"Sigmoid", {{}, 0}, build_sigmoid},
      {"Tanh", {{}, 0}, build_tanh},
      {"MaxPool2d",
       {{"kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"}, 1},
       build_max_pool2d},
      {"GELU", {{"approximate"}, 0}, build_gelu},
      {"ELU", {{"alpha", "inplace"}, 0}, build_elu},
      {"SiLU", {{"inplace"}, 0}, build_inplace_activation<SiLU>},
      {"ReLU6", {{"inplace"}, 0}, build_inplace_activation<ReLU6>},
      {"Hardswish", {{"inplace"}, 0}, build_inplace_activation<Hardswish>},
      {"PReLU", {{"num_parameters", "init", "device", "dtype"}, 0}, build_prelu},
      {"AvgPool2d",
       {{"kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"},
        1},
       build_avg_pool2d},
      {"AdaptiveAvgPool2d", {{"output_size"}, 1}, build_adaptive_avg_pool2d},
      {"Dropout", {{"p", "inplace"}, 0}, build_dropout},
      {"Dropout2d", {{"p", "inplace"}, 0}, build_dropout2d},
      {"Identity", {{}, 0, true}, build_identity},
      {"Softmax", {{"dim"}, 0}, build_softmax<false>},
      {"LogSoftmax", {{"dim"}, 0}, build_softmax<true>},
      {"Flatten", {{"start_dim", "end_dim"}, 0}, build_flatten},
  };
  return kLayers;
}

const LayerEntry* find_layer(std::string_view name) {
  for (const LayerEntry& entry : layer_registry())
    if (name == entry.name) return &entry;
  return nullptr;
}

const std::vector<std::pair<std::string, std::string>>& presets() {
  // Must equal PRESETS in bench/train_vs_pytorch.py. mlp and mlp-bn are the
  // tutorial's network; with BN the hidden linears lose their bias (BN's shift
  // replaces it) and BN sits between the layer and its activation.
  static const std::vector<std::pair<std::string, std::string>> kPresets = {
      {"mlp", "Flatten(), Linear(784, 512), ReLU(), Linear(512, 256), ReLU(), Linear(256, 10)"},
      {"mlp-bn",
       "Flatten(), Linear(784, 512, bias=False), BatchNorm1d(512), ReLU(), "
       "Linear(512, 256, bias=False), BatchNorm1d(256), ReLU(), Linear(256, 10)"},
      {"cnn",
       "Conv2d(1, 32, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(32, 64, 3, padding=1), "
       "ReLU(), MaxPool2d(2), Flatten(), Linear(3136, 128), ReLU(), Linear(128, 10)"},
      {"cnn-bn",
       "Conv2d(1, 32, 3, padding=1, bias=False), BatchNorm2d(32), ReLU(), MaxPool2d(2), "
       "Conv2d(32, 64, 3, padding=1, bias=False), BatchNorm2d(64), ReLU(), MaxPool2d(2), "
       "Flatten(), Linear(3136, 128, bias=False), BatchNorm1d(128), ReLU(), Linear(128, 10)"},
  };
  return kPresets;
}

}  // namespace bnlab::nn
