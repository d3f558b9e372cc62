// The benefits lab (issue 5): every claim about batch normalization measured
// with and without BN on the same data and the same seeds, written as one
// HTML report with charts, results.json and a CSV per experiment.
//
// Experiments (the --only names):
//   convergence      the tutorial's MLP: steps to a fixed test accuracy
//   learning_rate    784-100-100-100-10, ReLU and sigmoid, lr 0.01 / 0.1 / 1 / 2
//   initialization   weights from N(0, 0.05) and N(0, 5)
//   activations      ReLU, LeakyReLU, Tanh, Sigmoid
//   depth            2, 5, 10, 20 hidden layers of 100, sigmoid and ReLU
//   regularization   train-test accuracy gap, with and without Dropout(0.5)
//   covariate_shift  the paper's Figure 1: 15/50/85th percentiles of a
//                    sigmoid's input in the last hidden layer over training
//   inference_mode   eval mode against batch statistics at inference
//   ghost_batch      Ghost BN's normalization batch 2..128 at global batch
//                    128: error with batch and population statistics
//   precise_bn       eval accuracy with the moving averages and with precise BN
//   small_batch      BN, BatchRenorm, GroupNorm, LayerNorm, BN over 4 batches
//                    at per-batch sizes 2..32 on a small CNN
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bnlab/lab/report.hpp"

namespace bnlab::lab {

struct BenefitsOptions {
  bool quick = false;                     // a slice of the data, few hundred steps (CI)
  std::string out_dir = "benefits_report";
  std::string data_dir;                   // empty: data::default_data_dir()
  uint64_t seed = 0;
  std::vector<std::string> only;          // experiment names; empty: all
  int threads = 0;                        // <= 0: the default thread count
  // One line per finished run with the time left; default: to stderr.
  std::function<void(const std::string&)> log;
};

std::vector<std::string> experiment_names();

// Runs the experiments, writes the report into options.out_dir and returns
// the path of report.html. Throws bnlab::Error for an unknown --only name
// (listing the names), a missing data set, or a folder it cannot write.
std::string run_benefits(const BenefitsOptions& options);

// --- Verdict rules (pure functions of the numbers; tested on their own) ---

// One comparison of a measure where higher is better (accuracy, or a
// negated gap or drift). NaN means the run failed (diverged): it loses
// against any number, and two failures tie.
struct Comparison {
  std::string label;  // "sigmoid, lr 1"
  double without_bn;
  double with_bn;
};

struct PairTally {
  int wins = 0, ties = 0, losses = 0;  // from BN's side; |difference| < margin is a tie
};

PairTally tally(const std::vector<Comparison>& comparisons, double margin);

/* The rule for a claim "BN does better on <measure>":
     supported      BN better (by >= margin) in at least half, worse in none
     not supported  BN better in none, or worse more often than better
     mixed          anything else
   The reason names the counts, the rule, and the comparison with the largest
   difference (the deciding figure). `format` prints a value (default %.3f);
   NaN is printed as `failed_name`. */
VerdictResult paired_verdict(const std::vector<Comparison>& comparisons, double margin,
                             const std::string& measure, const std::string& failed_name = "diverged",
                             const std::function<std::string(double)>& format = nullptr);

/* Convergence: steps to reach `target` test accuracy (-1: not reached within
   steps_run). ratio = steps_with / steps_without.
     supported      both reached and ratio <= 0.8, or only BN reached
     not supported  both reached and ratio >= 1.25, or only the plain net reached
     mixed          0.8 < ratio < 1.25 (no clear difference), or neither reached */
VerdictResult convergence_verdict(int64_t steps_without, int64_t steps_with, int64_t steps_run,
                                  double target);

/* "BN makes an activation train about as well as `reference`": each
   comparison holds the shortfall against the reference in the same network
   (the reference's accuracy minus the activation's; NaN: diverged), without
   and with BN. Per activation: a win when with BN it is within `tolerance`
   and without BN it is not (BN made it viable), a tie when it is within
   tolerance either way; short with BN, it is a partial when BN narrowed the
   shortfall by >= tolerance, a loss otherwise.
     supported      wins in at least half, no partial and no loss
     not supported  no win and no partial
     mixed          anything else (e.g. BN narrows the gap but does not close it) */
VerdictResult about_as_well_verdict(const std::vector<Comparison>& shortfalls, double tolerance,
                                    const std::string& reference);

/* Inference mode: BN with population statistics (eval) against batch
   statistics at batch 64, and the single-example mistake (every input
   normalises to beta: constant output).
     supported      eval >= train64 - 0.01 and single-example <= 2/num_classes
     not supported  neither holds
     mixed          one holds */
VerdictResult inference_verdict(double eval_accuracy, double train_mode_64_accuracy,
                                double single_example_accuracy, int num_classes);

// The q-th percentile (q in [0, 100]) with linear interpolation between
// order statistics (numpy's default); NaN for an empty set. Reorders values.
double percentile(std::vector<double>& values, double q);

// The first step whose accuracy is >= target, or -1.
int64_t first_step_reaching(const std::vector<int64_t>& steps, const std::vector<double>& accuracy,
                            double target);

}  // namespace bnlab::lab
