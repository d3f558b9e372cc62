// BN folding: the folded network has no BatchNorm after a Linear or Conv2d
// and gives the original's eval-mode outputs; the folded weights match a
// float64 computation of the formula in fold.hpp.
#include <gtest/gtest.h>

#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/nn/fold.hpp"

namespace bnlab::nn {
namespace {

// Gives the BatchNorms non-trivial running statistics and affine parameters.
void randomize_batch_norms(Sequential& net, Generator& gen) {
  for (size_t i = 0; i < net.size(); ++i) {
    auto* bn = dynamic_cast<BatchNorm*>(&net[i]);
    if (bn == nullptr) continue;
    for (int64_t j = 0; j < bn->num_features; ++j) {
      if (bn->track_running_stats) {
        bn->running_mean[j] = gen.normal(0.0f, 0.5f);
        bn->running_var[j] = gen.uniform(0.2f, 3.0f);
      }
      if (bn->affine) {
        bn->weight.value[j] = gen.uniform(0.5f, 1.5f);
        bn->bias.value[j] = gen.normal(0.0f, 0.3f);
      }
    }
  }
}

Tensor random_input(const Shape& shape, Generator& gen) {
  Tensor x(shape);
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = gen.uniform(0.0f, 1.0f);
  return x;
}

void expect_same_outputs(const std::string& arch, const Shape& input_shape, int expect_folded) {
  Generator gen(7);
  auto net = parse_arch(arch, gen);
  randomize_batch_norms(*net, gen);
  net->eval();
  const Tensor x = random_input(input_shape, gen);
  const Tensor before = net->forward(x);

  FoldResult folded = fold_batch_norm(*net);
  EXPECT_EQ(folded.folded, expect_folded);
  for (size_t i = 0; i + 1 < folded.net->size(); ++i) {
    const bool layer = dynamic_cast<Linear*>(&(*folded.net)[i]) != nullptr ||
                       dynamic_cast<Conv2d*>(&(*folded.net)[i]) != nullptr;
    EXPECT_FALSE(layer && dynamic_cast<BatchNorm*>(&(*folded.net)[i + 1]) != nullptr)
        << "a BatchNorm still follows layer " << i;
  }
  const Tensor& after = folded.net->forward(x);
  ASSERT_EQ(after.shape(), before.shape());
  for (int64_t i = 0; i < before.numel(); ++i)
    EXPECT_NEAR(after[i], before[i], 1e-4 * (1.0 + std::fabs(before[i]))) << "output " << i;

  // The folded text reads back into the same architecture.
  Generator other(1);
  auto reparsed = parse_arch(folded.arch, other);
  EXPECT_EQ(reparsed->repr(), folded.net->repr());
}

TEST(FoldBatchNorm, MlpWithBatchNormGivesSameOutputs) {
  expect_same_outputs(
      "Flatten(), Linear(784, 64, bias=False), BatchNorm1d(64), ReLU(), Linear(64, 32), "
      "BatchNorm1d(32, affine=False), Sigmoid(), Linear(32, 10)",
      {5, 1, 28, 28}, 2);
}

TEST(FoldBatchNorm, CnnWithBatchNormGivesSameOutputs) {
  expect_same_outputs(
      "Conv2d(1, 4, 3, padding=1, bias=False), BatchNorm2d(4), ReLU(), MaxPool2d(2), "
      "Conv2d(4, 6, 3, stride=2, padding=1), BatchNorm2d(6, eps=0.001), ReLU(), Flatten(), "
      "Linear(294, 10)",
      {3, 1, 28, 28}, 2);
}

TEST(FoldBatchNorm, FoldedWeightsFollowTheFormula) {
  Generator gen(3);
  auto net = parse_arch("Linear(3, 2), BatchNorm1d(2, eps=0.01)", gen);
  randomize_batch_norms(*net, gen);
  auto& linear = dynamic_cast<Linear&>((*net)[0]);
  auto& bn = dynamic_cast<BatchNorm&>((*net)[1]);
  FoldResult folded = fold_batch_norm(*net);
  ASSERT_EQ(folded.net->size(), 1u);
  auto& f = dynamic_cast<Linear&>((*folded.net)[0]);
  for (int64_t o = 0; o < 2; ++o) {
    const double scale =
        static_cast<double>(bn.weight.value[o]) / std::sqrt(static_cast<double>(bn.running_var[o]) + 0.01);
    for (int64_t k = 0; k < 3; ++k)
      EXPECT_NEAR(f.weight.value[o * 3 + k], linear.weight.value[o * 3 + k] * scale, 1e-6);
    const double bias = (linear.bias->value[o] - static_cast<double>(bn.running_mean[o])) * scale +
                        bn.bias.value[o];
    EXPECT_NEAR(f.bias->value[o], bias, 1e-6);
  }
}

TEST(FoldBatchNorm, BatchNormWithoutLayerBeforeItIsKept) {
  Generator gen(0);
  auto net = parse_arch("Flatten(), BatchNorm1d(784), Linear(784, 10)", gen);
  FoldResult folded = fold_batch_norm(*net);
  EXPECT_EQ(folded.folded, 0);
  EXPECT_EQ(folded.kept, 1);
  EXPECT_EQ(folded.net->size(), 3u);
}

TEST(FoldBatchNorm, RefusesBatchNormWithoutRunningStatistics) {
  Generator gen(0);
  auto net = parse_arch("Linear(4, 3), BatchNorm1d(3, track_running_stats=False)", gen);
  try {
    fold_batch_norm(*net);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("track_running_stats=False"), std::string::npos);
  }
}

}  // namespace
}  // namespace bnlab::nn
