// One lab run: the same seed gives the same curves; the final accuracy is
// the mean of the last evaluations; a run that blows up ends
// as "diverged" with a non-finite point on its curve, not as an exception;
// the MLP text has bias=False before each BatchNorm1d.
#include <gtest/gtest.h>

#include <cmath>

#include "bnlab/random.hpp"
#include "lab/runner.hpp"

using namespace bnlab;
using namespace bnlab::lab;

namespace {

// 512 random 28x28 images; the label is which quarter of the image is brightest
// (learnable, so the loss moves), 4 classes of the 10 outputs.
data::Dataset synthetic(uint64_t seed, int64_t count) {
  data::Dataset d;
  d.count = count;
  d.rows = d.cols = 28;
  d.images.resize(static_cast<size_t>(count * 784));
  d.labels.resize(static_cast<size_t>(count));
  Generator gen(seed);
  for (int64_t i = 0; i < count; ++i) {
    int32_t label = static_cast<int32_t>(gen.below(4));
    d.labels[size_t(i)] = label;
    for (int64_t p = 0; p < 784; ++p) {
      int64_t quarter = (p / 28 >= 14) * 2 + (p % 28 >= 14);
      d.images[size_t(i * 784 + p)] = gen.uniform(0.0f, 0.5f) + (quarter == label ? 0.5f : 0.0f);
    }
  }
  return d;
}

RunSpec small_run(bool with_bn) {
  RunSpec spec;
  spec.label = "test";
  spec.arch = mlp_arch({32, 32}, "ReLU()", with_bn);
  spec.with_bn = with_bn;
  spec.lr = 0.1;
  spec.batch = 32;
  spec.steps = 40;
  spec.eval_every = 10;
  spec.seed = 7;
  return spec;
}

}  // namespace

TEST(LabRun, SameSeedGivesTheSameCurves) {
  data::Dataset train = synthetic(1, 512), test = synthetic(2, 128);
  LabContext context{&train, &test, true, 7};
  for (bool with_bn : {false, true}) {
    RunResult a = train_run(small_run(with_bn), context);
    RunResult b = train_run(small_run(with_bn), context);
    ASSERT_FALSE(a.diverged);
    EXPECT_EQ(a.loss, b.loss);
    EXPECT_EQ(a.test_accuracy, b.test_accuracy);
    EXPECT_EQ(a.eval_steps, (std::vector<int64_t>{0, 10, 20, 30, 40}));
    EXPECT_EQ(a.loss_steps, (std::vector<int64_t>{10, 20, 30, 40}));
    // The task is learnable: the loss falls below log(10) and accuracy beats chance (1/4).
    EXPECT_LT(a.loss.back(), std::log(10.0));
    EXPECT_GT(a.final_test_accuracy, 0.4);
    // Final = mean of the last evaluations after step 0 (here all 4 of them).
    double mean = (a.test_accuracy[1] + a.test_accuracy[2] + a.test_accuracy[3] + a.test_accuracy[4]) / 4;
    EXPECT_NEAR(a.final_test_accuracy, mean, 1e-12);
    EXPECT_EQ(a.last_test_accuracy, a.test_accuracy.back());
  }
}

TEST(LabRun, ExplodingRunEndsAsDivergedWithANonFinitePoint) {
  data::Dataset train = synthetic(1, 512), test = synthetic(2, 128);
  LabContext context{&train, &test, true, 7};
  RunSpec spec = small_run(false);
  spec.init_std = 50.0;  // logits in the thousands
  spec.lr = 1e30;        // and an update that overflows
  RunResult r = train_run(spec, context);
  EXPECT_TRUE(r.diverged);
  EXPECT_GT(r.diverged_at, 0);
  EXPECT_TRUE(std::isnan(r.final_test_accuracy));
  ASSERT_FALSE(r.loss.empty());
  EXPECT_FALSE(std::isfinite(r.loss.back()));
  EXPECT_FALSE(r.divergence.empty());
}

TEST(LabRun, AConvolutionalNetworkTrains) {
  data::Dataset train = synthetic(1, 512), test = synthetic(2, 128);
  LabContext context{&train, &test, true, 7};
  RunSpec spec = small_run(true);
  spec.arch = "Conv2d(1, 4, 3, padding=1, bias=False), BatchNorm2d(4), ReLU(), MaxPool2d(4), "
              "Flatten(), Linear(196, 10)";
  RunResult r = train_run(spec, context);
  ASSERT_FALSE(r.diverged) << r.divergence;
  EXPECT_GT(r.final_test_accuracy, 0.4);
}

TEST(LabRun, InitStdRedrawsLinearWeights) {
  data::Dataset train = synthetic(1, 512), test = synthetic(2, 128);
  LabContext context{&train, &test, true, 7};
  RunSpec spec = small_run(false);
  spec.steps = 0;
  double max_abs = 0;
  spec.init_std = 5.0;
  spec.probe = [&](nn::Sequential& net, int64_t, RunResult&) {
    auto& linear = dynamic_cast<nn::Linear&>(net[1]);
    for (int64_t i = 0; i < linear.weight.value.numel(); ++i)
      max_abs = std::max(max_abs, std::abs(double(linear.weight.value[i])));
  };
  train_run(spec, context);
  // PyTorch's default bound is 1/sqrt(784) = 0.036; N(0, 5) over 25088 weights exceeds 10.
  EXPECT_GT(max_abs, 10.0);
}

TEST(LabArch, MlpTextPutsBatchNormBetweenABiaslessLinearAndTheActivation) {
  EXPECT_EQ(mlp_arch({100, 50}, "Sigmoid()", true, 0.5),
            "Flatten(), Linear(784, 100, bias=False), BatchNorm1d(100), Sigmoid(), Dropout(p=0.5), "
            "Linear(100, 50, bias=False), BatchNorm1d(50), Sigmoid(), Dropout(p=0.5), "
            "Linear(50, 10)");
  EXPECT_EQ(mlp_arch({100}, "ReLU()", false), "Flatten(), Linear(784, 100), ReLU(), Linear(100, 10)");
}
