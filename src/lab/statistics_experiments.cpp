// Experiment 4 of issue 15, batch size and the statistics (see
// statistics_experiments.hpp): each section plans its runs, measures after
// or during training what the statistics do, and reports with a verdict by
// the rules of bnlab/lab/statistics_verdicts.hpp.
#include "statistics_experiments.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "bnlab/lab/chart.hpp"
#include "bnlab/lab/statistics_verdicts.hpp"
#include "bnlab/train/precise_bn.hpp"
#include "bnlab/train/trainer.hpp"
#include "experiment_parts.hpp"

namespace bnlab::lab {
namespace {

// --- budgets: --quick is what CI runs, the full run what docs/benefits holds ---

struct StatisticsBudget {
  std::vector<int64_t> virtual_batches;   // (a), at the global batch kGlobalBatch
  int64_t ghost_steps, ghost_eval_every;  // (a)
  int64_t scored_train_examples;          // (a) training examples scored with batch statistics
  int64_t precise_batches;                // K of precise BN, batches of the run's batch size
  int64_t precise_epochs;                 // (b)
  int64_t small_examples;                 // (c) training examples per run
  std::vector<int64_t> small_batches;     // (c) per-batch sizes
};

StatisticsBudget statistics_budget(const LabContext& c) {
  if (c.quick) return {{2, 8, 128}, 60, 30, 1000, 10, 4, 2000, {2, 8}};
  return {{2, 4, 8, 16, 32, 64, 128}, 400, 100, 10000, 100, 8, 30000, {2, 4, 8, 16, 32}};
}

constexpr int64_t kGlobalBatch = 128;
constexpr double kChance = 0.1;

// Every buffer of a network (running statistics, counters), kept to be put back.
class BufferSnapshot {
 public:
  explicit BufferSnapshot(nn::Module& net) : buffers_(net.buffers()) {
    for (const nn::Buffer& b : buffers_) {
      tensors_.push_back(b.tensor ? *b.tensor : Tensor());
      counters_.push_back(b.counter ? *b.counter : 0);
    }
  }
  void restore() {
    for (size_t i = 0; i < buffers_.size(); ++i) {
      if (buffers_[i].tensor) *buffers_[i].tensor = tensors_[i];
      if (buffers_[i].counter) *buffers_[i].counter = counters_[i];
    }
  }

