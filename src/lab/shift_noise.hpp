// Santurkar et al. (2018), "noisy BN": noise with a random non-zero mean and
// non-unit variance after a BatchNorm, redrawn every step, so that the
// distribution the next layer sees keeps moving however well BN normalises.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bnlab/nn/layers.hpp"
#include "bnlab/random.hpp"

namespace bnlab::lab {

/* Training forward, x (N, C): every call (one training step) draws per unit
   c a mean m_c ~ U(-kMaxShift, kMaxShift) and a scale s_c ~ U(1, kMaxScale);
   then each activation y[n, c] = s_c * x[n, c] + m_c + kJitter * z[n, c],
   z ~ N(0, 1) i.i.d. After BN (x about N(0, 1) per unit) y has mean m_c and
   variance s_c^2 + kJitter^2, both moving from step to step.
   Backward: dx[n, c] = s_c * dy[n, c] with the last forward's s.
   Eval: the noise's mean map, y = E[s] x (as dropout rescales). */
class NonStationaryNoise : public nn::Module {
 public:
  static constexpr float kMaxShift = 2.0f, kMaxScale = 3.0f, kJitter = 0.25f;
  NonStationaryNoise(int64_t features, uint64_t seed);
  const Tensor& forward(const Tensor& input) override;
  const Tensor& backward(const Tensor& grad_output) override;
  std::string repr() const override;
  Shape output_shape(const Shape& input) const override { return input; }

  // The draw the next training forward takes (each takes the next): the
  // noise of draw k comes from (seed, k) alone, so a test can repeat one.
  int64_t draw = 0;

 private:
  int64_t features_;
  uint64_t seed_;
  std::vector<float> scale_, shift_;  // this step's draw
  Tensor output_, grad_input_;
};

// Inserts a NonStationaryNoise after every BatchNorm of the network.
void add_noise_after_batch_norms(nn::Sequential& net, uint64_t seed);

}  // namespace bnlab::lab
