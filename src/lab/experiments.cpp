// The eight experiments of the benefits lab: each plans its runs (with and
// without BN, same seeds) and turns their results into a report section with
// charts, a table and a verdict computed by the rules in verdicts.cpp.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <memory>

#include "bnlab/error.hpp"
#include "bnlab/lab/benefits.hpp"
#include "bnlab/lab/chart.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/train/trainer.hpp"
#include "experiment_parts.hpp"
#include "runner.hpp"
#include "statistics_experiments.hpp"

namespace bnlab::lab {
namespace {

// --- budgets: --quick is what CI runs (< 2 minutes), the full run < 30 minutes ---

struct Budget {
  int64_t steps;             // experiments 2-5, 7
  int64_t eval_every;
  int64_t convergence_steps;
  int64_t convergence_eval_every;
  int64_t regularization_steps;
  int64_t inference_steps;
  double convergence_target;  // test accuracy both networks race to
};

Budget budget(const LabContext& c) {
  if (c.quick) return {300, 25, 600, 25, 600, 300, 0.70};
  return {3000, 150, 9380, 100, 9380, 3000, 0.80};
}

// The paper's MNIST network: three hidden layers of 100.
const std::vector<int> kThreeBy100 = {100, 100, 100};

}  // namespace

// --- shared with the other experiment files (experiment_parts.hpp) ---

std::string fmt(double v, int decimals) {
  if (std::isnan(v)) return "diverged";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string fmt_g(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

const char* bn_name(bool with_bn) { return with_bn ? "with BN" : "without BN"; }
const char* bn_color(bool with_bn) { return with_bn ? kColorWithBn : kColorWithoutBn; }

std::vector<double> to_double(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

Series accuracy_series(const RunResult& r, const std::string& name, const std::string& color,
                       bool dashed) {
  return {name, to_double(r.eval_steps), r.test_accuracy, color, dashed};
}

Series loss_series(const RunResult& r, const std::string& name, const std::string& color,
                   bool dashed = false) {
  return {name, to_double(r.loss_steps), r.loss, color, dashed};
}

ChartSpec accuracy_chart(const std::string& title) {
  ChartSpec spec;
  spec.title = title;
  spec.x_label = "training step";
  spec.y_label = "test accuracy";
  spec.y_min = 0;
  spec.y_max = 1;
  return spec;
}

ChartSpec loss_chart(const std::string& title) {
  ChartSpec spec;
  spec.title = title;
  spec.x_label = "training step";
  spec.y_label = "training loss (log scale)";
  spec.log_y = true;
  return spec;
}

// The numbers of a run for results.json (curves included; NaN becomes null).
nlohmann::json run_json(const RunResult& r) {
  nlohmann::json j = {{"label", r.label},
                      {"with_bn", r.with_bn},
                      {"diverged", r.diverged},
                      {"final_test_accuracy", r.final_test_accuracy},
                      {"last_test_accuracy", r.last_test_accuracy},
                      {"final_test_loss", r.final_test_loss},
                      {"steps", r.steps_done},
                      {"seconds", r.seconds},
                      {"loss_steps", r.loss_steps},
                      {"loss", r.loss},
                      {"eval_steps", r.eval_steps},
                      {"test_accuracy", r.test_accuracy}};
  if (r.diverged) {
    j["diverged_at"] = r.diverged_at;
    j["divergence"] = r.divergence;
  }
  if (!std::isnan(r.train_accuracy)) j["train_accuracy"] = r.train_accuracy;
  return j;
}

nlohmann::json runs_json(const std::vector<RunResult>& results) {
  nlohmann::json runs = nlohmann::json::array();
  for (const auto& r : results) runs.push_back(run_json(r));
  return runs;
}

// Every curve of every run as one long CSV: run, with_bn, kind, step, value.
std::string curves_csv(const Table& summary, const std::vector<RunResult>& results) {
  std::string out = table_csv(summary) + "\nrun,with_bn,curve,step,value\n";
  Table t;
  for (const auto& r : results) {
    for (size_t i = 0; i < r.loss_steps.size(); ++i)
      t.rows.push_back({r.label, r.with_bn ? "1" : "0", "train_loss", std::to_string(r.loss_steps[i]),
                        std::isnan(r.loss[i]) ? "nan" : fmt(r.loss[i], 6)});
    for (size_t i = 0; i < r.eval_steps.size(); ++i)
      t.rows.push_back({r.label, r.with_bn ? "1" : "0", "test_accuracy",
                        std::to_string(r.eval_steps[i]),
                        std::isnan(r.test_accuracy[i]) ? "nan" : fmt(r.test_accuracy[i], 4)});
  }
  return out + table_csv(t);
}

namespace {

RunSpec base_run(const LabContext& c, const std::string& label, const std::vector<int>& widths,
                 const std::string& activation, bool with_bn, double lr) {
  Budget b = budget(c);
  RunSpec spec;
  spec.label = label;
  spec.arch = mlp_arch(widths, activation, with_bn);
  spec.with_bn = with_bn;
  spec.lr = lr;
  spec.steps = b.steps;
  spec.eval_every = b.eval_every;
  spec.seed = c.seed;
  return spec;
}

// Runs are planned as nested loops; this finds one by its label.
const RunResult& find(const std::vector<RunResult>& results, const std::string& label) {
  for (const auto& r : results)
    if (r.label == label) return r;
  throw Error("lab: no run labelled \"" + label + "\"");
}

std::string with_bn_label(const std::string& what, bool with_bn) {
  return what + ", " + bn_name(with_bn);
}

// Final test accuracy as grouped bars: one group per category, "without BN"
// and "with BN" side by side, y from 0 to 1 (a diverged run: an X).
BarChartSpec accuracy_bars(const std::string& title, const std::string& x_label) {
  BarChartSpec bars;
  bars.title = title;
  bars.x_label = x_label;
  bars.y_label = "test accuracy";
  bars.y_min = 0;
  bars.y_max = 1;
  bars.series = {{"without BN", {}, kColorWithoutBn}, {"with BN", {}, kColorWithBn}};
  return bars;
}

void add_bar_pair(BarChartSpec& bars, const std::string& category, double without_bn, double with_bn) {
  bars.categories.push_back(category);
  bars.series[0].values.push_back(without_bn);
  bars.series[1].values.push_back(with_bn);
}

void note_divergences(ExperimentReport& r, const std::vector<RunResult>& results) {
  for (const auto& run : results)
    if (run.diverged) r.notes.push_back(run.label + ": diverged (" + run.divergence + ")");
}

// (name in the report, the layer in PyTorch notation)
using Activation = std::pair<std::string, std::string>;
const std::vector<Activation> kReluAndSigmoid = {{"ReLU", "ReLU()"}, {"Sigmoid", "Sigmoid()"}};

// --- 1. Convergence ---------------------------------------------------------

Experiment convergence(const LabContext& c) {
  Budget b = budget(c);
  Experiment e;
  e.name = "convergence";
  for (bool with_bn : {false, true}) {
    RunSpec spec;
    spec.label = bn_name(with_bn);
    spec.arch = nn::preset_arch(with_bn ? "mlp-bn" : "mlp");
    spec.with_bn = with_bn;
    spec.lr = 0.01;
    spec.steps = b.convergence_steps;
    spec.eval_every = b.convergence_eval_every;
    spec.seed = c.seed;
    e.runs.push_back(spec);
  }
  e.report = [b](const std::vector<RunResult>& results) {
    const RunResult& plain = results[0];
    const RunResult& bn = results[1];
    ExperimentReport r;
    r.name = "convergence";
    r.title = "1. Convergence";
    r.claim = "A network with batch normalization reaches a given accuracy in fewer training steps.";
    r.setup = "The tutorial's MLP (784-512-256-10, ReLU; presets mlp and mlp-bn), plain SGD at "
              "lr 0.01, batch 64, " + std::to_string(b.convergence_steps) +
              " steps; test accuracy every " + std::to_string(b.convergence_eval_every) +
              " steps; target test accuracy " + fmt(b.convergence_target, 2) + ".";
    int64_t steps_plain = first_step_reaching(plain.eval_steps, plain.test_accuracy, b.convergence_target);
    int64_t steps_bn = first_step_reaching(bn.eval_steps, bn.test_accuracy, b.convergence_target);
    r.verdict = convergence_verdict(steps_plain, steps_bn, b.convergence_steps, b.convergence_target);

    ChartSpec loss = loss_chart("Training loss");
    loss.series = {loss_series(plain, "without BN", kColorWithoutBn), loss_series(bn, "with BN", kColorWithBn)};
    ChartSpec acc = accuracy_chart("Test accuracy");
    double last = static_cast<double>(std::max(plain.steps_done, bn.steps_done));
    acc.series = {accuracy_series(plain, "without BN", kColorWithoutBn),
                  accuracy_series(bn, "with BN", kColorWithBn),
                  {"target " + fmt(b.convergence_target, 2), {0, last},
                   {b.convergence_target, b.convergence_target}, "#888", true}};
    r.charts = {{line_chart_svg(loss), "Mean training loss over each window of steps."},
                {line_chart_svg(acc), "Test accuracy (eval mode) during training; the dashed line "
                                      "is the target."}};
    auto steps_text = [](int64_t s) { return s < 0 ? std::string("not reached") : std::to_string(s); };
    r.table.header = {"network", "steps to target", "final test accuracy", "final training loss",
                      "seconds"};
    for (const RunResult* run : {&plain, &bn}) {
      int64_t s = run == &plain ? steps_plain : steps_bn;
      r.table.rows.push_back({run->label, steps_text(s), fmt(run->final_test_accuracy),
                              run->loss.empty() ? "-" : fmt(run->loss.back(), 4), fmt(run->seconds, 1)});
    }
    r.csv = curves_csv(r.table, results);
    r.results = {{"target", b.convergence_target},
                 {"steps_to_target_without_bn", steps_plain},
                 {"steps_to_target_with_bn", steps_bn},
                 {"runs", runs_json(results)}};
    if (steps_plain > 0 && steps_bn > 0)
      r.results["ratio"] = static_cast<double>(steps_bn) / static_cast<double>(steps_plain);
    return r;
  };
  return e;
}

// --- 2. Learning rate -------------------------------------------------------

const std::vector<double> kLearningRates = {0.01, 0.1, 1.0, 2.0};

Experiment learning_rate(const LabContext& c) {
  Experiment e;
  e.name = "learning_rate";
  const std::vector<Activation>& activations = kReluAndSigmoid;
  for (const auto& [act_name, act] : activations)
    for (double lr : kLearningRates)
      for (bool with_bn : {false, true})
        e.runs.push_back(base_run(c, with_bn_label(act_name + ", lr " + fmt_g(lr), with_bn),
                                  kThreeBy100, act, with_bn, lr));
  Budget b = budget(c);
  e.report = [activations, b](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "learning_rate";
    r.title = "2. Learning rate";
    r.claim = "Batch normalization tolerates much higher learning rates: where the plain network "
              "diverges or stalls, the BN network still trains.";
    r.setup = "784-100-100-100-10 (the paper's MNIST network), ReLU and sigmoid, plain SGD at lr "
              "0.01, 0.1, 1 and 2, batch 64, " + std::to_string(b.steps) +
              " steps, same seed. A non-finite loss ends a run: it is reported as diverged (and "
              "counts as chance, 0.1). Tolerance to high rates is each network's drop from its "
              "own best rate at lr 1 and 2, so a network that is better at every rate does not "
              "win on that alone. The loss charts share one y axis.";
    // Tolerance to high rates: each network against its own best rate, so a
    // network that is better everywhere does not win here for that alone.
    const double chance = 0.1;
    auto acc_or_chance = [&](double a) { return std::isnan(a) ? chance : a; };
    std::vector<Comparison> high_lr;
    nlohmann::json drops = nlohmann::json::object();
    r.table.header = {"activation", "learning rate", "without BN", "with BN",
                      "drop from best, without BN", "drop from best, with BN"};
    for (const auto& [act_name, act] : activations) {
      BarChartSpec bars = accuracy_bars(act_name + ": final test accuracy", "learning rate");
      double best[2] = {0.0, 0.0};
      for (double lr : kLearningRates)
        for (bool with_bn : {false, true})
          best[with_bn] = std::max(best[with_bn], acc_or_chance(find(results, with_bn_label(
              act_name + ", lr " + fmt_g(lr), with_bn)).final_test_accuracy));
      for (double lr : kLearningRates) {
        std::string what = act_name + ", lr " + fmt_g(lr);
        const RunResult& a = find(results, with_bn_label(what, false));
        const RunResult& bn = find(results, with_bn_label(what, true));
        const double drop[2] = {best[0] - acc_or_chance(a.final_test_accuracy),
                                best[1] - acc_or_chance(bn.final_test_accuracy)};
        add_bar_pair(bars, fmt_g(lr), a.final_test_accuracy, bn.final_test_accuracy);
        r.table.rows.push_back({act_name, fmt_g(lr), fmt(a.final_test_accuracy),
                                fmt(bn.final_test_accuracy), fmt(drop[0]), fmt(drop[1])});
        drops[what] = {{"without_bn", drop[0]}, {"with_bn", drop[1]}};
        // Higher is better in a Comparison: the negated drop.
        if (lr >= 1.0) high_lr.push_back({what, -drop[0], -drop[1]});
      }
      drops[act_name + ", best"] = {{"without_bn", best[0]}, {"with_bn", best[1]}};
      r.charts.push_back({bar_chart_svg(bars), act_name + ": final test accuracy per learning rate "
                                               "(an X marks a run that diverged)."});
    }
    // One log axis for every small multiple, so their curves compare at a glance.
    double loss_low = INFINITY, loss_high = 0;
    for (const RunResult& run : results)
      for (double v : run.loss)
        if (std::isfinite(v) && v > 0) {
          loss_low = std::min(loss_low, v);
          loss_high = std::max(loss_high, v);
        }
    for (const auto& [act_name, act] : activations)
      for (double lr : kLearningRates) {
        std::string what = act_name + ", lr " + fmt_g(lr);
        ChartSpec loss = loss_chart(what);
        loss.width = 370;
        loss.height = 260;
        if (loss_low <= loss_high) {
          loss.y_min = std::pow(10.0, std::floor(std::log10(loss_low)));
          loss.y_max = std::pow(10.0, std::ceil(std::log10(loss_high)));
        }
        loss.series = {loss_series(find(results, with_bn_label(what, false)), "without BN", kColorWithoutBn),
                       loss_series(find(results, with_bn_label(what, true)), "with BN", kColorWithBn)};
        r.charts.push_back({line_chart_svg(loss), ""});
      }
    r.verdict = paired_verdict(high_lr, 0.02, "drop from the network's best learning rate at "
                                              "lr >= 1 (smaller counts as better)",
                               "diverged", [](double v) { return fmt(-v); });
    note_divergences(r, results);
    r.csv = curves_csv(r.table, results);
    r.results = {{"learning_rates", kLearningRates},
                 {"chance", chance},
                 {"drop_from_best", drops},
                 {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- 3. Initialisation ------------------------------------------------------

const std::vector<double> kInitStds = {0.05, 5.0};

Experiment initialization(const LabContext& c) {
  Experiment e;
  e.name = "initialization";
  const std::vector<Activation>& activations = kReluAndSigmoid;
  for (const auto& [act_name, act] : activations)
    for (double sd : kInitStds)
      for (bool with_bn : {false, true}) {
        RunSpec spec = base_run(c, with_bn_label(act_name + ", N(0, " + fmt_g(sd) + ")", with_bn),
                                kThreeBy100, act, with_bn, 0.1);
        spec.init_std = sd;
        e.runs.push_back(spec);
      }
  Budget b = budget(c);
  e.report = [activations, b](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "initialization";
    r.title = "3. Initialisation";
    r.claim = "With batch normalization the network is much less sensitive to the scale of the "
              "initial weights.";
    r.setup = "784-100-100-100-10, ReLU and sigmoid, every Linear weight drawn from N(0, 0.05) or "
              "N(0, 5) (biases as PyTorch draws them), plain SGD lr 0.1, batch 64, " +
              std::to_string(b.steps) + " steps. Sensitivity = the difference in final test "
              "accuracy between the two initialisations (a diverged run counts as chance, 0.1).";
    const double chance = 0.1;
    auto acc_or_chance = [&](double a) { return std::isnan(a) ? chance : a; };
    BarChartSpec bars = accuracy_bars("Final test accuracy by initialisation",
                                      "activation and standard deviation of the initial weights");
    std::vector<Comparison> spreads;
    r.table.header = {"activation", "init", "without BN", "with BN"};
    nlohmann::json spread_json = nlohmann::json::object();
    for (const auto& [act_name, act] : activations) {
      ChartSpec acc = accuracy_chart(act_name + ": test accuracy");
      double spread[2];
      for (bool with_bn : {false, true}) {
        double lo = INFINITY, hi = -INFINITY;
        for (double sd : kInitStds) {
          const RunResult& run = find(results, with_bn_label(act_name + ", N(0, " + fmt_g(sd) + ")", with_bn));
          double a = acc_or_chance(run.final_test_accuracy);
          lo = std::min(lo, a);
          hi = std::max(hi, a);
          acc.series.push_back(accuracy_series(run, std::string(bn_name(with_bn)) + ", N(0, " + fmt_g(sd) + ")",
                                               bn_color(with_bn), sd > 1));
        }
        spread[with_bn] = hi - lo;
      }
      for (double sd : kInitStds) {
        std::string what = act_name + ", N(0, " + fmt_g(sd) + ")";
        const RunResult& a = find(results, with_bn_label(what, false));
        const RunResult& bn = find(results, with_bn_label(what, true));
        add_bar_pair(bars, act_name + " " + fmt_g(sd), a.final_test_accuracy, bn.final_test_accuracy);
        r.table.rows.push_back({act_name, "N(0, " + fmt_g(sd) + ")", fmt(a.final_test_accuracy),
                                fmt(bn.final_test_accuracy)});
      }
      r.table.rows.push_back({act_name, "spread", fmt(spread[0]), fmt(spread[1])});
      // Higher is better in a Comparison: the negated spread.
      spreads.push_back({act_name, -spread[0], -spread[1]});
      spread_json[act_name] = {{"without_bn", spread[0]}, {"with_bn", spread[1]}};
      r.charts.push_back({line_chart_svg(acc), act_name + ": solid N(0, 0.05), dashed N(0, 5)."});
    }
    r.charts.insert(r.charts.begin(), {bar_chart_svg(bars), "Final test accuracy for each "
                                                            "initialisation (X: diverged)."});
    r.verdict = paired_verdict(spreads, 0.02, "accuracy spread between the two initialisations "
                                              "(smaller counts as better)",
                               "diverged", [](double v) { return fmt(-v); });
    note_divergences(r, results);
    r.csv = curves_csv(r.table, results);
    r.results = {{"init_stds", kInitStds}, {"spread", spread_json}, {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- 4. Activations ---------------------------------------------------------

Experiment activations(const LabContext& c) {
  Experiment e;
  e.name = "activations";
  const std::vector<std::pair<std::string, std::string>> acts = {
      {"ReLU", "ReLU()"}, {"LeakyReLU", "LeakyReLU()"}, {"Tanh", "Tanh()"}, {"Sigmoid", "Sigmoid()"}};
  for (const auto& [name, act] : acts)
    for (bool with_bn : {false, true})
      e.runs.push_back(base_run(c, with_bn_label(name, with_bn), kThreeBy100, act, with_bn, 0.1));
  Budget b = budget(c);
  e.report = [acts, b](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "activations";
    r.title = "4. Activations";
    r.claim = "Batch normalization makes saturating activations such as sigmoid (and tanh) "
              "viable: the network trains with them about as well as with ReLU.";
    r.setup = "784-100-100-100-10 with each activation, plain SGD lr 0.1, batch 64, " +
              std::to_string(b.steps) + " steps. The verdict takes the saturating ones (Tanh, "
              "Sigmoid): their shortfall against ReLU in the same network, with and without BN; "
              "\"about as well\" means within 0.02 of ReLU, and BN makes an activation viable "
              "when it is about as good with BN and not without. LeakyReLU is shown for reference "
              "(dashed: its curve lies on ReLU's).";
    BarChartSpec bars = accuracy_bars("Final test accuracy by activation", "activation");
    ChartSpec curves[2] = {accuracy_chart("Test accuracy without BN"), accuracy_chart("Test accuracy with BN")};
    std::vector<Comparison> saturating;
    const double relu[2] = {find(results, with_bn_label("ReLU", false)).final_test_accuracy,
                            find(results, with_bn_label("ReLU", true)).final_test_accuracy};
    r.table.header = {"activation", "without BN", "with BN"};
    size_t index = 0;
    for (const auto& [name, act] : acts) {
      const RunResult& a = find(results, with_bn_label(name, false));
      const RunResult& bn = find(results, with_bn_label(name, true));
      add_bar_pair(bars, name, a.final_test_accuracy, bn.final_test_accuracy);
      // LeakyReLU's curve lies on ReLU's: dashed, so the one under it shows.
      const bool dashed = name == "LeakyReLU";
      curves[0].series.push_back(accuracy_series(a, name, default_color(index + 2), dashed));
      curves[1].series.push_back(accuracy_series(bn, name, default_color(index + 2), dashed));
      ++index;
      r.table.rows.push_back({name, fmt(a.final_test_accuracy), fmt(bn.final_test_accuracy)});
      // The shortfall against ReLU in the same network.
      if (name == "Tanh" || name == "Sigmoid")
        saturating.push_back({name, relu[0] - a.final_test_accuracy, relu[1] - bn.final_test_accuracy});
    }
    r.charts = {{bar_chart_svg(bars), "Final test accuracy (X: diverged)."},
                {line_chart_svg(curves[0]), ""},
                {line_chart_svg(curves[1]), ""}};
    r.verdict = about_as_well_verdict(saturating, 0.02, "ReLU");
    r.csv = curves_csv(r.table, results);
    nlohmann::json shortfall = nlohmann::json::object();
    for (const Comparison& s : saturating)
      shortfall[s.label] = {{"without_bn", s.without_bn}, {"with_bn", s.with_bn}};
    r.results = {{"relu_accuracy", {{"without_bn", relu[0]}, {"with_bn", relu[1]}}},
                 {"shortfall_against_relu", shortfall},
                 {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- 5. Depth ---------------------------------------------------------------

const std::vector<int> kDepths = {2, 5, 10, 20};

Experiment depth(const LabContext& c) {
  Experiment e;
  e.name = "depth";
  const std::vector<Activation> activations = {kReluAndSigmoid[1], kReluAndSigmoid[0]};
  for (const auto& [act_name, act] : activations)
    for (int d : kDepths)
      for (bool with_bn : {false, true})
        e.runs.push_back(base_run(c, with_bn_label(act_name + ", " + std::to_string(d) + " hidden", with_bn),
                                  std::vector<int>(static_cast<size_t>(d), 100), act, with_bn, 0.1));
  Budget b = budget(c);
  e.report = [activations, b](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "depth";
    r.title = "5. Depth";
    r.claim = "Batch normalization makes deeper networks trainable.";
    r.setup = "2, 5, 10 and 20 hidden layers of 100 units, sigmoid and ReLU, plain SGD lr 0.1, "
              "batch 64, " + std::to_string(b.steps) + " steps, PyTorch's default initialisation. "
              "The verdict compares the deep ones (10 and 20 hidden layers).";
    std::vector<Comparison> deep;
    r.table.header = {"activation", "hidden layers", "without BN", "with BN"};
    ChartSpec deepest = accuracy_chart("20 hidden layers: test accuracy");
    for (const auto& [act_name, act] : activations) {
      BarChartSpec bars = accuracy_bars(act_name + ": final test accuracy by depth",
                                        "hidden layers of 100");
      for (int d : kDepths) {
        std::string what = act_name + ", " + std::to_string(d) + " hidden";
        const RunResult& a = find(results, with_bn_label(what, false));
        const RunResult& bn = find(results, with_bn_label(what, true));
        add_bar_pair(bars, std::to_string(d), a.final_test_accuracy, bn.final_test_accuracy);
        r.table.rows.push_back({act_name, std::to_string(d), fmt(a.final_test_accuracy),
                                fmt(bn.final_test_accuracy)});
        if (d >= 10) deep.push_back({what, a.final_test_accuracy, bn.final_test_accuracy});
        if (d == kDepths.back()) {
          bool sigmoid = act_name == "Sigmoid";
          deepest.series.push_back(accuracy_series(a, act_name + " without BN", kColorWithoutBn, sigmoid));
          deepest.series.push_back(accuracy_series(bn, act_name + " with BN", kColorWithBn, sigmoid));
        }
      }
      r.charts.push_back({bar_chart_svg(bars), ""});
    }
    r.charts.push_back({line_chart_svg(deepest), "The deepest networks during training (dashed: sigmoid)."});
    r.verdict = paired_verdict(deep, 0.02, "final test accuracy at 10 and 20 hidden layers");
    note_divergences(r, results);
    r.csv = curves_csv(r.table, results);
    r.results = {{"depths", kDepths}, {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- 6. Regularisation ------------------------------------------------------

Experiment regularization(const LabContext& c) {
  Budget b = budget(c);
  Experiment e;
  e.name = "regularization";
  for (double dropout : {0.0, 0.5})
    for (bool with_bn : {false, true}) {
      RunSpec spec;
      spec.label = with_bn_label(dropout > 0 ? "Dropout(0.5)" : "no dropout", with_bn);
      spec.arch = mlp_arch({512, 256}, "ReLU()", with_bn, dropout);
      spec.with_bn = with_bn;
      spec.lr = 0.1;
      spec.steps = b.regularization_steps;
      spec.eval_every = b.convergence_eval_every * 4;
      spec.seed = c.seed;
      spec.train_accuracy = true;
      e.runs.push_back(spec);
    }
  int64_t train_count = c.train->count;
  e.report = [b, train_count](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "regularization";
    r.title = "6. Regularisation";
    r.claim = "Batch normalization regularises a little: the gap between training and test "
              "accuracy is smaller, reducing the need for Dropout.";
    r.setup = "784-512-256-10 ReLU (the tutorial's network), with and without Dropout(0.5) after "
              "each hidden activation, plain SGD lr 0.1, batch 64, " +
              std::to_string(b.regularization_steps) + " steps on " + std::to_string(train_count) +
              " training images; gap = accuracy on those training images minus test accuracy, "
              "both of the final weights in eval mode.";
    BarChartSpec gaps;
    gaps.title = "Train - test accuracy gap";
    gaps.y_label = "accuracy gap";
    gaps.value_decimals = 3;
    gaps.categories = {"no dropout", "Dropout(0.5)"};
    BarSeries without{"without BN", {}, kColorWithoutBn}, with{"with BN", {}, kColorWithBn};
    ChartSpec acc = accuracy_chart("Test accuracy");
    std::vector<Comparison> comparisons;
    r.table.header = {"dropout", "BN", "train accuracy", "test accuracy", "gap"};
    for (const std::string what : {"no dropout", "Dropout(0.5)"}) {
      double gap[2];
      for (bool with_bn : {false, true}) {
        const RunResult& run = find(results, with_bn_label(what, with_bn));
        // Both accuracies of the same weights: the last evaluation, not the mean of the last few.
        gap[with_bn] = run.train_accuracy - run.last_test_accuracy;  // NaN when diverged
        (with_bn ? with : without).values.push_back(gap[with_bn]);
        r.table.rows.push_back({what, with_bn ? "yes" : "no", fmt(run.train_accuracy),
                                fmt(run.last_test_accuracy), fmt(gap[with_bn])});
        acc.series.push_back(accuracy_series(run, with_bn_label(what, with_bn), bn_color(with_bn),
                                             what != "no dropout"));
      }
      comparisons.push_back({what, -gap[0], -gap[1]});
    }
    gaps.series = {without, with};
    r.charts = {{bar_chart_svg(gaps), "Smaller is less overfitting."},
                {line_chart_svg(acc), "Dashed: with Dropout(0.5)."}};
    r.verdict = paired_verdict(comparisons, 0.005, "train-test gap (smaller counts as better)",
                               "diverged", [](double v) { return fmt(-v); });
    r.notes.push_back("A smaller gap can also come from fitting the training set less; compare "
                      "the training accuracies in the table.");
    r.csv = curves_csv(r.table, results);
    r.results = {{"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- 7. Internal covariate shift (the paper's Figure 1) ----------------------

// The percentiles of the last hidden layer's sigmoid inputs on a fixed batch,
// per unit, at each checkpoint: [checkpoint][unit] = {q15, q50, q85}.
struct ShiftRecord {
  std::vector<int64_t> steps;
  std::vector<std::vector<std::array<double, 3>>> quantiles;
};

// A BatchNorm's state a training-mode forward changes, to put back after a probe.
struct SavedBn {
  nn::BatchNorm* bn;
  std::vector<float> mean, var;
  int64_t tracked;
};

/* The probe: forward the fixed batch through children [0, k] in training
   mode (BN with the batch's own statistics, as during training), read the
   output of child k = the input of the last Sigmoid, (M, 100); per unit the
   15/50/85th percentiles over the M examples. BN running statistics are
   restored afterwards, so probing never changes training. */
void probe_shift(nn::Sequential& net, const Tensor& batch, ShiftRecord& record, int64_t step) {
  size_t last_sigmoid = 0;
  for (size_t i = 0; i < net.size(); ++i)
    if (dynamic_cast<nn::Sigmoid*>(&net[i])) last_sigmoid = i;
  if (last_sigmoid == 0) throw Error("covariate_shift: the network has no Sigmoid after a layer");
  std::vector<SavedBn> saved;
  for (size_t i = 0; i < net.size(); ++i)
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(&net[i]))
      saved.push_back({bn,
                       {bn->running_mean.data(), bn->running_mean.data() + bn->running_mean.numel()},
                       {bn->running_var.data(), bn->running_var.data() + bn->running_var.numel()},
                       bn->num_batches_tracked});
  const Tensor* x = &batch;
  for (size_t i = 0; i < last_sigmoid; ++i) x = &net[i].forward(*x);
  for (const SavedBn& s : saved) {
    std::copy(s.mean.begin(), s.mean.end(), s.bn->running_mean.data());
    std::copy(s.var.begin(), s.var.end(), s.bn->running_var.data());
    s.bn->num_batches_tracked = s.tracked;
  }
  const int64_t rows = x->size(0), units = x->numel() / rows;
  std::vector<std::array<double, 3>> per_unit(static_cast<size_t>(units));
  std::vector<double> column(static_cast<size_t>(rows));
  for (int64_t u = 0; u < units; ++u) {
    for (int64_t m = 0; m < rows; ++m) column[size_t(m)] = (*x)[m * units + u];
    per_unit[size_t(u)] = {percentile(column, 15), percentile(column, 50), percentile(column, 85)};
  }
  record.steps.push_back(step);
  record.quantiles.push_back(std::move(per_unit));
}

/* Drift of one unit: mean over checkpoints t before the last T and over the
   three percentiles q of |q_t - q_T|, in the units of the sigmoid's input
   (where the sigmoid bends over about [-4, 4]): how far the unit's input
   distribution was from where it ends. Both networks feed the same sigmoid,
   so the numbers compare directly. */
double unit_drift(const ShiftRecord& record, size_t unit) {
  size_t last = record.quantiles.size() - 1;
  if (last == 0) return NAN;
  const auto& end = record.quantiles[last][unit];
  double sum = 0;
  for (size_t t = 0; t < last; ++t)
    for (int q = 0; q < 3; ++q) sum += std::abs(record.quantiles[t][unit][q] - end[q]);
  return sum / (3.0 * static_cast<double>(last));
}

constexpr double kShiftLr = 2.0;

Experiment covariate_shift(const LabContext& c) {
  Experiment e;
  e.name = "covariate_shift";
  // The fixed batch: the first 1000 test images (fewer if the slice is smaller).
  const data::Dataset& test = *c.test;
  int64_t m = std::min<int64_t>(1000, test.count);
  auto batch = std::make_shared<Tensor>(Shape{m, test.channels, test.rows, test.cols});
  data::copy_examples(test, 0, m, batch->data());
  auto records = std::make_shared<std::array<ShiftRecord, 2>>();
  for (bool with_bn : {false, true}) {
    // lr 2: the highest rate at which the network without BN learns too (at 0.5 it
    // stays at chance within these steps), so the drift of two learning networks compares.
    RunSpec spec = base_run(c, bn_name(with_bn), kThreeBy100, "Sigmoid()", with_bn, kShiftLr);
    spec.probe = [batch, records, with_bn](nn::Sequential& net, int64_t step, RunResult&) {
      probe_shift(net, *batch, (*records)[with_bn], step);
    };
    e.runs.push_back(spec);
  }
  Budget b = budget(c);
  e.report = [records, b, m](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "covariate_shift";
    r.title = "7. Internal covariate shift (the paper's Figure 1)";
    r.claim = "Batch normalization removes internal covariate shift: the distribution of each "
              "layer's inputs stays stable during training instead of drifting.";
    r.setup = "784-100-100-100-10 with sigmoid, plain SGD lr " + fmt_g(kShiftLr) +
              " (where both networks learn), batch 64, " +
              std::to_string(b.steps) + " steps. Every " + std::to_string(b.eval_every) +
              " steps the first " + std::to_string(m) + " test images go through the network "
              "(BN with the batch's own statistics, running statistics untouched) and the input "
              "of each sigmoid in the last hidden layer is read: the output of its BatchNorm, or "
              "of its Linear without BN. The charts follow unit 0, as the paper follows one "
              "typical unit; the verdict uses all 100: drift = mean distance of the 15/50/85th "
              "percentiles from where they end (in the sigmoid's input units), median over the "
              "units. Both charts share one y axis.";
    const size_t kUnit = 0;
    double drift[2];
    // One y range for both band charts, so the eye compares them directly.
    double y_low = INFINITY, y_high = -INFINITY;
    for (const ShiftRecord& rec : *records)
      for (const auto& per_unit : rec.quantiles)
        if (kUnit < per_unit.size() && std::isfinite(per_unit[kUnit][0]) && std::isfinite(per_unit[kUnit][2])) {
          y_low = std::min(y_low, per_unit[kUnit][0]);
          y_high = std::max(y_high, per_unit[kUnit][2]);
        }
    if (y_low < y_high) {
      std::vector<double> ticks = nice_ticks(y_low, y_high);
      y_low = ticks.front();
      y_high = ticks.back();
    }
    nlohmann::json shift_json = nlohmann::json::object();
    for (bool with_bn : {false, true}) {
      const ShiftRecord& rec = (*records)[with_bn];
      BandSpec band;
      band.title = std::string(with_bn ? "With BN" : "Without BN") + ": input to sigmoid unit 0";
      band.x_label = "training step";
      band.y_label = "input to the sigmoid";
      band.color = bn_color(with_bn);
      band.y_min = y_low;
      band.y_max = y_high;
      std::vector<double> drifts;
      size_t units = rec.quantiles.empty() ? 0 : rec.quantiles[0].size();
      for (size_t u = 0; u < units; ++u) drifts.push_back(unit_drift(rec, u));
      drift[with_bn] = percentile(drifts, 50);
      for (size_t t = 0; t < rec.steps.size(); ++t) {
        band.xs.push_back(static_cast<double>(rec.steps[t]));
        band.low.push_back(rec.quantiles[t][kUnit][0]);
        band.mid.push_back(rec.quantiles[t][kUnit][1]);
        band.high.push_back(rec.quantiles[t][kUnit][2]);
      }
      r.charts.push_back({band_chart_svg(band), std::string(bn_name(with_bn)) +
                                                    ": 15th, 50th and 85th percentile over training."});
      // A band under a tenth of the shared axis is a line there: drawn again on its own axis.
      double spread_low = INFINITY, spread_high = -INFINITY;
      for (size_t t = 0; t < band.xs.size(); ++t)
        if (std::isfinite(band.low[t]) && std::isfinite(band.high[t])) {
          spread_low = std::min(spread_low, band.low[t]);
          spread_high = std::max(spread_high, band.high[t]);
        }
      if (spread_low <= spread_high && spread_high - spread_low < 0.1 * (y_high - y_low)) {
        band.title += " (its own y axis)";
        band.y_min = band.y_max = NAN;
        r.charts.push_back({band_chart_svg(band), std::string(bn_name(with_bn)) +
                                                      ": the same, zoomed: on the shared axis "
                                                      "its band is too narrow to see."});
      }
      double unit0 = rec.quantiles.empty() ? NAN : unit_drift(rec, kUnit);
      shift_json[with_bn ? "with_bn" : "without_bn"] = {
          {"steps", rec.steps}, {"unit", kUnit}, {"q15", band.low}, {"q50", band.mid},
          {"q85", band.high},   {"median_drift", drift[with_bn]}, {"unit_drift", unit0}};
      r.table.rows.push_back({bn_name(with_bn), fmt(drift[with_bn]), fmt(unit0),
                              fmt(results[with_bn].final_test_accuracy)});
    }
    r.table.header = {"network", "median drift over 100 units", "drift of unit 0", "final test accuracy"};
    ChartSpec acc = accuracy_chart("Test accuracy (the paper's Figure 1a)");
    acc.series = {accuracy_series(results[0], "without BN", kColorWithoutBn),
                  accuracy_series(results[1], "with BN", kColorWithBn)};
    r.charts.push_back({line_chart_svg(acc), ""});
    r.verdict = paired_verdict({{"median drift", -drift[0], -drift[1]}}, 0.05,
                               "input drift (smaller counts as better)", "diverged",
                               [](double v) { return fmt(-v); });
    r.notes.push_back("This measures the drift, not that the drift is why BN helps: Santurkar et "
                      "al. (2018) argue BN's benefit comes from a smoother loss landscape.");
    r.csv = curves_csv(r.table, results);
    r.results = {{"shift", shift_json}, {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

// --- 8. Train mode against eval mode at inference ----------------------------

/* The classic mistake, normalising one example with its own statistics: the
   mean is the example itself and the variance 0, so x_hat = 0 and BN outputs
   beta for every input. Everything after the first BN is then constant, and
   the output is what the layers after the last BN make of its beta. The
   accuracy is the share of test labels equal to that constant prediction. */
double single_example_accuracy(nn::Sequential& net, const data::Dataset& test, int& predicted) {
  size_t last_bn = net.size();
  for (size_t i = 0; i < net.size(); ++i)
    if (dynamic_cast<nn::BatchNorm*>(&net[i])) last_bn = i;
  if (last_bn == net.size()) throw Error("inference_mode: the network has no BatchNorm");
  auto& bn = dynamic_cast<nn::BatchNorm&>(net[last_bn]);
  Tensor x(Shape{1, bn.num_features});
  for (int64_t c = 0; c < bn.num_features; ++c) {
    float beta = bn.affine ? bn.bias.value[c] : 0.0f;
    x[c] = bn.fuse_relu ? std::max(beta, 0.0f) : beta;  // a fused ReLU is part of BN's output
  }
  bool was_training = net.is_training();
  net.eval();
  const Tensor* y = &x;
  for (size_t i = last_bn + 1; i < net.size(); ++i) y = &net[i].forward(*y);
  net.train(was_training);
  predicted = static_cast<int>(std::max_element(y->data(), y->data() + y->numel()) - y->data());
  int64_t hits = std::count(test.labels.begin(), test.labels.end(), predicted);
  return static_cast<double>(hits) / static_cast<double>(test.count);
}

const std::vector<int64_t> kTrainModeBatches = {1000, 64, 8, 2};

// The tutorial's learning rate decides the verdict; the tenfold one shows how
// running statistics lag weights that still move fast.
const std::vector<double> kInferenceLearningRates = {0.01, 0.1};

/* After training: test accuracy in eval mode, with batch statistics at each
   batch size (running statistics restored by evaluate), at batch 1 (refused:
   the error is kept as the reason), and with the single-example mistake. */
void measure_inference_modes(nn::Sequential& net, const data::Dataset& test, nlohmann::json& x) {
  x["eval"] = train::evaluate(net, test, 1000, false).accuracy;
  for (int64_t batch : kTrainModeBatches)
    x["train_mode_" + std::to_string(batch)] = train::evaluate(net, test, batch, true).accuracy;
  try {
    x["train_mode_1"] = train::evaluate(net, test, 1, true).accuracy;
  } catch (const Error& err) {
    x["train_mode_1"] = nullptr;
    x["train_mode_1_error"] = err.what();
  }
  int predicted = -1;
  x["single_example_own_statistics"] = single_example_accuracy(net, test, predicted);
  x["single_example_predicted_class"] = predicted;
}

Experiment inference_mode(const LabContext& c) {
  Budget b = budget(c);
  Experiment e;
  e.name = "inference_mode";
  const data::Dataset* test = c.test;
  for (double lr : kInferenceLearningRates) {
    RunSpec spec;
    spec.label = "mlp-bn, lr " + fmt_g(lr);
    spec.arch = nn::preset_arch("mlp-bn");
    spec.with_bn = true;
    spec.lr = lr;
    spec.steps = b.inference_steps;
    spec.eval_every = b.eval_every;
    spec.seed = c.seed;
    spec.finish = [test](nn::Sequential& net, RunResult& result) {
      measure_inference_modes(net, *test, result.extra);
    };
    e.runs.push_back(spec);
  }
  int num_classes = c.test->num_classes;
  e.report = [b, num_classes](const std::vector<RunResult>& results) {
    ExperimentReport r;
    r.name = "inference_mode";
    r.title = "8. Train mode against eval mode at inference";
    r.claim = "At inference a BN network must use the population statistics it tracked "
              "(eval mode); batch statistics make a prediction depend on the rest of the batch, "
              "and with one example per batch every input normalises to beta.";
    r.setup = "The tutorial's mlp-bn (784-512-256-10) trained " + std::to_string(b.inference_steps) +
              " steps (plain SGD, batch 64) at the tutorial's lr 0.01, which decides the verdict, "
              "and at lr 0.1 for comparison; then the test set evaluated in eval mode and with "
              "batch statistics at several batch sizes (running statistics left untouched).";
    auto get = [](const nlohmann::json& x, const std::string& key) {
      return x.contains(key) && x[key].is_number() ? x[key].get<double>() : NAN;
    };
    BarChartSpec bars;
    bars.title = "Test accuracy of trained BN models by normalisation mode";
    bars.y_label = "test accuracy";
    bars.y_min = 0;
    bars.y_max = 1;
    bars.missing_label = "impossible";
    bars.width = 760;
    const char* colors[] = {kColorWithBn, "#9467bd"};
    r.table.header = {"mode"};
    std::vector<std::string> keys = {"eval"};
    std::vector<std::string> categories = {"eval"};
    std::vector<std::string> rows = {"eval mode (population statistics)"};
    for (int64_t batch : kTrainModeBatches) {
      keys.push_back("train_mode_" + std::to_string(batch));
      categories.push_back("batch " + std::to_string(batch));
      rows.push_back("batch statistics, batch " + std::to_string(batch));
    }
    keys.insert(keys.end(), {"train_mode_1", "single_example_own_statistics"});
    categories.insert(categories.end(), {"batch 1", "1, own stats"});
    rows.insert(rows.end(), {"batch statistics, batch 1",
                             "one example normalised by its own statistics (output = beta)"});
    bars.categories = categories;
    r.table.rows.resize(rows.size());
    for (size_t k = 0; k < rows.size(); ++k) r.table.rows[k].push_back(rows[k]);
    nlohmann::json modes = nlohmann::json::object();
    for (size_t i = 0; i < results.size(); ++i) {
      const RunResult& run = results[i];
      const nlohmann::json& x = run.extra;
      r.table.header.push_back(run.label);
      BarSeries series{run.label, {}, colors[i % 2]};
      for (size_t k = 0; k < keys.size(); ++k) {
        double v = get(x, keys[k]);
        series.values.push_back(v);
        std::string text = fmt(v);
        if (std::isnan(v))
          text = run.diverged ? "diverged"
                 : x.contains(keys[k] + "_error") ? "impossible: " + x[keys[k] + "_error"].get<std::string>()
                                                  : "-";
        r.table.rows[k].push_back(text);
      }
      bars.series.push_back(series);
      modes[run.label] = x;
    }
    r.charts = {{bar_chart_svg(bars), "The same test set; only the way BN normalises changes."}};
    const RunResult& tutorial = results[0];
    const nlohmann::json& x = tutorial.extra;
    if (!tutorial.diverged)
      r.verdict = inference_verdict(get(x, "eval"), get(x, "train_mode_64"),
                                    get(x, "single_example_own_statistics"), num_classes);
    else
      r.verdict = {Verdict::mixed, "the model diverged during training: " + tutorial.divergence};
    if (x.contains("train_mode_1_error"))
      r.notes.push_back("Batch statistics on a batch of one are impossible: the variance of one "
                        "value per channel is 0 and its unbiased estimate is undefined, so bnlab "
                        "refuses (PyTorch raises \"Expected more than 1 value per channel when "
                        "training\"). bnlab says: " + x["train_mode_1_error"].get<std::string>());
    if (x.contains("single_example_predicted_class"))
      r.notes.push_back("Normalising each example by its own statistics makes the network "
                        "predict class " +
                        std::to_string(x["single_example_predicted_class"].get<int>()) +
                        " for every input: the accuracy is that class's share of the test set.");
    for (size_t i = 1; i < results.size(); ++i) {
      const nlohmann::json& y = results[i].extra;
      double eval = get(y, "eval"), batch64 = get(y, "train_mode_64");
      if (eval < batch64 - 0.01)
        r.notes.push_back(results[i].label + ": eval mode " + fmt(eval) + " trails batch statistics "
                          "at batch 64 (" + fmt(batch64) + "): running averages (momentum 0.1) "
                          "lag weights that still move fast.");
    }
    r.csv = curves_csv(r.table, results);
    r.results = {{"modes", modes}, {"runs", runs_json(results)}};
    return r;
  };
  return e;
}

}  // namespace

std::vector<std::string> all_experiment_names() {
  return {"convergence",     "learning_rate",  "initialization", "activations",
          "depth",           "regularization", "covariate_shift", "inference_mode",
          "ghost_batch",     "precise_bn",     "small_batch"};
}

Experiment plan_experiment(const std::string& name, const LabContext& context) {
  if (name == "convergence") return convergence(context);
  if (name == "learning_rate") return learning_rate(context);
  if (name == "initialization") return initialization(context);
  if (name == "activations") return activations(context);
  if (name == "depth") return depth(context);
  if (name == "regularization") return regularization(context);
  if (name == "covariate_shift") return covariate_shift(context);
  if (name == "inference_mode") return inference_mode(context);
  if (name == "ghost_batch") return ghost_batch_experiment(context);
  if (name == "precise_bn") return precise_bn_experiment(context);
  if (name == "small_batch") return small_batch_experiment(context);
  throw Error("unknown experiment \"" + name + "\"");
}

}  // namespace bnlab::lab
