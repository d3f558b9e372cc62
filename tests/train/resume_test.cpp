// Resumable training on a small synthetic data set: E epochs in one run and
// the same epochs split by a checkpoint (at an epoch's end or mid-epoch, by
// the stop flag) give bit-identical weights; the optimizer's state and the
// generator's round-trip; the validation split, the divergence check and the
// last-batch-of-one rule.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "bnlab/data/dataset.hpp"
#include "bnlab/error.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "bnlab/random.hpp"
#include "bnlab/train/checkpoint.hpp"
#include "bnlab/train/trainer.hpp"
#include "bnlab/train/validation.hpp"
#include "synthetic_data.hpp"

namespace bnlab {
namespace {

// A network with every kind of state a resume must carry: BatchNorm's running
// statistics, Dropout's generator, the optimizer's buffers.
struct TrainingRun {
  Generator generator;
  nn::Sequential net;
  std::unique_ptr<train::Trainer> trainer;
  TrainingRun(uint64_t seed, const train::TrainOptions& options) : generator(seed) {
    net.add(std::make_unique<nn::Flatten>());
    net.add(std::make_unique<nn::Linear>(kFeatures, 16, false, generator));
    net.add(std::make_unique<nn::BatchNorm>(1, 16));
    net.add(std::make_unique<nn::ReLU>());
    net.add(std::make_unique<nn::Dropout>(0.25, generator));
    net.add(std::make_unique<nn::Linear>(16, kClasses, true, generator));
    net.fuse_batch_norm_relu();
    trainer = std::make_unique<train::Trainer>(net, options);
  }
};

std::string temp_path(const std::string& name) {
  return testing::TempDir() + "bnlab_resume_" + name + "_" + std::to_string(getpid()) +
         ".safetensors";
}

// The state dicts' bytes, entry by entry.
void expect_same_weights(nn::Sequential& a, nn::Sequential& b) {
  const io::SafetensorsFile x = nn::state_dict(a), y = nn::state_dict(b);
  ASSERT_EQ(x.tensors.size(), y.tensors.size());
  for (size_t i = 0; i < x.tensors.size(); ++i) {
    EXPECT_EQ(x.tensors[i].name, y.tensors[i].name);
    EXPECT_TRUE(x.tensors[i].bytes == y.tensors[i].bytes) << x.tensors[i].name << " differs";
  }
}

// Saves `run` at `epoch` (`within` done of it), then builds a fresh run from
// the seed and loads the file into it, as bnlab train --resume does.
std::unique_ptr<TrainingRun> save_and_reload(TrainingRun& run, const train::TrainOptions& options,
                                             const std::string& name, int64_t epoch,
                                             const train::EpochState& within,
                                             train::ResumeState& loaded) {
  train::ResumeState state;
  state.epoch = epoch;
  state.within = within;
  state.dropout_generator = run.generator.state();
  state.settings = {{"lr", "0.05"}};
  const std::string path = temp_path(name);
  train::save_training_checkpoint(path, run.net, "toy", run.trainer->optimizer(), state);
  auto resumed = std::make_unique<TrainingRun>(11, options);
  const io::SafetensorsFile file = io::read_safetensors(path);
  loaded = train::read_resume_state(file, path);
  train::load_model_and_optimizer(file, path, resumed->net, resumed->trainer->optimizer());
  resumed->generator.set_state(*loaded.dropout_generator);
  ::unlink(path.c_str());
  return resumed;
}

class ResumeIdentity : public testing::TestWithParam<const char*> {};

TEST_P(ResumeIdentity, ThreeEpochsEqualOnePlusTwoAfterACheckpoint) {
  const data::Dataset d = synthetic_dataset(100, 3);  // batches of 16: 6 full and one of 4
  train::TrainOptions options;
  options.batch = 16;
  options.optimizer = GetParam();
  options.lr = 0.05;
  options.momentum = options.optimizer == "sgd" ? 0.9 : 0.0;
  options.seed = 5;
  TrainingRun whole(11, options);
  for (int64_t epoch = 0; epoch < 3; ++epoch) whole.trainer->train_epoch(d, epoch);

  TrainingRun first(11, options);
  first.trainer->train_epoch(d, 0);
  train::ResumeState loaded;
  auto rest = save_and_reload(first, options, GetParam(), 1, {}, loaded);
  EXPECT_EQ(loaded.epoch, 1);
  EXPECT_EQ(loaded.settings.at("lr"), "0.05");
  for (int64_t epoch = loaded.epoch; epoch < 3; ++epoch) rest->trainer->train_epoch(d, epoch);
  expect_same_weights(whole.net, rest->net);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, ResumeIdentity, testing::Values("sgd", "adam"));

TEST(Resume, AStopMidEpochContinuesExactlyFromTheNextStep) {
  const data::Dataset d = synthetic_dataset(100, 4);
  train::TrainOptions options;
  options.batch = 16;
  options.optimizer = "adam";
  options.lr = 0.01;
  TrainingRun whole(11, options);
  const train::EpochResult full0 = whole.trainer->train_epoch(d, 0);
  const train::EpochResult full1 = whole.trainer->train_epoch(d, 1);

  TrainingRun stopped(11, options);
  std::atomic<bool> stop{false};
  stopped.trainer->set_stop_flag(&stop);
  stopped.trainer->train_epoch(d, 0);
  train::EpochState within;
  // The flag is read in the step: set during step 2's callback, step 3 is the last.
  const train::EpochResult part = stopped.trainer->train_epoch(
      d, 1, [&](int64_t step, int64_t, double) { stop = step == 2; }, &within);
  EXPECT_TRUE(part.stopped);
  EXPECT_EQ(part.steps, 3);
  EXPECT_EQ(within.step, 3);
  train::ResumeState loaded;
  auto rest = save_and_reload(stopped, options, "mid", 1, within, loaded);
  EXPECT_EQ(loaded.within.step, 3);
  EXPECT_DOUBLE_EQ(loaded.within.loss_sum, within.loss_sum);
  const train::EpochResult end = rest->trainer->train_epoch(d, 1, nullptr, &loaded.within);
  EXPECT_FALSE(end.stopped);
  EXPECT_EQ(end.steps, 7);
  EXPECT_DOUBLE_EQ(end.mean_loss, full1.mean_loss);  // the epoch's sums carried over
  EXPECT_DOUBLE_EQ(end.accuracy, full1.accuracy);
  EXPECT_GT(full0.steps, 0);
  expect_same_weights(whole.net, rest->net);
}

TEST(Resume, ThePlainModelLoaderSkipsTheOptimizerEntries) {
  const data::Dataset d = synthetic_dataset(64, 5);
  train::TrainOptions options;
  options.batch = 16;
  options.momentum = 0.9;
  TrainingRun run(11, options);
  run.trainer->train_epoch(d, 0);
  const std::string path = temp_path("plain");
  train::save_training_checkpoint(path, run.net, "toy", run.trainer->optimizer(), {});
  const io::SafetensorsFile file = io::read_safetensors(path);
  ::unlink(path.c_str());
  size_t optimizer_entries = 0;
  for (const io::NamedTensor& t : file.tensors)
    if (t.name.rfind("optimizer.", 0) == 0) ++optimizer_entries;
  EXPECT_EQ(optimizer_entries, 5u);  // momentum buffers: 1.weight, 2.weight/bias, 5.weight/bias
  EXPECT_NE(file.find("optimizer.1.weight.momentum_buffer"), nullptr);
  TrainingRun other(99, options);
  nn::load_state_dict(other.net, file);  // what eval and fold call
  expect_same_weights(run.net, other.net);
}

TEST(Resume, APlainStateDictIsRefusedWithAHintAtInit) {
  TrainingRun run(11, {});
  io::SafetensorsFile file = nn::state_dict(run.net);
  try {
    train::read_resume_state(file, "plain.safetensors");
    FAIL() << "a state dict without training state was resumed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--init"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("plain.safetensors"), std::string::npos) << e.what();
  }
}

TEST(Resume, OptimizerStateOfAnotherShapeIsRefusedByName) {
  train::TrainOptions options;
  options.momentum = 0.9;
  TrainingRun run(11, options);
  optim::OptimizerState state;
  state.tensors.emplace_back("1.weight.momentum_buffer", Tensor({3, 3}));
  try {
    run.trainer->optimizer().load_state(state);
    FAIL() << "a buffer of the wrong shape was loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'1.weight.momentum_buffer': shape (3, 3)"),
              std::string::npos)
        << e.what();
  }
  state.tensors.clear();
  state.tensors.emplace_back("7.weight.exp_avg", Tensor({3}));
  EXPECT_THROW(run.trainer->optimizer().load_state(state), Error);
}

