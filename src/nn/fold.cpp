#include "bnlab/nn/fold.hpp"

#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/random.hpp"

namespace bnlab::nn {

namespace {

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

void fold_channel_affine(const Parameter& weight, const std::optional<Parameter>& bias,
                         const ChannelAffine& affine, Parameter& new_weight, Parameter& new_bias) {
  const int64_t out = static_cast<int64_t>(affine.scale.size());
  const int64_t per_row = weight.value.numel() / out;
  for (int64_t o = 0; o < out; ++o) {
    const double s = affine.scale[static_cast<size_t>(o)];
    for (int64_t k = 0; k < per_row; ++k)
      new_weight.value[o * per_row + k] = static_cast<float>(weight.value[o * per_row + k] * s);
    const double b = bias ? bias->value[o] : 0.0;
    new_bias.value[o] = static_cast<float>(b * s + affine.shift[static_cast<size_t>(o)]);
  }
}

// A layer that can absorb the per-channel map of the module after it (Linear
// or Conv2d before a BatchNorm) becomes the same layer with a bias and the
// folded weights; every other layer is copied as it is.
FoldResult fold_batch_norm(Sequential& net) {
  FoldResult result;
  result.net = std::make_unique<Sequential>();
  Generator unused(0);  // initial weights are all overwritten
  for (size_t i = 0; i < net.size(); ++i) {
    Module& m = net[i];
    Module* next = i + 1 < net.size() ? &net[i + 1] : nullptr;
    if (next == nullptr || !next->folds_into_previous() || !m.can_absorb_channel_affine()) {
      if (m.folds_into_previous()) ++result.kept;
      result.net->add(copy_layer(m, unused));
      continue;
    }
    ChannelAffine affine;
    try {
      affine = next->eval_channel_affine();
    } catch (const Error& e) {
      throw Error(e.code(), "cannot fold layer " + std::to_string(i + 1) + ", " + e.what());
    }
    result.net->add(m.absorb_channel_affine(affine, unused));
    ++result.folded;
    ++i;  // the BatchNorm is consumed
  }
  result.net->eval();
  result.arch = arch_text(*result.net);
  return result;
}

}  // namespace bnlab::nn
