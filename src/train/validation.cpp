// The held-out validation split (include/bnlab/train/validation.hpp).
#include "bnlab/train/validation.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/random.hpp"

namespace bnlab::train {
namespace {

// The examples `indices` (ascending) of d, in that order.
data::Dataset take(const data::Dataset& d, const std::vector<int64_t>& indices) {
  data::Dataset out;
  out.count = static_cast<int64_t>(indices.size());
  out.channels = d.channels, out.rows = d.rows, out.cols = d.cols;
  out.num_classes = d.num_classes;
  const int64_t size = d.example_size();
  for (int64_t i : indices) {
    if (!d.pixels.empty())
      out.pixels.insert(out.pixels.end(), d.pixels.begin() + i * size,
                        d.pixels.begin() + (i + 1) * size);
    else
      out.images.insert(out.images.end(), d.images.begin() + i * size,
                        d.images.begin() + (i + 1) * size);
    out.labels.push_back(d.labels[static_cast<size_t>(i)]);
  }
  return out;
}

}  // namespace

HeldOut hold_out(const data::Dataset& data, double fraction, uint64_t seed) {
  if (!(fraction > 0.0 && fraction < 1.0))
    throw Error("validation split: the fraction must be in (0, 1), got " +
                std::to_string(fraction));
  const int64_t held = std::llround(fraction * double(data.count));
  if (held < 1 || held >= data.count)
    throw Error("validation split: " + std::to_string(fraction) + " of " +
                std::to_string(data.count) + " training examples holds out " +
                std::to_string(held) + "; each part needs at least one example");
  // A seed of its own: the epochs shuffle with seed + epoch.
  uint64_t mixed = seed ^ 0x76616c6964617465ULL;  // "validate"
  std::vector<int64_t> order = data::shuffled_indices(data.count, splitmix64(mixed));
  std::vector<int64_t> validation(order.begin(), order.begin() + held);
  std::vector<int64_t> train(order.begin() + held, order.end());
  std::sort(validation.begin(), validation.end());
  std::sort(train.begin(), train.end());
  return {take(data, train), take(data, validation)};
}

}  // namespace bnlab::train
