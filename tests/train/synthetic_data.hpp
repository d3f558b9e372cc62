// The small data set the trainer tests learn: examples of shape (1, 2, 4).
#pragma once

#include <cstdint>

#include "bnlab/data/dataset.hpp"
#include "bnlab/random.hpp"

namespace bnlab {

constexpr int64_t kRows = 2, kCols = 4, kFeatures = kRows * kCols, kClasses = 3;

// count examples of shape (1, 2, 4) in [0, 1]; the label is the argmax of a
// fixed linear map of the image, so a linear model can learn it.
inline data::Dataset synthetic_dataset(int64_t count, uint64_t seed) {
  data::Dataset d;
  d.count = count;
  d.channels = 1, d.rows = kRows, d.cols = kCols;
  d.num_classes = kClasses;
  Generator gen(seed);
  for (int64_t i = 0; i < count; ++i) {
    double score[kClasses] = {0, 0, 0};
    for (int64_t f = 0; f < kFeatures; ++f) {
      const float v = static_cast<float>(gen.uniform());
      d.images.push_back(v);
      score[f % kClasses] += v * (1.0 + 0.1 * double(f));
    }
    int32_t label = 0;
    for (int32_t k = 1; k < kClasses; ++k)
      if (score[k] > score[label]) label = k;
    d.labels.push_back(label);
  }
  return d;
}

}  // namespace bnlab