TEST(Resume, GeneratorStateRestoresTheSameDraws) {
  Generator a(42);
  a.normal();  // leaves a spare normal behind
  const GeneratorState saved = a.state();
  const float next_a = a.normal();
  const double after_a = a.uniform();
  Generator b(7);
  b.set_state(saved);
  EXPECT_EQ(b.normal(), next_a);
  EXPECT_EQ(b.uniform(), after_a);
}

TEST(Resume, SettingsDifferenceNamesEachChangedOption) {
  EXPECT_EQ(train::settings_difference({{"lr", "0.1"}}, {{"lr", "0.1"}}), "");
  EXPECT_EQ(train::settings_difference({{"lr", "0.1"}, {"batch", "64"}},
                                       {{"lr", "0.2"}, {"batch", "64"}}),
            "lr: 0.1 in the checkpoint, 0.2 now");
  EXPECT_EQ(train::settings_difference({}, {{"seed", "1"}}), "seed: none in the checkpoint, 1 now");
}

TEST(Validation, HoldOutSplitsDisjointlyAndTheSameForTheSameSeed) {
  const data::Dataset d = synthetic_dataset(50, 6);
  const train::HeldOut a = train::hold_out(d, 0.2, 3), b = train::hold_out(d, 0.2, 3);
  EXPECT_EQ(a.validation.count, 10);
  EXPECT_EQ(a.train.count, 40);
  EXPECT_EQ(a.validation.images, b.validation.images);
  // Every example lands in exactly one part: the multiset of first values is kept.
  std::multiset<float> all, parts;
  for (int64_t i = 0; i < d.count; ++i) all.insert(d.images[size_t(i * kFeatures)]);
  for (const data::Dataset* p : {&a.train, &a.validation}) {
    ASSERT_EQ(p->labels.size(), size_t(p->count));
    for (int64_t i = 0; i < p->count; ++i) parts.insert(p->images[size_t(i * kFeatures)]);
  }
  EXPECT_EQ(all, parts);
  EXPECT_NE(train::hold_out(d, 0.2, 4).validation.images, a.validation.images);
  EXPECT_THROW(train::hold_out(d, 0.0, 3), Error);
  EXPECT_THROW(train::hold_out(d, 1.0, 3), Error);
  EXPECT_THROW(train::hold_out(d, 0.001, 3), Error);  // rounds to no example
}

