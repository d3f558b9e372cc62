// Batch-norm folding for inference. An eval-mode BatchNorm right after a
// Linear or Conv2d is an affine map per output channel, so it folds into that
// layer's weight and bias:
//   scale = gamma / sqrt(running_var + eps)
//   W'[o, ...] = W[o, ...] * scale[o]
//   b'[o]      = (b[o] - running_mean[o]) * scale[o] + beta[o]   (b = 0 without bias)
// The folded network gives the same outputs (to float rounding) with no
// BatchNorm left where one followed a Linear or Conv2d.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "bnlab/nn/layers.hpp"

namespace bnlab::nn {

struct FoldResult {
  std::unique_ptr<Sequential> net;  // in eval mode
  std::string arch;                 // its architecture text (parse_arch reads it back)
  int folded = 0;                   // BatchNorm layers removed
  int kept = 0;                     // BatchNorm layers that had no Linear/Conv2d before them
};

// Asks each module whether it folds into the one before it and that one
// whether it can absorb it (Module's virtuals). Throws Error naming the layer
// when a BatchNorm has no running statistics
// (track_running_stats=False normalizes with batch statistics even in eval).
FoldResult fold_batch_norm(Sequential& net);

// Scales weight row o (out, ...) by affine.scale[o] into new_weight and sets
// new_bias[o] = bias[o] * scale[o] + shift[o] (bias 0 when absent): the
// Linear and Conv2d overrides of Module::absorb_channel_affine.
void fold_channel_affine(const Parameter& weight, const std::optional<Parameter>& bias,
                         const ChannelAffine& affine, Parameter& new_weight, Parameter& new_bias);

// Architecture text for a network: its layers' PyTorch reprs, which parse_arch reads back.
std::string arch_text(Sequential& net);

}  // namespace bnlab::nn
