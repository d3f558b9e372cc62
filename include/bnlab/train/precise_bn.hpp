// Precise BN over a data set: nn::recalibrate_batch_norm fed with K batches
// of training examples (bnlab recalibrate, bnlab train --precise-bn K).
#pragma once

#include <cstdint>

#include "bnlab/data/dataset.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/precise_bn.hpp"

namespace bnlab::train {

// Batches of `batch` examples taken in turn from data::shuffled_indices(count,
// seed): `batches` of them, or as many as the data set holds (the last one
// may be short). Throws bnlab::Error naming batches or batch when not > 0.
nn::RecalibrationResult recalibrate_batch_norm(nn::Sequential& net, const data::Dataset& data,
                                               int64_t batches, int64_t batch, uint64_t seed);

}  // namespace bnlab::train
