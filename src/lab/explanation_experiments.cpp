// The lab's second part (issue 15): not only whether BN helps, but whether
// the seed's explanation, that it helps by reducing internal covariate shift,
// holds. Experiments 12-14 test the explanation (Santurkar et al. 2018),
// 15 maps learning rate against depth (Bjorck et al. 2018), and the closing
// section sets every benefit's verdict beside the explanation's.
#include "explanation_experiments.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <memory>
#include <set>

#include "bnlab/error.hpp"
#include "bnlab/lab/explanation_verdicts.hpp"
#include "experiment_parts.hpp"
#include "gradient_probes.hpp"
#include "shift_noise.hpp"
#include "shift_probe.hpp"

namespace bnlab::lab {
namespace {

// --- budgets: --quick keeps the whole report under 2 minutes, the full run under 30 ---

struct ExplanationBudget {
  int64_t steps;       // experiments 12-14
  int64_t eval_every;  // also how often the probes measure
  int64_t grid_steps;  // experiment 15, per cell
  int64_t grid_eval_every;
};

ExplanationBudget explanation_budget(const LabContext& c) {
  if (c.quick) return {1000, 50, 150, 25};
  return {3000, 150, 1500, 100};
}

const std::vector<int> kThreeBy100 = {100, 100, 100};

// The first min(1000, count) test images: the fixed batch the probes read.
std::shared_ptr<Tensor> fixed_test_batch(const data::Dataset& test) {
  int64_t m = std::min<int64_t>(1000, test.count);
  auto batch = std::make_shared<Tensor>(Shape{m, test.channels, test.rows, test.cols});
  data::copy_examples(test, 0, m, batch->data());
  return batch;
}

// A training batch of 64 for the gradient probes, a different one at each
// checkpoint (the probe's G and G' share it).
struct ProbeBatch {
  Tensor images;
  std::vector<int32_t> labels;
};

ProbeBatch training_batch(const data::Dataset& train, int64_t checkpoint) {
  const int64_t size = std::min<int64_t>(64, train.count);
  const int64_t begin = (checkpoint * size) % std::max<int64_t>(1, train.count - size + 1);
  ProbeBatch b{Tensor(Shape{size, train.channels, train.rows, train.cols}),
               std::vector<int32_t>(train.labels.begin() + begin, train.labels.begin() + begin + size)};
  data::copy_examples(train, begin, size, b.images.data());
  return b;
}

double median_of(std::vector<double> values) {
  std::vector<double> finite;
  for (double v : values)
    if (!std::isnan(v)) finite.push_back(v);
  return percentile(finite, 50);
}

const char* verdict_word(Verdict v) { return verdict_name(v); }

// --- 12. Noisy BN: is it the covariate shift? ---------------------------------

const double kNoisyLr = 1.0;

Experiment noisy_bn(const LabContext& c) {
  ExplanationBudget b = explanation_budget(c);
  Experiment e;
  e.name = "noisy_bn";
  auto batch = fixed_test_batch(*c.test);
  auto records = std::make_shared<std::array<ShiftRecord, 3>>();
  const std::array<std::string, 3> labels = {"without BN", "with BN", "with noisy BN"};
  for (int k = 0; k < 3; ++k) {
    const bool with_bn = k > 0;
    RunSpec spec;
    spec.label = labels[size_t(k)];
    spec.arch = mlp_arch(kThreeBy100, "Sigmoid()", with_bn);
    spec.with_bn = with_bn;
    spec.lr = kNoisyLr;
    spec.steps = b.steps;
    spec.eval_every = b.eval_every;
    spec.seed = c.seed;
    if (k == 2) {
      uint64_t noise_seed = c.seed * 7919 + 17;
      spec.prepare = [noise_seed](nn::Sequential& net) { add_noise_after_batch_norms(net, noise_seed); };
    }
    spec.probe = [batch, records, k](nn::Sequential& net, int64_t step, RunResult&) {
      probe_shift(net, *batch, (*records)[size_t(k)], step);
    };
    e.runs.push_back(spec);
  }
  const int64_t m = batch->size(0);
  e.report = [records, labels, b, m](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "noisy_bn";
    r.title = "12. Is it the covariate shift? Noisy BN (Santurkar et al. 2018)";
    r.claim = "The seed's explanation: BN helps because it reduces internal covariate shift. If "
              "so, putting the shift back after BN should take BN's advantage away.";
    char noise[300];
    std::snprintf(noise, sizeof noise,
                  "y = s x + m + %.2f z with, per unit and redrawn every step, m ~ U(-%g, %g) and "
                  "s ~ U(1, %g), z ~ N(0, 1) per activation (eval mode: y = %.1f x)",
                  NonStationaryNoise::kJitter, NonStationaryNoise::kMaxShift,
                  NonStationaryNoise::kMaxShift, NonStationaryNoise::kMaxScale,
                  (1 + NonStationaryNoise::kMaxScale) / 2);
    r.setup = "784-100-100-100-10 with sigmoid, plain SGD lr " + fmt_g(kNoisyLr) + ", batch 64, " +
              std::to_string(b.steps) + " steps, three networks: without BN, with BN, and with BN "
              "followed by non-stationary noise, " + noise + ". Drift is measured exactly as in "
              "experiment 7 (the same code): every " + std::to_string(b.eval_every) +
              " steps the first " + std::to_string(m) + " test images go through the network in "
              "training mode and the input of each sigmoid in the last hidden layer is read (for "
              "the noisy network: after the noise); drift = median over the 100 units of the mean "
              "distance of the 15/50/85th percentiles from where they end.";
    double drift[3];
    for (int k = 0; k < 3; ++k) drift[k] = median_drift((*records)[size_t(k)]);
    // One y range for the three band charts, so the eye compares them.
    double y_low = INFINITY, y_high = -INFINITY;
    for (const ShiftRecord& rec : *records)
      for (const auto& per_unit : rec.quantiles)
        if (!per_unit.empty() && std::isfinite(per_unit[0][0]) && std::isfinite(per_unit[0][2])) {
          y_low = std::min(y_low, per_unit[0][0]);
          y_high = std::max(y_high, per_unit[0][2]);
        }
    const char* colors[3] = {kColorWithoutBn, kColorWithBn, "#9467bd"};
    nlohmann::json shift_json = nlohmann::json::object();
    r.table.header = {"network", "median drift over 100 units", "final test accuracy"};
    for (int k = 0; k < 3; ++k) {
      const ShiftRecord& rec = (*records)[size_t(k)];
      BandSpec band;
      band.title = labels[size_t(k)] + ": input to sigmoid unit 0";
      band.x_label = "training step";
      band.y_label = "input to the sigmoid";
      band.color = colors[k];
      if (y_low < y_high) {
        std::vector<double> ticks = nice_ticks(y_low, y_high);
        band.y_min = ticks.front();
        band.y_max = ticks.back();
      }
      for (size_t t = 0; t < rec.steps.size(); ++t) {
        band.xs.push_back(static_cast<double>(rec.steps[t]));
        band.low.push_back(rec.quantiles[t][0][0]);
        band.mid.push_back(rec.quantiles[t][0][1]);
        band.high.push_back(rec.quantiles[t][0][2]);
      }
      r.charts.push_back({band_chart_svg(band), labels[size_t(k)] + ": 15th, 50th and 85th percentile "
                                                                    "of unit 0's input over training."});
      shift_json[labels[size_t(k)]] = {{"steps", rec.steps}, {"q15", band.low}, {"q50", band.mid},
                                       {"q85", band.high},   {"median_drift", drift[k]}};
      r.table.rows.push_back({labels[size_t(k)], fmt(drift[k]), fmt(results[size_t(k)].final_test_accuracy)});
    }
    BarChartSpec bars;
    bars.title = "Median drift of the last hidden layer's inputs";
    bars.y_label = "drift (sigmoid input units)";
    bars.categories = {labels.begin(), labels.end()};
    bars.series = {{"median drift", {drift[0], drift[1], drift[2]}, "#7f7f7f"}};
    bars.value_decimals = 3;
    ChartSpec acc = accuracy_chart("Test accuracy");
    for (int k = 0; k < 3; ++k) acc.series.push_back(accuracy_series(results[size_t(k)], labels[size_t(k)], colors[k]));
    r.charts.push_back({bar_chart_svg(bars), "More drift is more internal covariate shift."});
    r.charts.push_back({line_chart_svg(acc), "Eval mode; the noisy network's noise is replaced by its mean map."});
    NoisyBnFigures figures{drift[0],
                           drift[1],
                           drift[2],
                           results[0].final_test_accuracy,
                           results[1].final_test_accuracy,
                           results[2].final_test_accuracy};
    const double margin = 0.02;
    r.verdict = noisy_bn_verdict(figures, margin);
    r.notes.push_back("The verdict is on the explanation, not on BN: \"not supported\" means BN "
                      "kept its benefit although the shift came back.");
    note_divergences(r, results);
    r.csv = curves_csv(r.table, results);
    r.results = {{"margin", margin},
                 {"drift", {{"without_bn", drift[0]}, {"with_bn", drift[1]}, {"noisy_bn", drift[2]}}},
                 {"final_test_accuracy",
                  {{"without_bn", figures.accuracy_without},
                   {"with_bn", figures.accuracy_with},
                   {"noisy_bn", figures.accuracy_noisy}}},
                 {"shift", shift_json},
                 {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- 13. Internal covariate shift by its effect on the gradient ---------------

struct GradientRecord {
  std::vector<int64_t> steps;
  std::vector<std::vector<LayerShift>> layers;  // [checkpoint][layer after the first]
};

struct Depth {
  std::string name;  // "shallow (3 hidden)"
  int hidden;
};
const std::vector<Depth> kGradientDepths = {{"shallow (3 hidden)", 3}, {"deep (6 hidden)", 6}};
const double kGradientLr = 0.1;

// Per checkpoint, the median over layers of one measure.
std::vector<double> per_checkpoint(const GradientRecord& rec, double LayerShift::*field,
                                   bool relative = false) {
  std::vector<double> out;
  for (const auto& layers : rec.layers) {
    std::vector<double> values;
    for (const LayerShift& s : layers)
      values.push_back(relative ? s.difference_norm / s.gradient_norm : s.*field);
    out.push_back(median_of(values));
  }
  return out;
}

Experiment gradient_shift_experiment(const LabContext& c) {
  ExplanationBudget b = explanation_budget(c);
  Experiment e;
  e.name = "gradient_shift";
  auto records = std::make_shared<std::map<std::string, GradientRecord>>();
  const data::Dataset* train = c.train;
  for (const Depth& d : kGradientDepths)
    for (bool with_bn : {false, true}) {
      RunSpec spec;
      spec.label = with_bn_label(d.name, with_bn);
      spec.arch = mlp_arch(std::vector<int>(size_t(d.hidden), 100), "Tanh()", with_bn);
      spec.with_bn = with_bn;
      spec.lr = kGradientLr;
      spec.steps = b.steps;
      spec.eval_every = b.eval_every;
      spec.seed = c.seed;
      const std::string label = spec.label;
      const int64_t every = b.eval_every;
      spec.probe = [records, label, train, every](nn::Sequential& net, int64_t step, RunResult&) {
        ProbeBatch batch = training_batch(*train, step / every);
        GradientRecord& rec = (*records)[label];
        rec.steps.push_back(step);
        rec.layers.push_back(gradient_shift(net, batch.images, batch.labels.data(), kGradientLr));
      };
      e.runs.push_back(spec);
    }
  e.report = [records, b](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "gradient_shift";
    r.title = "13. Internal covariate shift, measured by its effect on the gradient";
    r.claim = "BN reduces internal covariate shift in the sense that matters for optimisation "
              "(Santurkar et al. 2018, Definition 2.1): a layer's gradient changes less when the "
              "layers before it take their step.";
    r.setup = "784-100x" + std::to_string(kGradientDepths[0].hidden) + "-10 (shallow) and 784-100x" +
              std::to_string(kGradientDepths[1].hidden) + "-10 (deep) with tanh, plain SGD lr " +
              fmt_g(kGradientLr) + ", batch 64, " + std::to_string(b.steps) + " steps. Every " +
              std::to_string(b.eval_every) + " steps, on one training batch of 64: G = the "
              "gradient of each Linear layer's weight (after the first), G' = the same gradient "
              "after every layer before it took its SGD step (same batch, later layers "
              "unchanged); ||G - G'|| and cos(G, G'), median over the layers. The verdict "
              "compares cos(G, G'), which the gradient's scale does not affect (BN changes that "
              "scale), median over layers and checkpoints; closer to 1 is less shift.";
    std::vector<Comparison> cosines;
    nlohmann::json shift_json = nlohmann::json::object();
    r.table.header = {"network", "BN", "median cos(G, G')", "median ||G - G'||",
                      "median ||G - G'|| / ||G||", "final test accuracy"};
    for (const Depth& d : kGradientDepths) {
      ChartSpec cos_chart;
      cos_chart.title = d.name + ": cos(G, G')";
      cos_chart.x_label = "training step";
      cos_chart.y_label = "cos(G, G'), median over layers";
      ChartSpec diff_chart = cos_chart;
      diff_chart.title = d.name + ": ||G - G'||";
      diff_chart.y_label = "||G - G'||, median over layers (log)";
      diff_chart.log_y = true;
      double cosine[2];
      for (bool with_bn : {false, true}) {
        const std::string label = with_bn_label(d.name, with_bn);
        const RunResult& run = find(results, label);
        const GradientRecord& rec = (*records)[label];
        std::vector<double> steps = to_double(rec.steps);
        std::vector<double> cos_t = per_checkpoint(rec, &LayerShift::cosine);
        std::vector<double> diff_t = per_checkpoint(rec, &LayerShift::difference_norm);
        std::vector<double> rel_t = per_checkpoint(rec, &LayerShift::difference_norm, true);
        cos_chart.series.push_back({bn_name(with_bn), steps, cos_t, bn_color(with_bn)});
        diff_chart.series.push_back({bn_name(with_bn), steps, diff_t, bn_color(with_bn)});
        std::vector<double> all_cos;
        for (const auto& layers : rec.layers)
          for (const LayerShift& s : layers) all_cos.push_back(s.cosine);
        cosine[with_bn] = median_of(all_cos);
        double diff = median_of(diff_t), rel = median_of(rel_t);
        r.table.rows.push_back({d.name, with_bn ? "yes" : "no", fmt(cosine[with_bn], 4), fmt(diff, 5),
                                fmt(rel, 4), fmt(run.final_test_accuracy)});
        shift_json[label] = {{"steps", rec.steps},
                             {"cosine_median_over_layers", cos_t},
                             {"difference_norm_median_over_layers", diff_t},
                             {"relative_difference_median_over_layers", rel_t},
                             {"median_cosine", cosine[with_bn]},
                             {"median_difference_norm", diff},
                             {"median_relative_difference", rel}};
      }
      cosines.push_back({d.name, cosine[0], cosine[1]});
      r.charts.push_back({line_chart_svg(cos_chart), ""});
      r.charts.push_back({line_chart_svg(diff_chart), ""});
    }
    const double margin = 0.02;
    r.verdict = paired_verdict(cosines, margin, "cos(G, G') (higher: less shift)", "no gradient",
                               [](double v) { return fmt(v, 4); });
    r.notes.push_back("Santurkar et al. found that BN does not reduce this shift, and often "
                      "increases it, in VGG and deep linear networks.");
    r.csv = curves_csv(r.table, results);
    r.results = {{"margin", margin}, {"lr", kGradientLr}, {"shift", shift_json}, {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- 14. The loss landscape along the gradient (the paper's Figure 4) -------

const std::vector<double> kEtaFactors = {0.05, 0.1, 0.25, 0.5, 1, 2, 4};
const double kLandscapeLr = 0.1;
const std::vector<int> kLandscapeWidths = {100, 100, 100};

struct LandscapeRecord {
  std::vector<int64_t> steps;
  std::vector<LandscapeSample> samples;
};

Experiment landscape(const LabContext& c) {
  ExplanationBudget b = explanation_budget(c);
  Experiment e;
  e.name = "landscape";
  auto records = std::make_shared<std::array<LandscapeRecord, 2>>();
  const data::Dataset* train = c.train;
  std::vector<double> etas;
  for (double f : kEtaFactors) etas.push_back(f * kLandscapeLr);
  for (bool with_bn : {false, true}) {
    RunSpec spec;
    spec.label = bn_name(with_bn);
    spec.arch = mlp_arch(kLandscapeWidths, "ReLU()", with_bn);
    spec.with_bn = with_bn;
    spec.lr = kLandscapeLr;
    spec.steps = b.steps;
    spec.eval_every = b.eval_every;
    spec.seed = c.seed;
    const int64_t every = b.eval_every;
    spec.probe = [records, with_bn, train, every, etas](nn::Sequential& net, int64_t step, RunResult&) {
      ProbeBatch batch = training_batch(*train, step / every);
      LandscapeRecord& rec = (*records)[with_bn];
      rec.steps.push_back(step);
      rec.samples.push_back(landscape_along_gradient(net, batch.images, batch.labels.data(), etas));
    };
    e.runs.push_back(spec);
  }
  e.report = [records, b](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "landscape";
    r.title = "14. The loss landscape (the paper's Figure 4)";
    r.claim = "Santurkar et al.'s alternative explanation: BN makes the loss landscape smoother, "
              "so the loss and its gradient change less along a step, and larger steps are safe.";
    std::string factors;
    for (double f : kEtaFactors) factors += (factors.empty() ? "" : ", ") + fmt_g(f);
    r.setup = "784-100x" + std::to_string(kLandscapeWidths.size()) + "-10 with ReLU, plain SGD lr " + fmt_g(kLandscapeLr) + ", batch 64, " +
              std::to_string(b.steps) + " steps. Every " + std::to_string(b.eval_every) +
              " steps, on one training batch of 64 with gradient g at the weights w, for step "
              "sizes eta = (" + factors + ") x lr: loss variation = max - min of L(w - eta g); "
              "gradient predictiveness = the largest ||g - grad L(w - eta g)||; effective "
              "beta-smoothness = the largest ||g - grad L(w - eta g)|| / ||eta g||. Smaller is "
              "smoother. The verdict compares the median over checkpoints of each, BN better "
              "when smaller by a factor >= 1.25.";
    struct Measure {
      const char* key;
      const char* title;
      double LandscapeSample::*field;
    };
    const Measure measures[3] = {
        {"loss_variation", "Loss variation", &LandscapeSample::loss_variation},
        {"gradient_predictiveness", "Gradient predictiveness", &LandscapeSample::gradient_predictiveness},
        {"beta_smoothness", "Effective beta-smoothness", &LandscapeSample::beta_smoothness}};
    std::vector<Comparison> comparisons;
    nlohmann::json landscape_json = nlohmann::json::object();
    r.table.header = {"measure", "median without BN", "median with BN"};
    for (const Measure& m : measures) {
      ChartSpec chart;
      chart.title = m.title;
      chart.x_label = "training step";
      chart.y_label = std::string(m.title) + " (log)";
      chart.log_y = true;
      double median[2];
      for (bool with_bn : {false, true}) {
        const LandscapeRecord& rec = (*records)[with_bn];
        std::vector<double> values;
        for (const LandscapeSample& s : rec.samples) values.push_back(s.*(m.field));
        chart.series.push_back({bn_name(with_bn), to_double(rec.steps), values, bn_color(with_bn)});
        median[with_bn] = median_of(values);
        landscape_json[with_bn ? "with_bn" : "without_bn"]["steps"] = rec.steps;
        landscape_json[with_bn ? "with_bn" : "without_bn"][m.key] = values;
        landscape_json[with_bn ? "with_bn" : "without_bn"][std::string("median_") + m.key] = median[with_bn];
      }
      r.table.rows.push_back({m.title, fmt(median[0], 4), fmt(median[1], 4)});
      // Higher is better in a Comparison, and the rule is a ratio: -log10.
      comparisons.push_back({m.title, -std::log10(median[0]), -std::log10(median[1])});
      r.charts.push_back({line_chart_svg(chart), ""});
    }
    const double margin = std::log10(1.25);
    r.verdict = paired_verdict(comparisons, margin, "landscape measure (-log10; smaller measure "
                                                    "counts as better)",
                               "diverged", [](double v) { return fmt(std::pow(10.0, -v), 4); });
    r.notes.push_back("A run's own learning rate scales its gradient, and BN's gradient has a "
                      "different scale: the ratio (beta-smoothness) is the scale-free measure.");
    note_divergences(r, results);
    r.csv = curves_csv(r.table, results);
    r.results = {{"eta_factors", kEtaFactors}, {"lr", kLandscapeLr}, {"margin_log10", margin},
                 {"landscape", landscape_json}, {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- 15. Learning rate and depth together (Bjorck et al. 2018) ---------------

const std::vector<double> kGridLearningRates = {0.01, 0.1, 0.5, 1.0, 2.0};
const std::vector<int> kGridDepths = {2, 5, 10, 20};
const double kTrainsAt = 0.5;  // a cell trains when its final test accuracy reaches this
// He's std for 100 inputs, sqrt(2 / 100), in every Linear of the one-step nets:
// PyTorch's default shrinks a ReLU net's activations layer by layer, which
// would hide what one large step does to them (Bjorck et al. use He's too).
const double kOneStepInitStd = 0.1414;

std::string cell_label(int depth, double lr) {
  return std::to_string(depth) + " hidden, lr " + fmt_g(lr);
}

// RMS of each hidden layer's activation output on the fixed batch, per checkpoint.
using ScaleRecord = std::vector<std::vector<double>>;

void probe_scales(nn::Sequential& net, const Tensor& batch, ScaleRecord& record) {
  SavedBatchNormState saved(net);
  std::vector<double> rms;
  const Tensor* x = &batch;
  for (size_t i = 0; i < net.size(); ++i) {
    x = &net[i].forward(*x);
    if (dynamic_cast<nn::ReLU*>(&net[i])) {
      double sum = 0;
      for (int64_t k = 0; k < x->numel(); ++k) sum += double((*x)[k]) * (*x)[k];
      rms.push_back(std::sqrt(sum / static_cast<double>(x->numel())));
    }
  }
  saved.restore();
  record.push_back(rms);
}

Experiment lr_depth(const LabContext& c) {
  ExplanationBudget b = explanation_budget(c);
  Experiment e;
  e.name = "lr_depth";
  for (int depth : kGridDepths)
    for (double lr : kGridLearningRates)
      for (bool with_bn : {false, true}) {
        RunSpec spec;
        spec.label = with_bn_label(cell_label(depth, lr), with_bn);
        spec.arch = mlp_arch(std::vector<int>(size_t(depth), 100), "ReLU()", with_bn);
        spec.with_bn = with_bn;
        spec.lr = lr;
        spec.steps = b.grid_steps;
        spec.eval_every = b.grid_eval_every;
        spec.seed = c.seed;
        e.runs.push_back(spec);
      }
  // One large step on the deepest network: the activation scale before and after.
  auto batch = fixed_test_batch(*c.test);
  auto scales = std::make_shared<std::array<ScaleRecord, 2>>();
  const int deepest = kGridDepths.back();
  const double large_lr = kGridLearningRates.back();
  for (bool with_bn : {false, true}) {
    RunSpec spec;
    spec.label = with_bn_label("one step at lr " + fmt_g(large_lr), with_bn);
    spec.arch = mlp_arch(std::vector<int>(size_t(deepest), 100), "ReLU()", with_bn);
    spec.with_bn = with_bn;
    spec.lr = large_lr;
    spec.steps = 1;
    spec.eval_every = 1;
    spec.seed = c.seed;
    spec.init_std = kOneStepInitStd;
    spec.probe = [batch, scales, with_bn](nn::Sequential& net, int64_t, RunResult&) {
      probe_scales(net, *batch, (*scales)[with_bn]);
    };
    e.runs.push_back(spec);
  }
  e.report = [b, scales, deepest, large_lr](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "lr_depth";
    r.title = "15. Learning rate and depth together (Bjorck et al. 2018)";
    r.claim = "BN lets deep networks train at large learning rates: without it, activations "
              "grow layer by layer after a large step, and deep networks diverge or stall.";
    std::string lrs, depths;
    for (double lr : kGridLearningRates) lrs += (lrs.empty() ? "" : ", ") + fmt_g(lr);
    for (int d : kGridDepths) depths += (depths.empty() ? "" : ", ") + std::to_string(d);
    r.setup = "Hidden layers of 100 with ReLU, depth " + depths + " x learning rate " + lrs +
              ", with and without BN, plain SGD, batch 64, " + std::to_string(b.grid_steps) +
              " steps each; a cell trains when its final test accuracy is >= " + fmt_g(kTrainsAt) +
              ". Then the " + std::to_string(deepest) + "-layer networks take one step at lr " +
              fmt_g(large_lr) + " from initial weights drawn from N(0, " + fmt_g(kOneStepInitStd) +
              ") (He's scale for 100 inputs), and the RMS of each hidden layer's output on the "
              "first test images is read (training mode) before and after it.";
    HeatmapSpec maps[2];
    std::vector<Comparison> cells;
    nlohmann::json grid = nlohmann::json::array();
    r.table.header = {"hidden layers", "learning rate", "without BN", "with BN"};
    for (bool with_bn : {false, true}) {
      HeatmapSpec& h = maps[with_bn];
      h.title = std::string(with_bn ? "With BN" : "Without BN") + ": final test accuracy";
      h.x_label = "learning rate";
      h.y_label = "hidden layers";
      h.color = bn_color(with_bn);
      for (double lr : kGridLearningRates) h.columns.push_back(fmt_g(lr));
      for (int d : kGridDepths) h.rows.push_back(std::to_string(d));
      h.values.assign(kGridDepths.size(), {});
    }
    for (size_t di = 0; di < kGridDepths.size(); ++di)
      for (double lr : kGridLearningRates) {
        const std::string what = cell_label(kGridDepths[di], lr);
        const RunResult& a = find(results, with_bn_label(what, false));
        const RunResult& bn = find(results, with_bn_label(what, true));
        maps[0].values[di].push_back(a.final_test_accuracy);
        maps[1].values[di].push_back(bn.final_test_accuracy);
        cells.push_back({what, a.final_test_accuracy, bn.final_test_accuracy});
        r.table.rows.push_back({std::to_string(kGridDepths[di]), fmt_g(lr), fmt(a.final_test_accuracy),
                                fmt(bn.final_test_accuracy)});
        grid.push_back({{"hidden", kGridDepths[di]},
                        {"lr", lr},
                        {"without_bn", a.final_test_accuracy},
                        {"with_bn", bn.final_test_accuracy}});
      }
    for (bool with_bn : {false, true})
      r.charts.push_back({heatmap_svg(maps[with_bn]), std::string(bn_name(with_bn)) +
                                                          ": a grey cell diverged (non-finite loss)."});
    ChartSpec scale;
    scale.title = std::to_string(deepest) + " hidden layers: activation RMS per layer";
    scale.x_label = "hidden layer";
    scale.y_label = "RMS of the layer's output (log)";
    scale.log_y = true;
    nlohmann::json scale_json = nlohmann::json::object();
    for (bool with_bn : {false, true}) {
      const ScaleRecord& rec = (*scales)[with_bn];
      for (size_t t = 0; t < rec.size() && t < 2; ++t) {
        std::vector<double> xs;
        for (size_t l = 0; l < rec[t].size(); ++l) xs.push_back(static_cast<double>(l + 1));
        scale.series.push_back({std::string(bn_name(with_bn)) + (t == 0 ? ", initial" : ", after one step"),
                                xs, rec[t], bn_color(with_bn), t == 0});
      }
      scale_json[with_bn ? "with_bn" : "without_bn"] = {
          {"initial", rec.empty() ? std::vector<double>{} : rec[0]},
          {"after_one_step", rec.size() < 2 ? std::vector<double>{} : rec[1]}};
      if (rec.size() >= 2 && !rec[1].empty())
        r.notes.push_back(std::string(bn_name(with_bn)) + ": after one step at lr " + fmt_g(large_lr) +
                          " the last hidden layer's RMS went from " + fmt(rec[0].back(), 4) + " to " +
                          fmt(rec[1].back(), 4) + ".");
    }
    r.charts.push_back({line_chart_svg(scale), "Dashed: the initial weights; solid: after one step."});
    r.verdict = grid_verdict(cells, kTrainsAt);
    r.csv = curves_csv(r.table, results);
    r.results = {{"learning_rates", kGridLearningRates}, {"depths", kGridDepths},
                 {"trains_at", kTrainsAt},               {"grid", grid},
                 {"one_step_lr", large_lr},              {"activation_rms", scale_json},
                 {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- 16. The verdict on the seed's explanation ------------------------------

// The experiments that test the explanation rather than a benefit.
const std::set<std::string> kEvidence = {"covariate_shift", "noisy_bn", "gradient_shift", "landscape"};
// The claims about training that the explanation is meant to explain.
const std::set<std::string> kTrainingBenefits = {"convergence", "learning_rate", "initialization",
                                                 "activations", "depth",         "regularization",
                                                 "lr_depth"};

double verdict_value(Verdict v) {
  return v == Verdict::supported ? 1.0 : v == Verdict::mixed ? 0.5 : 0.0;
}

ExperimentReport explanation_section(const std::vector<ExperimentReport>& sections) {
  std::map<std::string, const ExperimentReport*> by_name;
  for (const auto& s : sections) by_name[s.name] = &s;
  auto verdict_of = [&](const std::string& name) -> std::optional<Verdict> {
    auto it = by_name.find(name);
    if (it == by_name.end()) return std::nullopt;
    return it->second->verdict.verdict;
  };
  ExplanationEvidence evidence{verdict_of("noisy_bn"), verdict_of("gradient_shift"), verdict_of("landscape")};
  ExperimentReport r;
  r.name = "explanation";
  r.title = "16. The verdict on the seed's explanation";
  r.claim = "The tutorial behind this project says BN's benefits come from reducing internal "
            "covariate shift. This section sets each claim's verdict here beside what "
            "experiments 12 to 14 say about that explanation.";
  r.setup = "Computed from the verdicts above, nothing written by hand. The explanation is "
            "supported when noisy BN (12) and the gradient measure (13) both support it; not "
            "supported when both do not, or when noisy BN does not and the landscape (14) is "
            "smoother with BN; mixed otherwise, including when 12 or 13 was not run. Per claim: "
            "a claim not supported here leaves nothing to explain; a claim about inference or "
            "statistics rather than training is outside the explanation; any other claim gets "
            "the explanation's verdict. Experiment 7 (drift with and without BN) is shown as "
            "the premise.";
  r.verdict = explanation_verdict(evidence);
  const std::string explanation = verdict_word(r.verdict.verdict);
  auto text = [](const std::optional<Verdict>& v) { return v ? std::string(verdict_word(*v)) : std::string("not run"); };
  HeatmapSpec map;
  map.title = "Verdicts: 1 supported, 0.5 mixed, 0 not supported";
  map.value_name = "verdict";
  map.color = "#2ca02c";
  map.value_decimals = 1;
  map.columns = {"the claim", "ICS explains it", "smoother landscape"};
  map.missing_label = "n/a";
  map.width = 620;
  r.table.header = {"claim", "verdict here", "explained by reduced covariate shift?",
                    "smoother landscape with BN (14)"};
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& s : sections) {
    if (kEvidence.count(s.name) || s.name == r.name) continue;
    std::string explained;
    double explained_value = NAN;
    if (!kTrainingBenefits.count(s.name)) {
      explained = "outside the explanation (not about training)";
    } else if (s.verdict.verdict == Verdict::not_supported) {
      explained = "nothing to explain";
    } else {
      explained = explanation;
      explained_value = verdict_value(r.verdict.verdict);
    }
    r.table.rows.push_back({s.title, verdict_word(s.verdict.verdict), explained, text(evidence.landscape)});
    map.rows.push_back(s.title.substr(0, s.title.find('.')));
    map.values.push_back({verdict_value(s.verdict.verdict), explained_value,
                          evidence.landscape ? verdict_value(*evidence.landscape) : NAN});
    rows.push_back({{"name", s.name}, {"title", s.title}, {"verdict", verdict_word(s.verdict.verdict)},
                    {"explained_by_covariate_shift", explained}});
  }
  map.height = 90 + 26 * static_cast<int>(std::max<size_t>(map.rows.size(), 1));
  map.y_label = "experiment";
  r.charts.push_back({heatmap_svg(map), "Rows: the claims by experiment number; n/a: nothing to "
                                        "explain, or outside the explanation."});
  for (const char* name : {"covariate_shift", "noisy_bn", "gradient_shift", "landscape"}) {
    auto it = by_name.find(name);
    r.notes.push_back(std::string(it == by_name.end() ? name : it->second->title) + ": " +
                      (it == by_name.end() ? "not run" : verdict_word(it->second->verdict.verdict) +
                                                             std::string(" (") + it->second->verdict.reason + ")"));
  }
  r.csv = table_csv(r.table);
  nlohmann::json evidence_json = nlohmann::json::object();
  for (const char* name : {"covariate_shift", "noisy_bn", "gradient_shift", "landscape"})
    evidence_json[name] = text(verdict_of(name));
  r.results = {{"evidence", evidence_json}, {"explanation_verdict", explanation}, {"claims", rows}};
  return r;
}

}  // namespace

std::vector<std::string> explanation_experiment_names() {
  return {"noisy_bn", "gradient_shift", "landscape", "lr_depth", "explanation"};
}

bool is_explanation_experiment(const std::string& name) {
  auto names = explanation_experiment_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

Experiment plan_explanation_experiment(const std::string& name, const LabContext& context) {
  if (name == "noisy_bn") return noisy_bn(context);
  if (name == "gradient_shift") return gradient_shift_experiment(context);
  if (name == "landscape") return landscape(context);
  if (name == "lr_depth") return lr_depth(context);
  if (name == "explanation") {
    Experiment e;
    e.name = name;
    e.summarize = explanation_section;
    return e;
  }
  throw Error("unknown experiment \"" + name + "\"");
}

}  // namespace bnlab::lab
