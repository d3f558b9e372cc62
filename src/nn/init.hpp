// PyTorch's default initialisation for Linear and Conv2d: kaiming_uniform with
// a = sqrt(5) gives bound = gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + 5)),
// that is bound = 1 / sqrt(fan_in); the bias uses the same bound.
#pragma once

#include <cmath>
#include <cstdint>

#include "bnlab/random.hpp"
#include "bnlab/tensor.hpp"

namespace bnlab::nn {

inline void fill_uniform_fan_in(Tensor& tensor, int64_t fan_in, Generator& gen) {
  const float bound = fan_in > 0 ? static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in))) : 0.0f;
  for (int64_t i = 0; i < tensor.numel(); ++i) tensor[i] = gen.uniform(-bound, bound);
}

// The shape of a skipped input gradient (compute_grad_input = false), built once.
inline const Shape kNoGradInputShape{0};

// Elementwise loops split into chunks of this many floats across threads.
constexpr int64_t kElementwiseChunk = 1 << 14;

}  // namespace bnlab::nn
