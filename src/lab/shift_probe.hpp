// Internal covariate shift as the paper's Figure 1 measures it: the
// percentiles of the inputs of the last hidden layer's sigmoids on a fixed
// batch, read during training, and how far they drift. Shared by the
// covariate_shift and noisy_bn experiments.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "bnlab/nn/layers.hpp"

namespace bnlab::lab {

// The percentiles of the last hidden layer's sigmoid inputs on a fixed batch,
// per unit, at each checkpoint: [checkpoint][unit] = {q15, q50, q85}.
struct ShiftRecord {
  std::vector<int64_t> steps;
  std::vector<std::vector<std::array<double, 3>>> quantiles;
};

// Every BatchNorm's running statistics, taken at construction and put back by
// restore(): a probe's training-mode forward must not change training.
class SavedBatchNormState {
 public:
  explicit SavedBatchNormState(nn::Sequential& net);
  void restore() const;

 private:
  struct Saved {
    nn::BatchNorm* bn;
    std::vector<float> mean, var;
    int64_t tracked;
  };
  std::vector<Saved> saved_;
};

/* The probe: forward the fixed batch through the children before the last
   Sigmoid in training mode (BN with the batch's own statistics, as during
   training), read that Sigmoid's input, (M, units); per unit the 15/50/85th
   percentiles over the M examples. BN running statistics are restored
   afterwards, so probing never changes training. */
void probe_shift(nn::Sequential& net, const Tensor& batch, ShiftRecord& record, int64_t step);

/* Drift of one unit: mean over checkpoints t before the last T and over the
   three percentiles q of |q_t - q_T|, in the units of the sigmoid's input
   (where the sigmoid bends over about [-4, 4]): how far the unit's input
   distribution was from where it ends. Networks that feed the same sigmoid
   compare directly. NaN with fewer than two checkpoints. */
double unit_drift(const ShiftRecord& record, size_t unit);

// The median of unit_drift over every unit; NaN without checkpoints.
double median_drift(const ShiftRecord& record);

}  // namespace bnlab::lab
