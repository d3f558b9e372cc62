// The training loop on small synthetic data sets: one SGD step against a
// float64 reference, evaluation against a float64 reference, the loss going
// down, train-mode evaluation leaving the running statistics alone, seeds.
#include "bnlab/train/trainer.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "bnlab/data/dataset.hpp"
#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/optim/lr_schedule.hpp"
#include "bnlab/random.hpp"

namespace bnlab {
namespace {

constexpr int64_t kRows = 2, kCols = 4, kFeatures = kRows * kCols, kClasses = 3;

// count examples of shape (1, 2, 4) in [0, 1]; the label is the argmax of a
// fixed linear map of the image, so a linear model can learn it.
data::Dataset synthetic_dataset(int64_t count, uint64_t seed) {
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

std::unique_ptr<nn::Sequential> linear_net(uint64_t seed) {
  Generator gen(seed);
  auto net = std::make_unique<nn::Sequential>();
  net->add(std::make_unique<nn::Flatten>());
  net->add(std::make_unique<nn::Linear>(kFeatures, kClasses, true, gen));
  return net;
}

// Flatten, Linear(8, 16, bias=False), BatchNorm1d(16), ReLU, Linear(16, 3).
std::unique_ptr<nn::Sequential> bn_net(uint64_t seed) {
  Generator gen(seed);
  auto net = std::make_unique<nn::Sequential>();
  net->add(std::make_unique<nn::Flatten>());
  net->add(std::make_unique<nn::Linear>(kFeatures, 16, false, gen));
  net->add(std::make_unique<nn::BatchNorm>(1, 16));
  net->add(std::make_unique<nn::ReLU>());
  net->add(std::make_unique<nn::Linear>(16, kClasses, true, gen));
  net->fuse_batch_norm_relu();
  return net;
}

nn::BatchNorm& batch_norm_of(nn::Sequential& net) { return dynamic_cast<nn::BatchNorm&>(net[2]); }
nn::Linear& linear_of(nn::Sequential& net) { return dynamic_cast<nn::Linear&>(net[1]); }

// Mean cross-entropy of logits z = x W^T + b over rows [begin, begin + n) in
// float64: loss_i = logsumexp(z_i) - z_i[y_i]. grad (if given) receives
// dL/dW (K x F) and dL/db (K): (softmax(z_i) - onehot(y_i)) x_i / n summed.
double reference_linear_loss(const std::vector<double>& w, const std::vector<double>& b,
                             const data::Dataset& d, int64_t begin, int64_t n,
                             std::vector<double>* grad_w, std::vector<double>* grad_b,
                             int64_t* correct) {
  double loss = 0.0;
  if (grad_w) grad_w->assign(w.size(), 0.0), grad_b->assign(b.size(), 0.0);
  for (int64_t i = begin; i < begin + n; ++i) {
    const float* x = d.images.data() + i * kFeatures;
    double z[kClasses];
    for (int64_t k = 0; k < kClasses; ++k) {
      z[k] = b[k];
      for (int64_t f = 0; f < kFeatures; ++f) z[k] += w[k * kFeatures + f] * double(x[f]);
    }
    double max_z = z[0];
    int64_t argmax = 0;
    for (int64_t k = 1; k < kClasses; ++k)
      if (z[k] > max_z) max_z = z[k], argmax = k;
    double sum = 0.0;
    for (double v : z) sum += std::exp(v - max_z);
    const int32_t y = d.labels[i];
    loss += max_z + std::log(sum) - z[y];
    if (correct && argmax == y) ++*correct;
    if (grad_w) {
      for (int64_t k = 0; k < kClasses; ++k) {
        const double g = (std::exp(z[k] - max_z) / sum - (k == y ? 1.0 : 0.0)) / double(n);
        (*grad_b)[k] += g;
        for (int64_t f = 0; f < kFeatures; ++f) (*grad_w)[k * kFeatures + f] += g * double(x[f]);
      }
    }
  }
  return loss / double(n);
}

std::vector<double> to_double(const Tensor& t) { return {t.data(), t.data() + t.numel()}; }

TEST(Trainer, SgdStepMatchesFloat64Reference) {
  const data::Dataset d = synthetic_dataset(16, 1);
  auto net = linear_net(2);
  std::vector<double> w = to_double(linear_of(*net).weight.value);
  std::vector<double> b = to_double(linear_of(*net).bias->value);
  train::TrainOptions options;
  options.lr = 0.5;
  train::Trainer trainer(*net, options);

  std::vector<double> grad_w, grad_b;
  const double expected_loss = reference_linear_loss(w, b, d, 0, 16, &grad_w, &grad_b, nullptr);
  const train::StepResult r = trainer.step(d.images.data(), d.labels.data(), 16);
  EXPECT_NEAR(r.loss, expected_loss, 1e-5);
  // p -= lr * grad
  const Tensor& new_w = linear_of(*net).weight.value;
  for (size_t i = 0; i < w.size(); ++i)
    EXPECT_NEAR(new_w[int64_t(i)], w[i] - 0.5 * grad_w[i], 1e-5) << "weight " << i;
  const Tensor& new_b = linear_of(*net).bias->value;
  for (size_t i = 0; i < b.size(); ++i)
    EXPECT_NEAR(new_b[int64_t(i)], b[i] - 0.5 * grad_b[i], 1e-5) << "bias " << i;
}

TEST(Trainer, StepOnAConvolutionalNetworkNeedsTheExampleShape) {
  const data::Dataset d = synthetic_dataset(8, 4);
  Generator gen(4);
  nn::Sequential net;
  net.add(std::make_unique<nn::Conv2d>(1, 2, 3, 1, 1, false, gen));
  net.add(std::make_unique<nn::BatchNorm>(2, 2));
  net.add(std::make_unique<nn::ReLU>());
  net.add(std::make_unique<nn::Flatten>());
  net.add(std::make_unique<nn::Linear>(2 * kFeatures, kClasses, true, gen));
  train::Trainer trainer(net, train::TrainOptions{});
  try {
    trainer.step(d.images.data(), d.labels.data(), 8);
    FAIL() << "expected an error asking for the example shape";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("set_example_shape"), std::string::npos) << e.what();
  }
  trainer.set_example_shape({1, kRows, kCols});
  const train::StepResult r = trainer.step(d.images.data(), d.labels.data(), 8);
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_GT(r.loss, 0.0);
}

TEST(Trainer, EvaluateMatchesFloat64ReferenceOverUnevenBatches) {
  const data::Dataset d = synthetic_dataset(50, 3);
  auto net = linear_net(4);
  const std::vector<double> w = to_double(linear_of(*net).weight.value);
  const std::vector<double> b = to_double(linear_of(*net).bias->value);
  int64_t correct = 0;
  const double expected = reference_linear_loss(w, b, d, 0, 50, nullptr, nullptr, &correct);
  const train::EvalResult r = train::evaluate(*net, d, 16);  // 16, 16, 16, 2
  EXPECT_EQ(r.count, 50);
  EXPECT_NEAR(r.loss, expected, 1e-5);
  EXPECT_DOUBLE_EQ(r.accuracy, double(correct) / 50.0);
}

TEST(Trainer, EpochCoversEveryExampleIncludingTheShortLastBatch) {
  const data::Dataset d = synthetic_dataset(70, 5);
  auto net = bn_net(6);
  train::TrainOptions options;
  options.batch = 32;
  train::Trainer trainer(*net, options);
  const train::EpochResult r = trainer.train_epoch(d, 0);
  EXPECT_EQ(r.steps, 3);  // 32 + 32 + 6
  EXPECT_FALSE(r.diverged);
  EXPECT_EQ(batch_norm_of(*net).num_batches_tracked, 3);
  options.drop_last = true;
  train::Trainer dropping(*net, options);
  EXPECT_EQ(dropping.train_epoch(d, 1).steps, 2);
}

TEST(Trainer, ALastBatchOfOneExampleIsReportedWithItsStep) {
  const data::Dataset d = synthetic_dataset(33, 17);  // 32 + 1
  auto net = bn_net(18);
  train::TrainOptions options;
  options.batch = 32;
  train::Trainer trainer(*net, options);
  try {
    trainer.train_epoch(d, 0);
    FAIL() << "BatchNorm trained on one example";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step 2 of 2 (a batch of 1 of 33"), std::string::npos)
        << e.what();
  }
  options.drop_last = true;  // PyTorch's cure: drop the short batch
  train::Trainer dropping(*net, options);
  EXPECT_EQ(dropping.train_epoch(d, 1).steps, 1);
}

TEST(Trainer, TrainingLossDecreases) {
  const data::Dataset d = synthetic_dataset(512, 7);
  auto net = bn_net(8);
  train::TrainOptions options;
  options.batch = 32;
  options.lr = 0.1;
  train::Trainer trainer(*net, options);
  const double first = trainer.train_epoch(d, 0).mean_loss;
  double last = first;
  for (int64_t epoch = 1; epoch < 8; ++epoch) last = trainer.train_epoch(d, epoch).mean_loss;
  EXPECT_LT(last, 0.7 * first) << "first epoch " << first << ", eighth " << last;
  EXPECT_GT(train::evaluate(*net, d).accuracy, 0.8);
}

TEST(Trainer, AdamAndMomentumTrainToo) {
  const data::Dataset d = synthetic_dataset(256, 9);
  struct Setting {
    const char* optimizer;
    double lr, momentum, weight_decay;
    bool nesterov;
  };
  for (const Setting& setting :
       {Setting{"adam", 0.01, 0.0, 0.0, false}, Setting{"sgd", 0.05, 0.9, 0.0, false},
        Setting{"adamw", 0.01, 0.0, 0.01, false}, Setting{"sgd", 0.05, 0.9, 0.01, true}}) {
    const std::string optimizer =
        setting.optimizer + std::string(setting.nesterov ? " nesterov" : "");
    auto net = bn_net(10);
    train::TrainOptions options;
    options.optimizer = setting.optimizer;
    options.lr = setting.lr;
    options.momentum = setting.momentum;
    options.weight_decay = setting.weight_decay;
    options.nesterov = setting.nesterov;
    train::Trainer trainer(*net, options);
    const double first = trainer.train_epoch(d, 0).mean_loss;
    double last = first;
    for (int64_t epoch = 1; epoch < 5; ++epoch) last = trainer.train_epoch(d, epoch).mean_loss;
    EXPECT_LT(last, first) << optimizer;
  }
}

TEST(Trainer, UnknownOptimizerIsNamed) {
  auto net = linear_net(0);
  train::TrainOptions options;
  options.optimizer = "rmsprop";
  try {
    train::Trainer trainer(*net, options);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rmsprop"), std::string::npos) << e.what();
  }
}

TEST(Trainer, EvaluateInTrainModeLeavesRunningStatisticsUnchanged) {
  const data::Dataset d = synthetic_dataset(200, 11);
  auto net = bn_net(12);
  train::TrainOptions options;
  options.batch = 20;
  train::Trainer trainer(*net, options);
  trainer.train_epoch(d, 0);
  nn::BatchNorm& bn = batch_norm_of(*net);
  const std::vector<double> mean = to_double(bn.running_mean);
  const std::vector<double> var = to_double(bn.running_var);
  const int64_t tracked = bn.num_batches_tracked;
  net->eval();

  const train::EvalResult batch_stats = train::evaluate(*net, d, 25, /*train_mode=*/true);
  EXPECT_EQ(to_double(bn.running_mean), mean);
  EXPECT_EQ(to_double(bn.running_var), var);
  EXPECT_EQ(bn.num_batches_tracked, tracked);
  EXPECT_FALSE(net->is_training());
  EXPECT_FALSE(bn.is_training());
  // Batch statistics give other outputs than the running ones.
  const train::EvalResult running = train::evaluate(*net, d, 25);
  EXPECT_NE(batch_stats.loss, running.loss);
  // And from training mode, training mode is restored.
  net->train();
  train::evaluate(*net, d, 25, true);
  EXPECT_TRUE(bn.is_training());
}

TEST(Trainer, SameSeedSameRunOtherSeedOtherOrder) {
  const data::Dataset d = synthetic_dataset(128, 13);
  auto run = [&](uint64_t shuffle_seed) {
    auto net = bn_net(14);
    train::TrainOptions options;
    options.batch = 16;
    options.seed = shuffle_seed;
    train::Trainer trainer(*net, options);
    std::vector<double> losses;
    for (int64_t epoch = 0; epoch < 2; ++epoch)
      trainer.train_epoch(d, epoch, [&](int64_t, int64_t, double loss) { losses.push_back(loss); });
    return losses;
  };
  const std::vector<double> a = run(1), b = run(1), c = run(2);
  EXPECT_EQ(a.size(), 16u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(Trainer, NonFiniteLossStopsTheEpochAsDiverged) {
  data::Dataset d = synthetic_dataset(64, 15);
  // Every example of the second batch in the shuffled order gets a NaN.
  const std::vector<int64_t> order = data::shuffled_indices(64, 0);
  for (int64_t i = 16; i < 32; ++i)
    d.images[size_t(order[size_t(i)] * kFeatures)] = std::numeric_limits<float>::quiet_NaN();
  auto net = linear_net(16);
  train::TrainOptions options;
  options.batch = 16;
  train::Trainer trainer(*net, options);
  const train::EpochResult r = trainer.train_epoch(d, 0);
  EXPECT_TRUE(r.diverged);
  EXPECT_EQ(r.steps, 2);
  EXPECT_FALSE(std::isfinite(r.mean_loss));
}

// Each epoch's lr is the schedule's (step:1:0.5 halves it every epoch); with
// onecycle the optimizer ends on the schedule's last step.
TEST(Trainer, TheScheduleSetsTheLrOfEveryStep) {
  const data::Dataset d = synthetic_dataset(64, 21);
  auto net = linear_net(22);
  train::TrainOptions options;
  options.batch = 16;
  options.lr = 0.1;
  options.epochs = 3;
  options.lr_schedule = "step:1:0.5";
  train::Trainer trainer(*net, options);
  for (int64_t epoch = 0; epoch < 3; ++epoch)
    EXPECT_DOUBLE_EQ(trainer.train_epoch(d, epoch).lr, 0.1 * std::pow(0.5, double(epoch)));

  options.lr_schedule = "onecycle";
  train::Trainer cycling(*net, options);
  for (int64_t epoch = 0; epoch < 3; ++epoch) cycling.train_epoch(d, epoch);
  EXPECT_DOUBLE_EQ(cycling.optimizer().lr, optim::LrSchedule("onecycle", 0.1, 3).lr(2, 3, 4));
  EXPECT_NEAR(cycling.optimizer().lr, 0.1 / 25 / 1e4, 1e-12);

  options.lr_schedule = "cosine";
  options.epochs = 0;  // a schedule needs the run's length
  EXPECT_THROW(train::Trainer(*net, options), Error);
}

// With SGD at lr 1, a step moves the weights by the clipped gradient: a
// global 2-norm of at most max_norm.
TEST(Trainer, ClipGradNormBoundsTheUpdate) {
  const data::Dataset d = synthetic_dataset(16, 23);
  for (const double clip : {0.0, 1e-3}) {
    auto net = linear_net(24);
    std::vector<std::vector<double>> before;
    for (auto& entry : net->parameters()) before.push_back(to_double(entry.second->value));
    train::TrainOptions options;
    options.lr = 1.0;
    options.clip_grad_norm = clip;
    train::Trainer trainer(*net, options);
    trainer.step(d.images.data(), d.labels.data(), 16);
    double squares = 0.0;
    for (size_t p = 0; p < before.size(); ++p) {
      const Tensor& value = net->parameters()[p].second->value;
      for (int64_t i = 0; i < value.numel(); ++i)
        squares += std::pow(value[i] - before[p][size_t(i)], 2);
    }
    if (clip > 0)
      EXPECT_LE(std::sqrt(squares), 1e-3 * (1 + 1e-4)) << "clipped";
    else
      EXPECT_GT(std::sqrt(squares), 1e-2) << "unclipped";
  }
  train::TrainOptions bad;
  bad.clip_grad_norm = INFINITY;
  auto net = linear_net(0);
  EXPECT_THROW(train::Trainer(*net, bad), Error);
}

// The training loss is CrossEntropyLoss(label_smoothing) of the step's logits.
TEST(Trainer, LabelSmoothingIsTheTrainingLoss) {
  const data::Dataset d = synthetic_dataset(16, 25);
  auto net = linear_net(26), same = linear_net(26);
  train::TrainOptions options;
  options.label_smoothing = 0.2;
  train::Trainer trainer(*net, options);
  const double loss = trainer.step(d.images.data(), d.labels.data(), 16).loss;
  Tensor images({16, kFeatures});
  std::copy(d.images.begin(), d.images.end(), images.data());
  same->train(true);
  nn::CrossEntropyLoss smoothed(0.2), plain;
  const Tensor& logits = same->forward(images);
  EXPECT_NEAR(loss, smoothed.forward(logits, d.labels.data()), 1e-9);
  EXPECT_GT(std::fabs(loss - plain.forward(logits, d.labels.data())), 1e-3);
}

}  // namespace
}  // namespace bnlab
