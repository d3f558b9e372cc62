// Fine-tuning with frozen BatchNorm (bnlab train --freeze-bn,
// --freeze-bn-affine): the running statistics stay bit for bit through
// training steps, training normalizes as eval does, and the affine
// parameters train or stay as asked.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/random.hpp"
#include "bnlab/train/trainer.hpp"

namespace bnlab {
namespace {

constexpr int64_t kBatch = 8, kFeatures = 12;
const char* kArch = "Flatten(), Linear(12, 8, bias=False), BatchNorm1d(8), ReLU(), Linear(8, 3)";

// The network after a few ordinary training forwards: running statistics
// away from 0 and 1, as a pretrained network's (--init) are.
std::unique_ptr<nn::Sequential> pretrained(Generator& gen) {
  auto net = nn::parse_arch(kArch, gen);
  Tensor x({kBatch, kFeatures});
  for (int step = 0; step < 3; ++step) {
    for (int64_t i = 0; i < x.numel(); ++i) x[i] = gen.normal(1.0f, 2.0f);
    net->forward(x);
  }
  return net;
}

std::vector<float> values(const Tensor& t) { return {t.data(), t.data() + t.numel()}; }

// Runs `steps` SGD steps (momentum, weight decay) on random batches.
void train_steps(nn::Sequential& net, int steps, Generator& gen) {
  train::TrainOptions options;
  options.batch = kBatch;
  options.lr = 0.1;
  options.momentum = 0.9;
  options.weight_decay = 0.05;
  train::Trainer trainer(net, options);
  std::vector<float> images(kBatch * kFeatures);
  std::vector<int32_t> labels(kBatch);
  for (int step = 0; step < steps; ++step) {
    for (float& v : images) v = gen.normal(0.5f, 1.0f);
    for (int32_t& l : labels) l = static_cast<int32_t>(gen.uniform(0.0f, 2.99f));
    trainer.step(images.data(), labels.data(), kBatch);
  }
}

TEST(FreezeBatchNorm, RunningStatisticsStayBitForBitAndAffineTrains) {
  Generator gen(1);
  auto net = pretrained(gen);
  auto& bn = dynamic_cast<nn::BatchNorm&>((*net)[2]);
  const std::vector<float> mean = values(bn.running_mean), var = values(bn.running_var);
  const int64_t tracked = bn.num_batches_tracked;
  const std::vector<float> gamma = values(bn.weight.value),
                           w1 = values((*net)[1].parameters()[0].second->value);
  net->freeze_batch_norm(false);
  train_steps(*net, 5, gen);
  EXPECT_EQ(values(bn.running_mean), mean);
  EXPECT_EQ(values(bn.running_var), var);
  EXPECT_EQ(bn.num_batches_tracked, tracked);
  EXPECT_NE(values(bn.weight.value), gamma);
  EXPECT_NE(values((*net)[1].parameters()[0].second->value), w1);
}

TEST(FreezeBatchNorm, FreezeAffineKeepsWeightAndBiasEvenUnderWeightDecay) {
  Generator gen(2);
  auto net = pretrained(gen);
  auto& bn = dynamic_cast<nn::BatchNorm&>((*net)[2]);
  for (int64_t j = 0; j < bn.num_features; ++j) bn.weight.value[j] = 1.0f + 0.1f * j;
  const std::vector<float> gamma = values(bn.weight.value), beta = values(bn.bias.value);
  const std::vector<float> mean = values(bn.running_mean);
  const std::vector<float> w1 = values((*net)[1].parameters()[0].second->value);
  net->freeze_batch_norm(true);
  train_steps(*net, 5, gen);
  EXPECT_EQ(values(bn.weight.value), gamma);
  EXPECT_EQ(values(bn.bias.value), beta);
  EXPECT_EQ(values(bn.running_mean), mean);
  EXPECT_NE(values((*net)[1].parameters()[0].second->value), w1);
}

TEST(FreezeBatchNorm, TrainingNormalizesAsEvalAndNeedsRunningStatistics) {
  Generator gen(3);
  auto net = pretrained(gen);
  Tensor x({kBatch, kFeatures});
  for (int64_t i = 0; i < x.numel(); ++i) x[i] = gen.normal(0.0f, 1.0f);
  net->eval();
  const Tensor eval_y = net->forward(x);
  net->freeze_batch_norm(false);
  net->train();
  const Tensor& train_y = net->forward(x);
  EXPECT_EQ(values(train_y), values(eval_y));
  auto untracked = nn::parse_arch("BatchNorm1d(4, track_running_stats=False)", gen);
  EXPECT_THROW(untracked->freeze_batch_norm(false), Error);
}

}  // namespace
}  // namespace bnlab
