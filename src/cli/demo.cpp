// bnlab demo: the tutorial's experiment. The same MLP (784-512-256-10, ReLU)
// without and with batch normalization, from the same seed, on the same
// batches: batch 64, plain SGD at lr 0.01, cross-entropy. Per epoch the mean
// training loss of each; at the end the test accuracy of each in eval mode
// and, for the BN model, in train mode (batch statistics of 64 test images);
// a side-by-side table and an SVG chart of the two loss curves.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/io/atomic_file.hpp"
#include "bnlab/io/safetensors.hpp"
#include "bnlab/lab/chart.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/train/progress.hpp"
#include "bnlab/train/trainer.hpp"
#include "common.hpp"

namespace bnlab::cli {
namespace {

struct DemoOptions {
  int64_t epochs = 10;
  uint64_t seed = 0;
  std::string svg = "demo_loss.svg";
  bool json = false;
  DataOptions data;
  int threads = 0;
  std::string precision = "fp32";
};

// One of the two networks the demo compares, with its training state.
struct DemoRun {
  std::string name;   // "without_bn", "with_bn"
  std::string title;  // "without BN", "with BN"
  std::string arch;
  std::unique_ptr<nn::Sequential> net;
  std::unique_ptr<train::Trainer> trainer;
  std::vector<double> train_loss;  // mean per epoch
  std::vector<double> step_loss;   // every step, for the chart
  double seconds = 0.0;
};

constexpr int64_t kBatch = 64;
constexpr double kLearningRate = 0.01;

void train_one_epoch(DemoRun& run, const data::Dataset& train_data, int64_t epoch,
                     int64_t epochs, const train::TrainOptions& options) {
  Progress progress("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs) + " " +
                        run.title,
                    steps_per_epoch(train_data.count, options), "img");
  char status[48];
  const auto on_step = [&](int64_t step, int64_t, double loss) {
    run.step_loss.push_back(loss);
    std::snprintf(status, sizeof status, "loss %.3f", loss);
    progress.update(step, std::min(step * options.batch, train_data.count), status);
  };
  const train::EpochResult r = run.trainer->train_epoch(train_data, epoch, on_step);
  std::snprintf(status, sizeof status, "loss %.4f, %.0f img/s", r.mean_loss,
                r.seconds > 0 ? double(train_data.count) / r.seconds : 0.0);
  if (Progress::is_terminal()) {
    // The epoch's row in the table is the record; the bar just goes away.
    std::fputs("\r\033[K", stderr);
  } else {
    progress.finish(status);
  }
  run.train_loss.push_back(r.mean_loss);
  run.seconds += r.seconds;
}

// Writes the chart of the two training-loss curves and returns the line that
// says where. Each point is the mean step loss over a tenth of an epoch,
// placed at the fraction of training done (x in epochs), so even one epoch
// shows a curve.
std::string write_loss_chart(const std::vector<DemoRun>& runs, int64_t steps_per_epoch,
                             const std::string& path) {
  lab::ChartSpec chart;
  chart.title = "Training loss of the tutorial's MLP";
  chart.x_label = "epoch";
  chart.y_label = "training loss (mean over 1/10 epoch)";
  const int64_t block = std::max<int64_t>(1, steps_per_epoch / 10);
  const char* colors[] = {lab::kColorWithoutBn, lab::kColorWithBn};
  for (size_t i = 0; i < runs.size(); ++i) {
    lab::Series series;
    series.name = runs[i].title;
    series.color = colors[i % 2];
    const std::vector<double>& losses = runs[i].step_loss;
    for (size_t begin = 0; begin < losses.size(); begin += size_t(block)) {
      const size_t end = std::min(losses.size(), begin + size_t(block));
      double sum = 0.0;
      for (size_t s = begin; s < end; ++s) sum += losses[s];
      series.xs.push_back(double(end) / double(steps_per_epoch));
      series.ys.push_back(sum / double(end - begin));
    }
    chart.series.push_back(std::move(series));
  }
  try {
    io::write_file_atomic(path, lab::line_chart_svg(chart));
  } catch (const Error& e) {
    // The numbers above are the result; a folder we cannot write to does not
    // take them (or the --json line) away.
    std::fprintf(stderr, "bnlab: warning: %s\n", e.what());
    return "loss chart: not written (" + path + ": see the warning above)";
  }
  return "loss chart: " + path;
}

void run_demo(const DemoOptions& o) {
  apply_threads(o.threads);
  apply_precision(o.precision);
  const int64_t test_limit = o.data.limit > 0 ? std::max<int64_t>(1, o.data.limit / 6) : 0;
  const data::Split split = load_data(o.data, o.data.limit, test_limit);

  train::TrainOptions options;
  options.batch = kBatch;
  options.optimizer = "sgd";
  options.lr = kLearningRate;
  options.seed = o.seed;

  std::vector<DemoRun> runs(2);
  runs[0].name = "without_bn", runs[0].title = "without BN", runs[0].arch = nn::preset_arch("mlp");
  runs[1].name = "with_bn", runs[1].title = "with BN", runs[1].arch = nn::preset_arch("mlp-bn");
  for (DemoRun& run : runs) {
    run.net = build_network(run.arch, o.seed, split.train);
    run.trainer = std::make_unique<train::Trainer>(*run.net, options);
    run.step_loss.reserve(size_t(o.epochs * steps_per_epoch(split.train.count, options)));
  }

  std::printf("The tutorial's MLP without and with batch normalization\n");
  std::printf("  data: %lld training and %lld test images from %s\n",
              static_cast<long long>(split.train.count), static_cast<long long>(split.test.count),
              o.data.dir.c_str());
  std::printf("  batch %lld, SGD lr %g, seed %llu, %lld epochs\n", static_cast<long long>(kBatch),
              kLearningRate, static_cast<unsigned long long>(o.seed),
              static_cast<long long>(o.epochs));
  for (const DemoRun& run : runs) std::printf("  %-10s  %s\n", run.title.c_str(), run.arch.c_str());
  std::printf("\n%5s  %24s  %24s\n", "epoch", "train loss without BN", "train loss with BN");
  std::fflush(stdout);

  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    for (DemoRun& run : runs) train_one_epoch(run, split.train, epoch, o.epochs, options);
    std::printf("%5lld  %24.4f  %24.4f\n", static_cast<long long>(epoch + 1),
                runs[0].train_loss.back(), runs[1].train_loss.back());
    std::fflush(stdout);
  }