TEST(Divergence, FirstNonFiniteNamesTheEntry) {
  TrainingRun run(11, {});
  EXPECT_EQ(train::first_non_finite(run.net), "");
  dynamic_cast<nn::Linear&>(run.net[5]).bias->value[1] = std::nanf("");
  EXPECT_EQ(train::first_non_finite(run.net), "5.bias");
  dynamic_cast<nn::BatchNorm&>(run.net[2]).running_var[0] = INFINITY;
  EXPECT_EQ(train::first_non_finite(run.net), "5.bias");  // parameters first
}

TEST(LastBatch, OneExampleForBatchNorm1dIsFoundBeforeTraining) {
  train::TrainOptions options;
  options.batch = 32;
  TrainingRun run(11, options);
  const Shape example{1, 2, 4};
  EXPECT_TRUE(train::last_batch_too_small_for_batch_norm(run.net, example, 33, options));
  EXPECT_FALSE(train::last_batch_too_small_for_batch_norm(run.net, example, 34, options));
  EXPECT_FALSE(train::last_batch_too_small_for_batch_norm(run.net, example, 64, options));
  // Frozen statistics normalize one example as well as many.
  run.net.freeze_batch_norm(false);
  EXPECT_FALSE(train::last_batch_too_small_for_batch_norm(run.net, example, 33, options));
  // A BatchNorm2d over 2x4 pixels has 8 values per channel even for one example.
  nn::Sequential conv;
  Generator gen(1);
  conv.add(std::make_unique<nn::BatchNorm>(2, 1));
  EXPECT_FALSE(train::last_batch_too_small_for_batch_norm(conv, example, 33, options));
  // Dropping the batch (the CLI's cure) trains every step.
  const data::Dataset d = synthetic_dataset(33, 7);
  TrainingRun dropping(11, options);
  options.drop_last = true;
  train::Trainer trainer(dropping.net, options);
  EXPECT_EQ(trainer.train_epoch(d, 0).steps, 1);
}

}  // namespace
}  // namespace bnlab
