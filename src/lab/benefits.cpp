// run_benefits: load the data, plan the selected experiments, run every
// training run with a progress line and an estimate of the time left, and
// write the report (see include/bnlab/lab/benefits.hpp).
#include "bnlab/lab/benefits.hpp"

#include <chrono>
#include <cstdio>
#include <iostream>

#include "bnlab/data/idx.hpp"
#include "bnlab/error.hpp"
#include "bnlab/nn/precision.hpp"
#include "bnlab/threading.hpp"
#include "runner.hpp"

namespace bnlab::lab {
namespace {

// The quick run's slice: enough for every experiment to show its effect in a
// few hundred steps, small enough for CI (< 2 minutes on 2 cores).
constexpr int64_t kQuickTrain = 10000, kQuickTest = 2000;

std::string clock_text(double seconds) {
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

/* Cost of a run in multiply-adds: training steps cost about three passes
   (forward, backward for inputs and for weights) over batch examples, each
   evaluation one pass over the test set, the optional training-set accuracy
   one pass over the training set. */
double run_cost(const RunSpec& spec, double per_example, int64_t test_count, int64_t train_count) {
  double evaluations = static_cast<double>(spec.steps / spec.eval_every + 1);
  double cost = 3.0 * static_cast<double>(spec.batch * spec.steps) + evaluations * test_count;
  if (spec.train_accuracy) cost += static_cast<double>(train_count);
  return cost * per_example;
}

}  // namespace

std::vector<std::string> experiment_names() { return all_experiment_names(); }

std::string run_benefits(const BenefitsOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  auto log = options.log ? options.log : [](const std::string& line) { std::cerr << line << std::endl; };
  const std::vector<std::string> names = all_experiment_names();
  std::vector<std::string> selected;
  if (options.only.empty()) {
    selected = names;
  } else {
    for (const auto& name : names)  // report order, whatever the order of --only
      for (const auto& wanted : options.only)
        if (wanted == name) selected.push_back(name);
    for (const auto& wanted : options.only)
      if (std::find(names.begin(), names.end(), wanted) == names.end()) {
        std::string list;
        for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
        throw Error("--only: unknown experiment \"" + wanted + "\"; the experiments are " + list);
      }
  }
  if (options.threads > 0) set_num_threads(options.threads);

  const std::string data_dir = options.data_dir.empty() ? data::default_data_dir() : options.data_dir;
  data::Split split = data::load_split(data_dir);
  const int64_t full_train = split.train.count, full_test = split.test.count;
  if (options.quick) {
    split.train = data::head(split.train, kQuickTrain);
    split.test = data::head(split.test, kQuickTest);
  }
  LabContext context;
  context.train = &split.train;
  context.test = &split.test;
  context.quick = options.quick;
  context.seed = options.seed;

  std::vector<Experiment> experiments;
  double total_cost = 0;
  size_t total_runs = 0;
  std::vector<std::vector<double>> costs;
  for (const auto& name : selected) {
    experiments.push_back(plan_experiment(name, context));
    costs.emplace_back();
    for (const auto& spec : experiments.back().runs) {
      double c = run_cost(spec, arch_cost(spec.arch), split.test.count, split.train.count);
      costs.back().push_back(c);
      total_cost += c;
      ++total_runs;
    }
  }
  log("bnlab benefits: " + std::to_string(experiments.size()) + " experiments, " +
      std::to_string(total_runs) + " runs on " + std::to_string(split.train.count) + " training / " +
      std::to_string(split.test.count) + " test images, " + std::to_string(num_threads()) +
      " threads" + (options.quick ? " (quick)" : ""));

  Report report;
  double done_cost = 0;
  size_t done_runs = 0;
  for (size_t e = 0; e < experiments.size(); ++e) {
    const Experiment& experiment = experiments[e];
    const auto experiment_start = std::chrono::steady_clock::now();
    std::vector<RunResult> results;
    for (size_t i = 0; i < experiment.runs.size(); ++i) {
      results.push_back(train_run(experiment.runs[i], context));
      const RunResult& r = results.back();
      done_cost += costs[e][i];
      ++done_runs;
      double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      double left = done_cost > 0 ? elapsed * (total_cost - done_cost) / done_cost : 0;
      char line[400];
      std::snprintf(line, sizeof line, "[%3zu/%zu] %s: %s: %s (%.1f s) | %s elapsed, about %s left",
                    done_runs, total_runs, experiment.name.c_str(), r.label.c_str(),
                    r.diverged ? ("diverged at step " + std::to_string(r.diverged_at)).c_str()
                               : ("test accuracy " + std::to_string(r.final_test_accuracy).substr(0, 5)).c_str(),
                    r.seconds, clock_text(elapsed).c_str(), clock_text(left).c_str());
      log(line);
    }
    ExperimentReport section =
        experiment.summarize ? experiment.summarize(report.experiments) : experiment.report(results);
    section.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - experiment_start).count();
    log("  " + section.title + ": " + verdict_name(section.verdict.verdict) + ": " + section.verdict.reason);
    report.experiments.push_back(std::move(section));
  }

  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char subtitle[1000];
  std::snprintf(subtitle, sizeof subtitle,
                "Data: %s, %lld training and %lld test images%s. Seed %llu, %d threads, %s, %s run, "
                "%.1f minutes. Every experiment trains the same network with and without batch "
                "normalization on the same batches in the same order. A run's final test "
                "accuracy is the mean of its last %d evaluations.",
                data_dir.c_str(), static_cast<long long>(split.train.count),
                static_cast<long long>(split.test.count),
                options.quick ? " (a slice, --quick)" : "",
                static_cast<unsigned long long>(options.seed), num_threads(),
                nn::precision_name(nn::compute_precision()).c_str(), options.quick ? "quick" : "full", seconds / 60.0, kFinalEvaluations);
  report.subtitle = subtitle;
  report.settings = {{"data_dir", data_dir},
                     {"train_images", split.train.count},
                     {"test_images", split.test.count},
                     {"data_set_train_images", full_train},
                     {"data_set_test_images", full_test},
                     {"quick", options.quick},
                     {"seed", options.seed},
                     {"threads", num_threads()},
                     {"precision", nn::precision_name(nn::compute_precision())},
                     {"experiments", selected},
                     {"seconds", seconds}};
  std::string path = write_report(report, options.out_dir);
  log("bnlab benefits: done in " + clock_text(seconds) + "; report: " + path);
  return path;
}

}  // namespace bnlab::lab