 private:
  std::vector<nn::Buffer> buffers_;
  std::vector<Tensor> tensors_;
  std::vector<int64_t> counters_;
};

/* Accuracy of the first `count` examples in data order, in batches of
   `batch`, with the whole network in training mode: every normalization
   layer uses the statistics of its batch (Ghost BN: of each slice), as in
   training (these networks have no Dropout). Buffers are put back. */
double batch_statistics_accuracy(nn::Sequential& net, const data::Dataset& d, int64_t count,
                                 int64_t batch) {
  BufferSnapshot snapshot(net);
  const bool was_training = net.is_training();
  net.train(true);
  int64_t correct = 0;
  Tensor images;
  for (int64_t begin = 0; begin < count; begin += batch) {
    const int64_t size = std::min(batch, count - begin);
    images.resize({size, d.channels, d.rows, d.cols});
    data::copy_examples(d, begin, size, images.data());
    const Tensor& logits = net.forward(images);
    const int64_t k = logits.numel() / size;
    for (int64_t i = 0; i < size; ++i) {
      const float* row = logits.data() + i * k;
      if (std::max_element(row, row + k) - row == d.labels[static_cast<size_t>(begin + i)])
        ++correct;
    }
  }
  snapshot.restore();
  net.train(was_training);
  return static_cast<double>(correct) / static_cast<double>(count);
}

double number_or_nan(const nlohmann::json& x, const std::string& key) {
  return x.contains(key) && x[key].is_number() ? x[key].get<double>() : NAN;
}

// The y range [nice low, 1] that shows every finite value in `values`.
double nice_floor(const std::vector<double>& values) {
  double low = 1.0;
  for (double v : values)
    if (std::isfinite(v)) low = std::min(low, v);
  return nice_ticks(low, 1.0).front();
}

// The small CNN every convolutional run here trains: two convolutions with a
// normalization layer after each (8 and 16 channels), 784-10 on top.
struct NormChoice {
  std::string name;
  std::string first, second;  // the layer after each convolution (8 and 16 channels)
  int64_t batch_factor = 1;   // examples per step = per-batch size * this
};

std::string small_cnn(const NormChoice& norm) {
  return "Conv2d(1, 8, 3, padding=1, bias=False), " + norm.first +
         ", ReLU(), MaxPool2d(2), Conv2d(8, 16, 3, padding=1, bias=False), " + norm.second +
         ", ReLU(), MaxPool2d(2), Flatten(), Linear(784, 10)";
}

// --- (a) Ghost BN: the normalization batch at a fixed global batch ------------

NormChoice ghost_norm(int64_t virtual_batch) {
  const std::string v = std::to_string(virtual_batch);
  return {"Ghost BN " + v, "GhostBatchNorm2d(8, virtual_batch_size=" + v + ")",
          "GhostBatchNorm2d(16, virtual_batch_size=" + v + ")"};
}

}  // namespace

Experiment ghost_batch_experiment(const LabContext& c) {
  const StatisticsBudget b = statistics_budget(c);
  Experiment e;
  e.name = "ghost_batch";
  const data::Dataset* train = c.train;
  const data::Dataset* test = c.test;
  const uint64_t seed = c.seed;
  for (int64_t v : b.virtual_batches) {
    RunSpec spec;
    spec.label = "normalization batch " + std::to_string(v);
    spec.arch = small_cnn(ghost_norm(v));
    spec.with_bn = true;
    spec.lr = 0.1;
    spec.batch = kGlobalBatch;
    spec.steps = b.ghost_steps;
    spec.eval_every = b.ghost_eval_every;
    spec.seed = c.seed;
    spec.finish = [b, train, test, seed](nn::Sequential& net, RunResult& r) {
      const int64_t scored = std::min(b.scored_train_examples, train->count);
      r.extra["train_batch_statistics"] =
          batch_statistics_accuracy(net, *train, scored, kGlobalBatch);
      r.extra["heldout_batch_statistics"] =
          batch_statistics_accuracy(net, *test, test->count, kGlobalBatch);
      r.extra["heldout_moving_average"] = r.last_test_accuracy;
      train::recalibrate_batch_norm(net, *train, b.precise_batches, kGlobalBatch, seed + 1);
      r.extra["heldout_population"] = train::evaluate(net, *test, 1000, false).accuracy;
    };
    e.runs.push_back(spec);
  }
  e.report = [b](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "ghost_batch";
    r.title = "9. Batch size and the statistics (a): the normalization batch";
    r.claim =
        "A network trained with small normalization batches does worse when it is "
        "evaluated with population statistics than with the batch statistics it was "
        "trained with: the train-test inconsistency grows as the normalization batch "
        "shrinks (Wu & Johnson 2021, \"Rethinking 'Batch' in BatchNorm\").";
    r.setup =
        "The small CNN of the small-batch section with GhostBatchNorm2d(C, virtual_batch_size=v) "
        "for "
        "v = " +
        fmt_g(double(b.virtual_batches.front())) + " to " +
        fmt_g(double(b.virtual_batches.back())) + ", every step a batch of " +
        std::to_string(kGlobalBatch) +
        " (so only the normalization batch changes), plain SGD lr 0.1, " +
        std::to_string(b.ghost_steps) + " steps; then the error on the first " +
        std::to_string(b.scored_train_examples) +
        " training images and on the test set "
        "with batch statistics (training mode, batches of 128 in slices of v), and on the "
        "test set with population statistics: precise BN over " +
        std::to_string(b.precise_batches) +
        " batches of 128 (and, for comparison, the "
        "moving averages). Inconsistency = held-out error with population statistics "
        "minus with batch statistics. " +
        std::to_string(b.virtual_batches.size()) + " runs of the CNN.";
    const std::vector<std::pair<std::string, std::string>> measures = {
        {"train_batch_statistics", "training data, batch statistics"},
        {"heldout_batch_statistics", "held-out, batch statistics"},
        {"heldout_population", "held-out, population statistics (precise BN)"},
        {"heldout_moving_average", "held-out, moving averages"}};
    ChartSpec errors;
    errors.title = "Error by normalization batch (global batch 128)";
    errors.x_label = "log2 of the normalization batch (1: 2 examples, 7: 128)";
    errors.y_label = "error";
    errors.width = 700;
    errors.y_min = 0;
    for (size_t m = 0; m < measures.size(); ++m)
      errors.series.push_back({measures[m].second, {}, {}, default_color(m + 2), m == 3});
    BarChartSpec gap;
    gap.title = "Train-test inconsistency";
    gap.x_label = "normalization batch";
    gap.y_label = "population minus batch statistics, held-out error";
    gap.value_decimals = 3;
    gap.series = {{"inconsistency", {}, kColorWithBn}};
    r.table.header = {"normalization batch"};
    for (const auto& m : measures) r.table.header.push_back("error, " + m.second);
    r.table.header.push_back("inconsistency");
    std::vector<double> inconsistency;
    nlohmann::json per_batch = nlohmann::json::object();
    for (size_t i = 0; i < b.virtual_batches.size(); ++i) {
      const RunResult& run = results[i];
      const int64_t v = b.virtual_batches[i];
      std::vector<std::string> row = {std::to_string(v)};
      nlohmann::json x = nlohmann::json::object();
      for (size_t m = 0; m < measures.size(); ++m) {
        const double error = 1.0 - number_or_nan(run.extra, measures[m].first);
        errors.series[m].xs.push_back(std::log2(static_cast<double>(v)));
        errors.series[m].ys.push_back(error);
        row.push_back(fmt(error));
        x[measures[m].first + "_error"] = error;
      }
      const double d = x["heldout_population_error"].get<double>() -
                       x["heldout_batch_statistics_error"].get<double>();
      inconsistency.push_back(d);
      x["inconsistency"] = d;
      row.push_back(fmt(d));
      r.table.rows.push_back(row);
      gap.categories.push_back(std::to_string(v));
      gap.series[0].values.push_back(d);
      per_batch[std::to_string(v)] = x;
    }
    r.charts = {{line_chart_svg(errors), "Dashed: the moving averages instead of precise BN."},
                {bar_chart_svg(gap),
                 "Above 0: population statistics cost accuracy against the "
                 "batch statistics the network was trained with."}};
    r.verdict = inconsistency_verdict(b.virtual_batches, inconsistency);
    r.notes.push_back(
        "Ghost BN at v normalizes over v x H x W values per channel: at v = 2, 1568 "
        "in the first layer and 392 in the second.");
    for (const RunResult& run : results)
      if (run.diverged) r.notes.push_back(run.label + ": diverged (" + run.divergence + ")");
    r.csv = curves_csv(r.table, results);
    r.results = {{"global_batch", kGlobalBatch},
                 {"normalization_batches", b.virtual_batches},
                 {"per_normalization_batch", per_batch},
                 {"inconsistency", inconsistency},
                 {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- (b) The moving averages against precise BN ------------------------------

namespace {
const std::vector<double> kPreciseLearningRates = {0.1, 1.0};
constexpr int64_t kPreciseBatch = 64;
}  // namespace

Experiment precise_bn_experiment(const LabContext& c) {
  const StatisticsBudget b = statistics_budget(c);
  Experiment e;
  e.name = "precise_bn";
  const data::Dataset* train = c.train;
  const data::Dataset* test = c.test;
  const int64_t steps_per_epoch = std::max<int64_t>(1, c.train->count / kPreciseBatch);
  const uint64_t seed = c.seed;
  for (double lr : kPreciseLearningRates) {
    RunSpec spec;
    spec.label = "lr " + fmt_g(lr);
    spec.arch = mlp_arch({100, 100, 100}, "ReLU()", true);
    spec.with_bn = true;
    spec.lr = lr;
    spec.batch = kPreciseBatch;
    spec.steps = b.precise_epochs * steps_per_epoch;
    spec.eval_every = steps_per_epoch;
    spec.seed = c.seed;
    // After the evaluation with the moving averages: the same network with
    // recalibrated statistics, then the moving averages put back for training.
    spec.probe = [b, train, test, seed](nn::Sequential& net, int64_t step, RunResult& r) {
      BufferSnapshot snapshot(net);
      train::recalibrate_batch_norm(net, *train, b.precise_batches, kPreciseBatch,
                                    seed + static_cast<uint64_t>(step));
      r.extra["precise_test_accuracy"].push_back(train::evaluate(net, *test, 1000, false).accuracy);
      snapshot.restore();
    };
    e.runs.push_back(spec);
  }
  e.report = [b, steps_per_epoch](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "precise_bn";
    r.title = "10. Batch size and the statistics (b): moving averages against precise BN";
    r.claim =
        "The moving averages BN keeps lag the weights; population statistics recomputed "
        "for the current weights (precise BN) give better eval accuracy, most of all "
        "while the weights still move fast (Wu & Johnson 2021).";
    r.setup =
        "784-100-100-100-10 ReLU with BatchNorm1d (momentum 0.1), plain SGD at lr 0.1 and "
        "1, batch 64, " +
        std::to_string(b.precise_epochs) +
        " epochs. After every epoch "
        "the test set in eval mode twice: with the moving averages, and with precise BN "
        "(the population statistics of " +
        std::to_string(b.precise_batches) +
        " training batches of 64, computed on the side: training goes on with the moving "
        "averages). The verdict compares the mean over the epochs. 2 runs of the MLP.";
    std::vector<StatisticsComparison> settings;
    std::vector<double> all;
    for (const RunResult& run : results) {
      const auto& precise = run.extra["precise_test_accuracy"];
      for (size_t i = 1; i < precise.size(); ++i) {
        all.push_back(precise[i].get<double>());
        all.push_back(run.test_accuracy[i]);
      }
    }
    const double y_low = nice_floor(all);
    r.table.header = {"run", "epoch", "moving averages", "precise BN", "difference"};
    nlohmann::json per_run = nlohmann::json::object();
    for (const RunResult& run : results) {
      ChartSpec chart;
      chart.title = run.label + ": test accuracy in eval mode";
      chart.x_label = "epoch";
      chart.y_label = "test accuracy";
      chart.width = 460;
      chart.y_min = y_low;
      chart.y_max = 1;
      Series ema{"moving averages", {}, {}, kColorWithBn, false};
      Series precise{"precise BN", {}, {}, "#ff7f0e", true};
      const nlohmann::json empty = nlohmann::json::array();
      const auto& values =
          run.extra.contains("precise_test_accuracy") ? run.extra["precise_test_accuracy"] : empty;
      double sum_ema = 0, sum_precise = 0;
      int64_t n = 0;
      std::vector<double> epochs, ema_values, precise_values;
      for (size_t i = 1; i < values.size() && i < run.test_accuracy.size(); ++i) {
        const double epoch = static_cast<double>(run.eval_steps[i]) / double(steps_per_epoch);
        const double a = run.test_accuracy[i], p = values[i].get<double>();
        ema.xs.push_back(epoch);
        ema.ys.push_back(a);
        precise.xs.push_back(epoch);
        precise.ys.push_back(p);
        epochs.push_back(epoch);
        ema_values.push_back(a);
        precise_values.push_back(p);
        sum_ema += a;
        sum_precise += p;
        ++n;
        r.table.rows.push_back({run.label, fmt_g(epoch), fmt(a), fmt(p), fmt(p - a)});
      }
      chart.series = {ema, precise};
      r.charts.push_back({line_chart_svg(chart), ""});
      const double mean_ema = n > 0 ? sum_ema / double(n) : NAN;
      const double mean_precise = n > 0 ? sum_precise / double(n) : NAN;
      settings.push_back({run.label, mean_ema, mean_precise});
      per_run[run.label] = {{"epochs", epochs},
                            {"moving_average_accuracy", ema_values},
                            {"precise_accuracy", precise_values},
                            {"mean_moving_average_accuracy", mean_ema},
                            {"mean_precise_accuracy", mean_precise}};
      if (run.diverged) r.notes.push_back(run.label + ": diverged (" + run.divergence + ")");
    }
    r.verdict = precise_bn_verdict(settings, 0.005);
    r.csv = curves_csv(r.table, results);
    r.results = {{"precise_batches", b.precise_batches},
                 {"batch", kPreciseBatch},
                 {"per_run", per_run},
                 {"margin", 0.005},
                 {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- (c) Small batches: BN and its remedies -----------------------------------

namespace {

const std::vector<NormChoice>& norm_choices() {
  static const std::vector<NormChoice> choices = {
      {"BN", "BatchNorm2d(8)", "BatchNorm2d(16)", 1},
      {"BatchRenorm", "BatchRenorm2d(8)", "BatchRenorm2d(16)", 1},
      {"GroupNorm", "GroupNorm(4, 8)", "GroupNorm(4, 16)", 1},
      {"LayerNorm", "LayerNorm((8, 28, 28))", "LayerNorm((16, 14, 14))", 1},
      {"BN over 4 (SyncBN)", "BatchNorm2d(8)", "BatchNorm2d(16)", 4},
      // SyncBN's pair: the same 4 batches per step, each normalized on its own
      // (4 processes without SyncBN), so only the statistics differ.
      {"BN per batch of 4 (no sync)", "GhostBatchNorm2d(8, virtual_batch_size={b})",
       "GhostBatchNorm2d(16, virtual_batch_size={b})", 4}};
  return choices;
}

// The choice at one per-batch size: "{b}" in a layer's text becomes the size.
NormChoice at_batch(NormChoice norm, int64_t batch) {
  for (std::string* text : {&norm.first, &norm.second})
    for (size_t at = text->find("{b}"); at != std::string::npos; at = text->find("{b}"))
      text->replace(at, 3, std::to_string(batch));
  return norm;
}

std::string small_label(const NormChoice& norm, int64_t batch) {
  return norm.name + ", batch " + std::to_string(batch);
}

}  // namespace

Experiment small_batch_experiment(const LabContext& c) {
  const StatisticsBudget b = statistics_budget(c);
  Experiment e;
  e.name = "small_batch";
  for (const NormChoice& norm : norm_choices())
    for (int64_t batch : b.small_batches) {
      RunSpec spec;
      spec.label = small_label(norm, batch);
      spec.arch = small_cnn(at_batch(norm, batch));
      spec.with_bn = true;
      spec.batch = batch * norm.batch_factor;
      spec.lr = 0.1 * static_cast<double>(spec.batch) / 32.0;  // linear scaling (Goyal et al. 2017)
      spec.steps = std::max<int64_t>(1, b.small_examples / spec.batch);
      spec.eval_every = std::max<int64_t>(1, spec.steps / 2);
      spec.seed = c.seed;
      e.runs.push_back(spec);
    }
  e.report = [b](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "small_batch";
    r.title = "11. Batch size and the statistics (c): small batches and the remedies";
    r.claim =
        "BN's accuracy falls when each batch is small, because its statistics get noisy; "
        "GroupNorm and LayerNorm do not depend on the batch, Batch Renormalization "
        "corrects the batch statistics towards the population's, and SyncBN computes "
        "them over the batches of several processes (Wu & He 2018; Ioffe 2017).";
    const int64_t small = b.small_batches.front(), large = b.small_batches.back();
    r.setup =
        "A small CNN (Conv2d 1-8, norm, ReLU, MaxPool, Conv2d 8-16, norm, ReLU, MaxPool, "
        "Linear 784-10) with BatchNorm2d, BatchRenorm2d (r_max 3, d_max 5 from the first "
        "step), GroupNorm(4 groups), LayerNorm over (C, H, W), or, as 4 data-parallel "
        "processes train (each step takes 4 batches), BatchNorm2d over the 4 batches at "
        "once (what SyncBN computes) or over each batch on its own (GhostBatchNorm2d, "
        "what each process computes without SyncBN), at "
        "per-batch sizes " +
        fmt_g(double(small)) + " to " + fmt_g(double(large)) + "; each run sees " +
        std::to_string(b.small_examples) +
        " training images with lr 0.1 x (examples per step) / 32; final test accuracy in "
        "eval mode (the moving averages for BN). " +
        std::to_string(norm_choices().size() * b.small_batches.size()) + " runs of the CNN.";
    ChartSpec curves;
    curves.title = "Final test accuracy by per-batch size";
    curves.x_label = "log2 of the per-batch size";
    curves.y_label = "test accuracy";
    curves.width = 700;
    BarChartSpec drops;
    drops.title = "Drop from batch " + std::to_string(large) + " to batch " + std::to_string(small);
    drops.y_label = "test accuracy lost";
    drops.value_decimals = 3;
    drops.series = {{"accuracy drop", {}, kColorWithoutBn}};
    r.table.header = {"normalization"};
    for (int64_t batch : b.small_batches)
      r.table.header.push_back("batch " + std::to_string(batch));
    r.table.header.push_back("drop");
    nlohmann::json accuracy = nlohmann::json::object();
    std::vector<double> all;
    auto final_accuracy = [&](const NormChoice& norm, int64_t batch) -> double {
      for (const RunResult& run : results)
        if (run.label == small_label(norm, batch))
          return run.diverged ? kChance : run.last_test_accuracy;
      return NAN;
    };
    std::string at_small;
    for (size_t k = 0; k < norm_choices().size(); ++k) {
      const NormChoice& norm = norm_choices()[k];
      Series s{norm.name, {}, {}, default_color(k), norm.batch_factor > 1};
      std::vector<std::string> row = {norm.name};
      std::vector<double> values;
      for (int64_t batch : b.small_batches) {
        const double a = final_accuracy(norm, batch);
        s.xs.push_back(std::log2(static_cast<double>(batch)));
        s.ys.push_back(a);
        values.push_back(a);
        all.push_back(a);
        row.push_back(fmt(a));
      }
      const double drop = values.back() - values.front();
      row.push_back(fmt(drop));
      r.table.rows.push_back(row);
      curves.series.push_back(s);
      drops.categories.push_back(norm.name);
      drops.series[0].values.push_back(drop);
      accuracy[norm.name] = {
          {"batches", b.small_batches}, {"final_test_accuracy", values}, {"drop", drop}};
      at_small += (at_small.empty() ? "" : ", ") + norm.name + " " + fmt(values.front());
    }
    curves.y_min = nice_floor(all);
    curves.y_max = 1;
    r.charts = {{line_chart_svg(curves),
                 "Dashed: 4 batches per step (4 processes), "
                 "normalized together (SyncBN) or each on its own."},
                {bar_chart_svg(drops),
                 "Accuracy at the largest per-batch size minus at the "
                 "smallest."}};
    const NormChoice& bn = norm_choices()[0];
    const NormChoice& gn = norm_choices()[2];
    r.verdict =
        small_batch_verdict(small, large, final_accuracy(bn, small), final_accuracy(bn, large),
                            final_accuracy(gn, small), final_accuracy(gn, large), kChance);
    r.notes.push_back("Final test accuracy at per-batch size " + std::to_string(small) + ": " +
                      at_small + ".");
    // SyncBN against its pair, at the same steps and examples: only the statistics differ.
    const NormChoice& sync = norm_choices()[4];
    const NormChoice& per_process = norm_choices()[5];
    std::string pairs;
    for (int64_t batch : b.small_batches)
      pairs += (pairs.empty() ? "" : "; ") + std::to_string(batch) + ": " +
               fmt(final_accuracy(sync, batch)) + " vs " + fmt(final_accuracy(per_process, batch));
    r.notes.push_back(
        "4 processes, SyncBN against each process normalizing its own batch, by "
        "per-batch size: " +
        pairs + ".");
    r.notes.push_back(
        "Each BN here normalizes over b x H x W values per channel (at b = 2: 1568 "
        "in the first layer, 392 in the second), far more than b alone: a CNN's "
        "small-batch regime needs small maps as well as small batches.");
    for (const RunResult& run : results)
      if (run.diverged)
        r.notes.push_back(run.label + ": diverged (" + run.divergence + "), counted as chance");
    r.csv = curves_csv(r.table, results);
    r.results = {{"per_batch_sizes", b.small_batches},
                 {"examples_per_run", b.small_examples},
                 {"chance", kChance},
                 {"final_test_accuracy", accuracy},
                 {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

}  // namespace bnlab::lab
