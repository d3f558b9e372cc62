#include "bnlab/nn/fold.hpp"

#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/random.hpp"

namespace bnlab::nn {

namespace {

// The per-output-channel scale and shift of an eval-mode BatchNorm.
void bn_affine(const BatchNorm& bn, std::vector<double>& scale, std::vector<double>& shift) {
  const int64_t c = bn.num_features;
  scale.assign(static_cast<size_t>(c), 0.0);
  shift.assign(static_cast<size_t>(c), 0.0);
  for (int64_t j = 0; j < c; ++j) {
    const double gamma = bn.affine ? bn.weight.value[j] : 1.0;
    const double beta = bn.affine ? bn.bias.value[j] : 0.0;
    const double s = gamma / std::sqrt(static_cast<double>(bn.running_var[j]) + bn.eps);
    scale[static_cast<size_t>(j)] = s;
    shift[static_cast<size_t>(j)] = beta - bn.running_mean[j] * s;
  }
}

// Scales weight rows (out, per_row...) and sets bias' = bias*scale + shift.
void fold_into(const Parameter& weight, const std::optional<Parameter>& bias,
               const std::vector<double>& scale, const std::vector<double>& shift,
               Parameter& new_weight, Parameter& new_bias) {
  const int64_t out = static_cast<int64_t>(scale.size());
  const int64_t per_row = weight.value.numel() / out;
  for (int64_t o = 0; o < out; ++o) {
    const double s = scale[static_cast<size_t>(o)];
    for (int64_t k = 0; k < per_row; ++k)
      new_weight.value[o * per_row + k] =
          static_cast<float>(weight.value[o * per_row + k] * s);
    const double b = bias ? bias->value[o] : 0.0;
    new_bias.value[o] = static_cast<float>(b * s + shift[static_cast<size_t>(o)]);
  }
}

// Copies parameters, buffers and the counter of one layer into its twin.
void copy_state(Module& from, Module& to) {
  auto from_params = from.parameters();
  auto to_params = to.parameters();
  for (size_t k = 0; k < from_params.size() && k < to_params.size(); ++k)
    to_params[k].second->value = from_params[k].second->value;
  auto from_buffers = from.buffers();
  auto to_buffers = to.buffers();
  for (size_t k = 0; k < from_buffers.size() && k < to_buffers.size(); ++k) {
    if (from_buffers[k].tensor != nullptr) *to_buffers[k].tensor = *from_buffers[k].tensor;
    if (from_buffers[k].counter != nullptr) *to_buffers[k].counter = *from_buffers[k].counter;
  }
}

// A fresh layer of the same kind and settings, with m's state: the reprs are
// PyTorch's notation, which parse_arch reads back.
ModulePtr copy_layer(Module& m, Generator& gen) {
  auto parsed = parse_arch(m.repr(), gen);
  ModulePtr copy = std::move(parsed->children()[0]);
  copy_state(m, *copy);
  return copy;
}

}  // namespace

std::string arch_text(Sequential& net) {
  std::string text;
  for (size_t i = 0; i < net.size(); ++i) {
    if (i > 0) text += ", ";
    text += net[i].repr();
  }
  return text;
}

// A Linear or Conv2d followed by a BatchNorm becomes the same layer with a
// bias and the folded weights; every other layer is copied as it is.
FoldResult fold_batch_norm(Sequential& net) {
  FoldResult result;
  result.net = std::make_unique<Sequential>();
  Generator unused(0);  // initial weights are all overwritten
  std::vector<double> scale, shift;
  for (size_t i = 0; i < net.size(); ++i) {
    Module& m = net[i];
    auto* bn = (i + 1 < net.size()) ? dynamic_cast<BatchNorm*>(&net[i + 1]) : nullptr;
    auto* linear = dynamic_cast<Linear*>(&m);
    auto* conv = dynamic_cast<Conv2d*>(&m);
    if (bn == nullptr || (linear == nullptr && conv == nullptr)) {
      if (dynamic_cast<BatchNorm*>(&m) != nullptr) ++result.kept;
      result.net->add(copy_layer(m, unused));
      continue;
    }
    if (!bn->track_running_stats)
      throw Error("cannot fold layer " + std::to_string(i + 1) + ", " + bn->repr() +
                  ": it has no running statistics (track_running_stats=False), so eval mode "
                  "normalizes with each batch's statistics");
    bn_affine(*bn, scale, shift);
    if (linear != nullptr) {
      auto folded = std::make_unique<Linear>(linear->in_features, linear->out_features, true,
                                             unused);
      fold_into(linear->weight, linear->bias, scale, shift, folded->weight, *folded->bias);
      result.net->add(std::move(folded));
    } else {
      auto folded = std::make_unique<Conv2d>(conv->in_channels, conv->out_channels,
                                             conv->kernel_size, conv->stride, conv->padding,
                                             true, unused);
      fold_into(conv->weight, conv->bias, scale, shift, folded->weight, *folded->bias);
      result.net->add(std::move(folded));
    }
    ++result.folded;
    ++i;  // the BatchNorm is consumed
  }
  result.net->eval();
  result.arch = arch_text(*result.net);
  return result;
}

}  // namespace bnlab::nn
