// A validation split held out of the training examples (bnlab train
// --val-split), as PyTorch users make with torch.utils.data.random_split.
#pragma once

#include <cstdint>

#include "bnlab/data/dataset.hpp"

namespace bnlab::train {

struct HeldOut {
  data::Dataset train;       // the examples left to train on, in the data's order
  data::Dataset validation;  // round(fraction * count) examples, in the data's order
};

// Which examples are held out is fixed by a seeded permutation
// (data::shuffled_indices of a seed derived from `seed`, unlike any epoch's
// order), so every process of a data-parallel run holds out the same ones.
// Throws Error when fraction is not in (0, 1) or leaves either part empty.
HeldOut hold_out(const data::Dataset& data, double fraction, uint64_t seed);

}  // namespace bnlab::train
