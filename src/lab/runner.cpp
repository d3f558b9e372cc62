// One training run of the lab: the network from its text, optional weights
// redrawn from N(0, sd), SGD on batches gathered here (so the loss of every
// step and the test accuracy every K steps are recorded), divergence as a
// result rather than a crash.
#include "runner.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/random.hpp"
#include "bnlab/train/trainer.hpp"

namespace bnlab::lab {
namespace {

// Each epoch's order comes from a seed of its own, derived from the run's seed.
uint64_t epoch_seed(uint64_t run_seed, int64_t epoch) {
  return run_seed * 1000003ull + static_cast<uint64_t>(epoch);
}

}  // namespace

std::string mlp_arch(const std::vector<int>& widths, const std::string& activation, bool with_bn,
                     double dropout) {
  std::string text = "Flatten()";
  int64_t in = 784;
  char buf[160];
  for (int width : widths) {
    // "No bias in a layer that BN follows": BN's beta takes its place.
    std::snprintf(buf, sizeof buf, ", Linear(%lld, %d%s)", static_cast<long long>(in), width,
                  with_bn ? ", bias=False" : "");
    text += buf;
    if (with_bn) text += ", BatchNorm1d(" + std::to_string(width) + ")";
    text += ", " + activation;
    if (dropout > 0) {
      std::snprintf(buf, sizeof buf, ", Dropout(p=%g)", dropout);
      text += buf;
    }
    in = width;
  }
  text += ", Linear(" + std::to_string(in) + ", 10)";
  return text;
}

double arch_cost(const std::string& arch) {
  Generator gen(0);
  auto net = nn::parse_arch(arch, gen);
  double cost = 0;
  Shape shape = {1, 1, 28, 28};  // the lab's images; a convolution's cost depends on its output size
  for (auto& child : net->children()) {
    const Shape in = shape;
    shape = child->output_shape(in);
    if (auto* linear = dynamic_cast<nn::Linear*>(child.get()))
      cost += static_cast<double>(linear->in_features) * static_cast<double>(linear->out_features);
    if (auto* conv = dynamic_cast<nn::Conv2d*>(child.get()))
      cost += static_cast<double>(shape_numel(shape) * conv->in_channels * conv->kernel_size *
                                  conv->kernel_size);
  }
  return cost;
}

/* The loop: for step s = 0 .. steps-1, the batch order[(s mod E) * B ..] of
   epoch floor(s / E) (E = full batches per epoch: the short last batch is
   dropped, so every step has B examples); loss of each step recorded; at s = 0
   and after every eval_every steps, the test accuracy in eval mode (and the
   probe). A non-finite loss stops the run: "diverged" at that step. */
RunResult train_run(const RunSpec& spec, const LabContext& context) {
  const auto start = std::chrono::steady_clock::now();
  const data::Dataset& train_data = *context.train;
  const data::Dataset& test_data = *context.test;
  RunResult result;
  result.label = spec.label;
  result.with_bn = spec.with_bn;

  Generator gen(spec.seed);
  std::unique_ptr<nn::Sequential> net =
      nn::parse_arch(spec.arch, gen, {1, train_data.channels, train_data.rows, train_data.cols});
  net->fuse_batch_norm_relu(true);  // as the CLI trains: the same math in fewer passes
  if (spec.init_std > 0) {
    for (auto& child : net->children())
      if (auto* linear = dynamic_cast<nn::Linear*>(child.get())) {
        Tensor& w = linear->weight.value;
        for (int64_t i = 0; i < w.numel(); ++i) w[i] = gen.normal(0.0f, static_cast<float>(spec.init_std));
      }
  }

  train::TrainOptions options;
  options.batch = spec.batch;
  options.optimizer = "sgd";
  options.lr = spec.lr;
  options.seed = spec.seed;
  options.drop_last = true;
  train::Trainer trainer(*net, options);
  trainer.set_example_shape({train_data.channels, train_data.rows, train_data.cols});  // a CNN's input

  const int64_t batches_per_epoch = train_data.count / spec.batch;
  if (batches_per_epoch < 1)
    throw Error("lab run " + spec.label + ": the training data (" + std::to_string(train_data.count) +
                " examples) is smaller than one batch of " + std::to_string(spec.batch));
  const int64_t example_size = train_data.example_size();
  std::vector<float> images(static_cast<size_t>(spec.batch * example_size));
  std::vector<int32_t> labels(static_cast<size_t>(spec.batch));
  std::vector<int64_t> order;
  int64_t order_epoch = -1;

  auto evaluate_now = [&](int64_t step) {
    train::EvalResult ev = train::evaluate(*net, test_data, 1000, false);
    result.eval_steps.push_back(step);
    result.test_accuracy.push_back(ev.accuracy);
    result.final_test_loss = ev.loss;
    if (spec.probe) spec.probe(*net, step, result);
  };

  net->train(true);
  evaluate_now(0);
  double window_sum = 0;
  int64_t window_count = 0;
  for (int64_t step = 0; step < spec.steps; ++step) {
    int64_t epoch = step / batches_per_epoch;
    if (epoch != order_epoch) {
      order = data::shuffled_indices(train_data.count, epoch_seed(spec.seed, epoch));
      order_epoch = epoch;
    }
    data::gather_batch(train_data, order, (step % batches_per_epoch) * spec.batch, spec.batch,
                       images.data(), labels.data());
    const double loss = trainer.step(images.data(), labels.data(), spec.batch).loss;
    result.steps_done = step + 1;
    if (!std::isfinite(loss)) {
      result.diverged = true;
      result.diverged_at = step + 1;
      result.divergence = std::string("training loss ") + (std::isnan(loss) ? "nan" : "inf") +
                          " at step " + std::to_string(step + 1);
      // The curve shows the break: a non-finite point where the loss went.
      result.loss_steps.push_back(step + 1);
      result.loss.push_back(NAN);
      result.eval_steps.push_back(step + 1);
      result.test_accuracy.push_back(NAN);
      break;
    }
    window_sum += loss;
    ++window_count;
    if ((step + 1) % spec.eval_every == 0 || step + 1 == spec.steps) {
      result.loss_steps.push_back(step + 1);
      result.loss.push_back(window_sum / static_cast<double>(window_count));
      window_sum = 0;
      window_count = 0;
      evaluate_now(step + 1);
    }
  }
  if (!result.diverged) {
    // Mean of the last evaluations after step 0 (fewer when the run is short).
    size_t available = result.test_accuracy.size() - 1;
    size_t used = std::min<size_t>(kFinalEvaluations, std::max<size_t>(available, 1));
    double sum = 0;
    for (size_t i = result.test_accuracy.size() - used; i < result.test_accuracy.size(); ++i)
      sum += result.test_accuracy[i];
    result.final_test_accuracy = sum / static_cast<double>(used);
    result.last_test_accuracy = result.test_accuracy.back();
    if (spec.train_accuracy)
      result.train_accuracy = train::evaluate(*net, train_data, 1000, false).accuracy;
    if (spec.finish) spec.finish(*net, result);
  } else {
    result.final_test_loss = NAN;
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace bnlab::lab
