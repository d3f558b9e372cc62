// Internal to the lab: one training run as data (RunSpec -> RunResult), and
// the experiments as a plan of runs plus a report built from their results.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bnlab/data/dataset.hpp"
#include "bnlab/lab/report.hpp"
#include "bnlab/nn/layers.hpp"

namespace bnlab::lab {

struct RunResult;

// What one run trains and records.
struct RunSpec {
  std::string label;     // "sigmoid, lr 1, with BN"
  std::string arch;      // PyTorch notation, for nn::parse_arch
  bool with_bn = false;
  double lr = 0.1;
  int64_t batch = 64;
  int64_t steps = 1000;
  int64_t eval_every = 100;    // test accuracy (and the probe) every this many steps, and at 0
  uint64_t seed = 0;           // weights and shuffling
  double init_std = 0.0;       // > 0: every Linear weight redrawn from N(0, init_std)
  bool train_accuracy = false; // measure accuracy on the training data at the end
  // Called once on the new network (weights drawn) before training: may add layers.
  std::function<void(nn::Sequential& net)> prepare;
  // Called at step 0 and at each evaluation (net in training mode); may record into result.extra.
  std::function<void(nn::Sequential& net, int64_t step, RunResult& result)> probe;
  // Called once after training unless the run diverged.
  std::function<void(nn::Sequential& net, RunResult& result)> finish;
};

struct RunResult {
  std::string label;
  bool with_bn = false;
  // Training loss, the mean over each window of eval_every steps, at the window's last step.
  std::vector<int64_t> loss_steps;
  std::vector<double> loss;
  // Test accuracy at step 0 and every eval_every steps.
  std::vector<int64_t> eval_steps;
  std::vector<double> test_accuracy;
  // The mean of the last kFinalEvaluations evaluations (one evaluation moves by a
  // point or two from step to step); NaN when the run diverged.
  double final_test_accuracy = NAN;
  double last_test_accuracy = NAN;   // the last evaluation alone (beside train_accuracy)
  double final_test_loss = NAN;
  double train_accuracy = NAN;       // when asked for
  bool diverged = false;
  int64_t diverged_at = -1;          // the step whose loss was not finite
  std::string divergence;            // what happened ("loss nan at step 12")
  int64_t steps_done = 0;
  double seconds = 0.0;
  nlohmann::json extra = nlohmann::json::object();
};

// How many of the last evaluations make a run's final test accuracy.
inline constexpr int kFinalEvaluations = 5;

// The data and settings every experiment shares.
struct LabContext {
  const data::Dataset* train = nullptr;
  const data::Dataset* test = nullptr;
  bool quick = false;
  uint64_t seed = 0;
};

// Trains one run. A non-finite loss (or a BN error about non-finite values)
// ends it as diverged; any other error propagates.
RunResult train_run(const RunSpec& spec, const LabContext& context);

// Multiply-adds per example of the network's Linear layers: the run's cost
// for the time estimate.
double arch_cost(const std::string& arch);

// A planned experiment: its runs, and how to turn their results into a section.
struct Experiment {
  std::string name;
  std::vector<RunSpec> runs;
  std::function<ExperimentReport(const std::vector<RunResult>&)> report;
  // Set for a closing section without runs of its own: built from the
  // sections before it instead of report.
  std::function<ExperimentReport(const std::vector<ExperimentReport>&)> summarize;
};

// The experiments, in report order (benefits.hpp lists them), for the given context.
std::vector<std::string> all_experiment_names();
Experiment plan_experiment(const std::string& name, const LabContext& context);

// The 784-w1-w2-...-10 MLP in PyTorch notation: hidden layers of the given
// widths, activation text ("ReLU()", "Sigmoid()", ...), BN between linear and
// activation (bias=False before BN), optional Dropout(p) after each activation.
std::string mlp_arch(const std::vector<int>& widths, const std::string& activation, bool with_bn,
                     double dropout = 0.0);

}  // namespace bnlab::lab
