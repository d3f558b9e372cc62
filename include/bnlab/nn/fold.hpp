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
#include <string>

#include "bnlab/nn/layers.hpp"

namespace bnlab::nn {

struct FoldResult {
  std::unique_ptr<Sequential> net;  // in eval mode
  std::string arch;                 // its architecture text (parse_arch reads it back)
  int folded = 0;                   // BatchNorm layers removed
  int kept = 0;                     // BatchNorm layers that had no Linear/Conv2d before them
};

// Throws Error naming the layer when a BatchNorm has no running statistics
// (track_running_stats=False normalizes with batch statistics even in eval).
FoldResult fold_batch_norm(Sequential& net);

// Architecture text for a network: its layers' PyTorch reprs, which parse_arch reads back.
std::string arch_text(Sequential& net);

}  // namespace bnlab::nn