  const train::EvalResult plain = train::evaluate(*runs[0].net, split.test, kEvalBatch);
  const train::EvalResult bn_eval = train::evaluate(*runs[1].net, split.test, kEvalBatch);
  // Batch statistics need two or more values per channel: a test split whose
  // last batch holds one example (a --limit such as 390) cannot be scored so.
  nlohmann::json train_mode_accuracy = nullptr;
  std::string train_mode_text = "-";
  try {
    const train::EvalResult r =
        train::evaluate(*runs[1].net, split.test, kBatch, /*train_mode=*/true);
    train_mode_accuracy = r.accuracy;
    train_mode_text = percent(r.accuracy);
  } catch (const Error& e) {
    std::fprintf(stderr, "bnlab: note: no train-mode accuracy: %s\n", e.what());
  }

  std::printf("\n%-44s  %12s  %12s\n", "", "without BN", "with BN");
  std::printf("%-44s  %12.4f  %12.4f\n", "final training loss", runs[0].train_loss.back(),
              runs[1].train_loss.back());
  std::printf("%-44s  %12s  %12s\n", "test accuracy (eval mode: running statistics)",
              percent(plain.accuracy).c_str(), percent(bn_eval.accuracy).c_str());
  std::printf("%-44s  %12s  %12s\n", "test accuracy (train mode: batches of 64)", "-",
              train_mode_text.c_str());
  std::printf("%-44s  %12.1f  %12.1f\n", "training seconds", runs[0].seconds, runs[1].seconds);
  std::printf("\n%s\n", write_loss_chart(runs, steps_per_epoch(split.train.count, options), o.svg).c_str());
  std::fflush(stdout);

  if (o.json) {
    print_json_line({{"runs",
                      {{{"name", runs[0].name},
                        {"train_loss", runs[0].train_loss},
                        {"test_accuracy", plain.accuracy}},
                       {{"name", runs[1].name},
                        {"train_loss", runs[1].train_loss},
                        {"test_accuracy", bn_eval.accuracy},
                        {"test_accuracy_train_mode", train_mode_accuracy}}}}});
  }
}

}  // namespace

void add_demo_command(CLI::App& app) {
  auto o = std::make_shared<DemoOptions>();
  CLI::App* command = app.add_subcommand(
      "demo", "The tutorial's experiment: the same MLP without and with batch normalization");
  command->add_option("--epochs", o->epochs, "Passes over the training split")
      ->capture_default_str()->check(positive());
  command->add_option("--seed", o->seed, "Seed for the weights (both models) and the shuffling")
      ->capture_default_str();
  command->add_option("--svg", o->svg, "Where to write the chart of the two loss curves")
      ->capture_default_str();
  command->add_flag("--json", o->json, "End with one JSON line: losses and accuracies");
  add_precision_option(*command, o->precision);
  add_data_options(*command, o->data,
                   "Train on the first N examples and test on the first N/6 (quick runs)");
  add_threads_option(*command, o->threads);
  command->footer(
      "Examples:\n"
      "  bnlab demo                      10 epochs on Fashion-MNIST\n"
      "  bnlab demo --epochs 2 --svg /tmp/loss.svg\n"
      "  bnlab demo --data /usr/share/datasets/mnist --json");
  command->callback([o] { run_demo(*o); });
}

}  // namespace bnlab::cli
