// bnlab recalibrate --weights IN --out OUT: a thin shell over
// train::recalibrate_batch_norm. Scores the test split in eval mode before
// and after, and writes the recalibrated checkpoint (atomically).
#include "recalibrate.hpp"

#include <cstdio>
#include <memory>
#include <string>

#include "bnlab/io/safetensors.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "bnlab/train/precise_bn.hpp"
#include "bnlab/train/trainer.hpp"
#include "common.hpp"

namespace bnlab::cli {
namespace {

struct RecalibrateOptions {
  std::string weights, out, arch;
  int64_t batches = 200;  // fvcore's default number of iterations
  int64_t batch = 64;
  uint64_t seed = 0;
  bool json = false;
  DataOptions data;
  int threads = 0;
};

void run_recalibrate(const RecalibrateOptions& o) {
  apply_threads(o.threads);
  const io::SafetensorsFile file = io::read_safetensors(o.weights);
  const std::string arch = checkpoint_arch(file, o.weights, o.arch);
  const data::Split split = load_data(o.data, o.data.limit, o.data.limit);
  std::unique_ptr<nn::Sequential> net = build_network(arch, 0, split.train);
  nn::load_state_dict(*net, file);
  const train::EvalResult before = train::evaluate(*net, split.test, kEvalBatch);
  const nn::RecalibrationResult r =
      train::recalibrate_batch_norm(*net, split.train, o.batches, o.batch, o.seed);
  const train::EvalResult after = train::evaluate(*net, split.test, kEvalBatch);
  nn::save_checkpoint(o.out, *net, arch);
  std::printf(
      "recalibrated %lld normalization layer(s) on %lld batches (%lld training images "
      "of %s)\n  test accuracy %s before, %s after  (loss %s, %s; %lld images, eval "
      "mode)\nwrote %s\n",
      static_cast<long long>(r.layers), static_cast<long long>(r.batches),
      static_cast<long long>(r.examples), o.data.dir.c_str(), percent(before.accuracy).c_str(),
      percent(after.accuracy).c_str(), loss_text(before.loss).c_str(),
      loss_text(after.loss).c_str(), static_cast<long long>(after.count), o.out.c_str());
  std::fflush(stdout);
  if (o.json)
    print_json_line({{"layers", r.layers},
                     {"batches", r.batches},
                     {"examples", r.examples},
                     {"test_accuracy_before", before.accuracy},
                     {"test_accuracy_after", after.accuracy},
                     {"test_loss_before", before.loss},
                     {"test_loss_after", after.loss},
                     {"out", o.out}});
}

}  // namespace

void add_recalibrate_command(CLI::App& app) {
  auto o = std::make_shared<RecalibrateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "recalibrate",
      "Precise BN: set every BatchNorm's running statistics to the population statistics of "
      "K training batches");
  cmd->add_option("--weights", o->weights, "A safetensors checkpoint")->required();
  cmd->add_option("--out", o->out, "Where to write the recalibrated checkpoint")->required();
  cmd->add_option("--arch", o->arch, "Architecture text, for files that do not carry one");
  cmd->add_option("--batches", o->batches,
                  "Training batches K whose statistics replace the running ones")
      ->capture_default_str()
      ->check(positive());
  cmd->add_option("--batch", o->batch, "Examples per batch B (the training batch size)")
      ->capture_default_str()
      ->check(positive());
  cmd->add_option("--seed", o->seed, "Seed for the order the batches are drawn in")
      ->capture_default_str();
  cmd->add_flag("--json", o->json,
                "End with one JSON line: layers, batches, test accuracy and loss before and after");
  add_data_options(*cmd, o->data, "Use the first N training and N test examples (quick runs)");
  add_threads_option(*cmd, o->threads);
  cmd->footer(
      "Each BatchNorm (and GhostBatchNorm, BatchRenorm) gets the exact mean and unbiased\n"
      "variance of its input over all K*B training examples, the network running in training\n"
      "mode as it does while it trains; not a moving average. docs/toolkit.md, Precise BN.\n"
      "Examples:\n"
      "  bnlab train --model cnn-bn --epochs 2 --save cnn-bn.safetensors\n"
      "  bnlab recalibrate --weights cnn-bn.safetensors --out cnn-bn-precise.safetensors\n"
      "  bnlab recalibrate --weights cnn-bn.safetensors --out cnn-bn-precise.safetensors "
      "--batches 100 --batch 128 --json");
  cmd->callback([o] { run_recalibrate(*o); });
}

}  // namespace bnlab::cli
