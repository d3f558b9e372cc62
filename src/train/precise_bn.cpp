// Precise BN over a data set (see bnlab/train/precise_bn.hpp): the batch
// source of nn::recalibrate_batch_norm, drawn from one seeded order.
#include "bnlab/train/precise_bn.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "bnlab/error.hpp"

namespace bnlab::train {

nn::RecalibrationResult recalibrate_batch_norm(nn::Sequential& net, const data::Dataset& data,
                                               int64_t batches, int64_t batch, uint64_t seed) {
  if (batches <= 0)
    throw Error("recalibrate_batch_norm: batches must be > 0, got " + std::to_string(batches));
  if (batch <= 0)
    throw Error("recalibrate_batch_norm: batch must be > 0, got " + std::to_string(batch));
  const std::vector<int64_t> order = data::shuffled_indices(data.count, seed);
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  int64_t taken = 0, begin = 0;
  return nn::recalibrate_batch_norm(net, [&](Tensor& images) {
    if (taken == batches || begin >= data.count) return false;
    const int64_t size = std::min(batch, data.count - begin);
    images.resize({size, data.channels, data.rows, data.cols});
    data::gather_batch(data, order, begin, size, images.data(), labels.data());
    begin += size;
    ++taken;
    return true;
  });
}

}  // namespace bnlab::train
