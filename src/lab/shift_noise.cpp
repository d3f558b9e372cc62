// Non-stationary noise after BN (see shift_noise.hpp).
#include "shift_noise.hpp"

#include <iterator>
#include <memory>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"

namespace bnlab::lab {

NonStationaryNoise::NonStationaryNoise(int64_t features, uint64_t seed)
    : features_(features), seed_(seed), scale_(size_t(features), 1.0f), shift_(size_t(features), 0.0f) {}

const Tensor& NonStationaryNoise::forward(const Tensor& input) {
  const int64_t c = features_;
  if (input.dim() != 2 || input.size(1) != c)
    throw Error("NonStationaryNoise(" + std::to_string(c) + "): expected input (N, " +
                std::to_string(c) + ")");
  const int64_t n = input.size(0);
  output_.resize(input.shape());
  if (!training_) {
    const float mean_scale = (1.0f + kMaxScale) / 2;
    for (int64_t i = 0; i < n * c; ++i) output_[i] = mean_scale * input[i];
    return output_;
  }
  Generator gen(seed_ * 1000003ull + static_cast<uint64_t>(draw++));
  for (int64_t j = 0; j < c; ++j) {
    scale_[size_t(j)] = gen.uniform(1.0f, kMaxScale);
    shift_[size_t(j)] = gen.uniform(-kMaxShift, kMaxShift);
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j)
      output_[i * c + j] = scale_[size_t(j)] * input[i * c + j] + shift_[size_t(j)] + kJitter * gen.normal();
  return output_;
}

const Tensor& NonStationaryNoise::backward(const Tensor& grad_output) {
  const int64_t c = features_, n = grad_output.size(0);
  const float mean_scale = (1.0f + kMaxScale) / 2;
  grad_input_.resize(grad_output.shape());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < c; ++j)
      grad_input_[i * c + j] = (training_ ? scale_[size_t(j)] : mean_scale) * grad_output[i * c + j];
  return grad_input_;
}

std::string NonStationaryNoise::repr() const {
  return "NonStationaryNoise(" + std::to_string(features_) + ")";
}

void add_noise_after_batch_norms(nn::Sequential& net, uint64_t seed) {
  auto& children = net.children();
  for (size_t i = 0; i < children.size(); ++i)
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(children[i].get())) {
      auto noise = std::make_unique<NonStationaryNoise>(bn->num_features, seed + i);
      children.insert(children.begin() + static_cast<std::ptrdiff_t>(i) + 1, std::move(noise));
      ++i;
    }
}

}  // namespace bnlab::lab
