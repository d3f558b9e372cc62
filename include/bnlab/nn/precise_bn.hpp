// Precise BN (issue 14; Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"):
// replaces the running statistics of every batch-statistics normalization
// layer by the population statistics of K training batches, in place of the
// moving average that lags the weights.
#pragma once

#include <cstdint>
#include <functional>

#include "bnlab/nn/module.hpp"

namespace bnlab::nn {

// Fills `input` with the next batch (any batch size, the network's input
// shape) and returns true, or returns false when there is no batch left.
using BatchSource = std::function<bool(Tensor& input)>;

struct RecalibrationResult {
  int64_t batches = 0;   // batches the source gave
  int64_t examples = 0;  // examples over those batches
  int64_t layers = 0;    // layers whose running statistics were replaced
};

/* For each layer L among BatchNorm1d/2d/3d (SyncBatchNorm included: a
   BatchNorm with `sync`), GhostBatchNorm1d/2d and BatchRenorm1d/2d that
   tracks running statistics and is not frozen (freeze_batch_norm):
     running_mean = m = sum(x) / N,   running_var = sum((x - m)^2) / (N - 1)
   over all N values per channel that L's input holds over the K batches
   (N = sum over batches of n * spatial size: a batch counts by its size),
   accumulated in double by Chan's merge of each batch's mean and m2. The
   variance is unbiased, as PyTorch's running_var stores it.
   The batches run with the whole network in training mode, as fvcore's
   update_bn_stats does: each layer sees the activations the layers before it
   make with their batch statistics (Dropout active), which is the input it
   normalizes during training. Every batch sees the same network: the running
   statistics a training forward moves (and BatchRenorm's r and d read) are
   put back after each batch; num_batches_tracked is left as it was. The
   network's training flag is restored. Nested Sequentials are walked; other
   layers run as they are. Throws bnlab::Error when the source gives no batch,
   or a layer gets fewer than 2 values per channel; the network is then as it
   was. */
RecalibrationResult recalibrate_batch_norm(Module& net, const BatchSource& next_batch);

}  // namespace bnlab::nn
