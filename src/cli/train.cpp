// bnlab train: trains an architecture (text or preset) on the training split,
// evaluates it on the test split, and saves a checkpoint if asked.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bnlab/dist/mpi_replicas.hpp"
#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/nn/loss.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "bnlab/optim/lr_schedule.hpp"
#include "bnlab/train/precise_bn.hpp"
#include "bnlab/train/progress.hpp"
#include "bnlab/train/trainer.hpp"
#include "common.hpp"

namespace bnlab::cli {
namespace {

struct TrainCommandOptions {
  std::string arch, model;
  int64_t epochs = 10;
  train::TrainOptions train;
  uint64_t seed = 0;
  std::string save;
  bool json = false;
  DataOptions data;
  int threads = 0;
  bool sync_bn = false;
  int64_t bucket_kb = 512;
  bool no_overlap = false;
  bool freeze_bn = false, freeze_bn_affine = false;
  std::vector<double> betas{0.9, 0.999};
  int64_t precise_bn = 0;  // batches; 0: keep the moving averages
  std::string precision = "fp32";
};

// The options given on the command line that the chosen optimizer has no use
// for, and AdamW's default weight decay: usage errors, not silently ignored.
void check_optimizer_options(const CLI::App& command, train::TrainOptions& options) {
  const bool sgd = options.optimizer == "sgd";
  const std::vector<std::string> unused =
      sgd ? std::vector<std::string>{"--betas", "--eps"}
          : std::vector<std::string>{"--momentum", "--nesterov", "--dampening"};
  for (const std::string& name : unused) {
    const CLI::Option* option = command.get_option(name);
    if (option->count() == 0) continue;
    std::string given = name;  // "--betas 0.9,0.99", "--nesterov"
    if (option->get_expected_min() > 0)
      for (size_t i = 0; i < option->results().size(); ++i)
        given += (i == 0 ? " " : ",") + option->results()[i];
    throw CLI::ValidationError(given, "applies to --optimizer " +
                                          std::string(sgd ? "adam and adamw" : "sgd") +
                                          " only, not to --optimizer " + options.optimizer +
                                          (sgd ? "" : " (Adam's momentum is --betas B1,B2)"));
  }
  if (options.optimizer == "adamw" && command.get_option("--weight-decay")->count() == 0)
    options.weight_decay = 0.01;  // torch.optim.AdamW's default
  if (options.nesterov && (options.momentum <= 0.0 || options.dampening != 0.0))
    throw CLI::ValidationError("--nesterov",
                               "needs --momentum > 0 and --dampening 0 (PyTorch's rule)");
  if (!options.lr_schedule.empty() || options.warmup_epochs > 0) {
    try {
      optim::LrSchedule(options.lr_schedule, options.lr, options.epochs, options.warmup_epochs);
    } catch (const Error& e) {
      std::string given = options.lr_schedule.empty() ? "" : "--lr-schedule " + options.lr_schedule;
      if (options.warmup_epochs > 0)
        given += (given.empty() ? "" : " ") + std::string("--warmup-epochs ") +
                 std::to_string(options.warmup_epochs) + " (--epochs " +
                 std::to_string(options.epochs) + ")";
      throw CLI::ValidationError(given, e.what());
    }
  }
}

// "sgd lr 0.1", "adamw lr 0.001 (cosine, warmup 2 epochs)"
std::string optimizer_text(const train::TrainOptions& options) {
  char lr[32];
  std::snprintf(lr, sizeof lr, "%g", options.lr);
  std::string text = options.optimizer + " lr " + lr;
  std::string schedule = options.lr_schedule;
  if (options.warmup_epochs > 0)
    schedule += (schedule.empty() ? "" : ", ") + std::string("warmup ") +
                std::to_string(options.warmup_epochs) + " epochs";
  return schedule.empty() ? text : text + " (" + schedule + ")";
}

// Per-step times of a data-parallel run, for --json (rank 0's clock).
nlohmann::json step_timing(const train::StepTimes& t, const dist::CollectiveTimes& c) {
  const double steps = t.steps > 0 ? double(t.steps) : 1.0;
  return {{"steps", t.steps},
          {"forward", t.forward / steps},
          {"loss", t.loss / steps},
          {"backward", t.backward / steps},
          {"gradient_wait", t.gradient_wait / steps},
          {"update", t.update / steps},
          {"sync_bn", c.sync_bn_seconds / steps},
          {"sync_bn_collectives", double(c.sync_bn_calls) / steps},
          {"gradient_start", c.gradient_start_seconds / steps},
          {"gradient_floats", c.gradient_floats},
          {"buckets", c.buckets}};
}

void run_train(const TrainCommandOptions& o, const CLI::App& command, CLI::Option* arch_option,
               CLI::Option* model_option) {
  if (arch_option->count() == 0 && model_option->count() == 0)
    throw CLI::RequiredError("--arch TEXT or --model PRESET");
  train::TrainOptions options = o.train;
  options.beta1 = o.betas[0];
  options.beta2 = o.betas[1];
  options.epochs = o.epochs;
  check_optimizer_options(command, options);
  apply_threads(o.threads);
  apply_precision(o.precision);  // refuses bf16 on a CPU without it
  const std::string arch = o.arch.empty() ? nn::preset_arch(o.model) : o.arch;
  const int64_t test_limit = o.data.limit > 0 ? std::max<int64_t>(1, o.data.limit / 6) : 0;
  const data::Split split = load_data(o.data, o.data.limit, test_limit);
  std::unique_ptr<nn::Sequential> net = build_network(arch, o.seed, split.train);
  if (o.freeze_bn || o.freeze_bn_affine) net->freeze_batch_norm(o.freeze_bn_affine);

  options.seed = o.seed;
  // Under mpirun: one model over every process (stdout is rank 0's alone).
  dist::MpiReplicas* replicas = dist::world();
  const int ranks = replicas ? replicas->size() : 1;
  const bool root = replicas == nullptr || replicas->rank() == 0;
  if (const std::string note = nn::final_softmax_warning(*net); root && !note.empty())
    std::fprintf(stderr, "bnlab: warning: %s\n", note.c_str());
  if (replicas) {
    replicas->set_bucket_bytes(o.bucket_kb * 1024);
    replicas->set_overlap(!o.no_overlap);
    if (o.sync_bn) dist::convert_sync_batch_norm(*net, *replicas);
    options.replicas = replicas;
  }
  train::Trainer trainer(*net, options);
  std::printf("training %s\n  on %lld images of %s, batch %lld, %s, %lld epochs\n", arch.c_str(),
              static_cast<long long>(split.train.count), o.data.dir.c_str(),
              static_cast<long long>(options.batch), optimizer_text(options).c_str(),
              static_cast<long long>(o.epochs));
  if (replicas)
    std::printf("  on %d processes: global batch %lld, BatchNorm %s\n", ranks,
                static_cast<long long>(options.batch * ranks),
                o.sync_bn ? "synchronized (SyncBatchNorm)" : "per process (no --sync-bn)");
  std::fflush(stdout);
  const int64_t global_batch = options.batch * ranks;
  train::TrainOptions counting = options;
  counting.batch = global_batch;

  nlohmann::json epochs = nlohmann::json::array();
  std::vector<double> losses;
  double train_seconds = 0.0;
  int64_t train_images = 0;
  bool diverged = false;
  for (int64_t epoch = 0; epoch < o.epochs && !diverged; ++epoch) {
    const std::string label =
        "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(o.epochs);
    // Progress lines (stderr) from rank 0 only.
    std::optional<Progress> progress;
    if (root) progress.emplace(label, steps_per_epoch(split.train.count, counting), "img");
    char status[48];
    auto on_step = [&](int64_t step, int64_t, double loss) {
      if (!progress) return;
      std::snprintf(status, sizeof status, "loss %.3f", loss);
      progress->update(step, std::min(step * global_batch, split.train.count), status);
    };
    const train::EpochResult r = trainer.train_epoch(split.train, epoch, on_step);
    const int64_t images = std::min(r.steps * global_batch, split.train.count);
    const double rate = r.seconds > 0 ? double(images) / r.seconds : 0.0;
    std::snprintf(status, sizeof status, "loss %s, %.0f img/s", loss_text(r.mean_loss).c_str(),
                  rate);
    if (progress) progress->finish(status);
    train_seconds += r.seconds;
    train_images += images;
    losses.push_back(r.mean_loss);
    diverged = r.diverged;
    std::printf("epoch %lld/%lld  loss %s  train accuracy %s  %.2f s  %.0f img/s%s\n",
                static_cast<long long>(epoch + 1), static_cast<long long>(o.epochs),
                loss_text(r.mean_loss).c_str(),
                percent(r.accuracy).c_str(), r.seconds, rate, r.diverged ? "  DIVERGED" : "");
    if (o.precise_bn > 0 && !r.diverged) {
      // Precise BN: the same batches on every process (same seed), so they agree.
      const nn::RecalibrationResult p = train::recalibrate_batch_norm(
          *net, split.train, o.precise_bn, options.batch, o.seed + uint64_t(epoch));
      std::printf("  precise BN: %lld layer(s) recalibrated on %lld images\n",
                  static_cast<long long>(p.layers), static_cast<long long>(p.examples));
    }
    std::fflush(stdout);
    epochs.push_back({{"epoch", epoch + 1},
                      {"train_loss", r.mean_loss},
                      {"train_accuracy", r.accuracy},
                      {"lr", r.lr},
                      {"seconds", r.seconds},
                      {"images_per_second", rate}});
  }
  if (diverged)
    std::fprintf(stderr, "bnlab: warning: the loss became non-finite; training stopped (try a "
                         "smaller --lr)\n");

  // Without --sync-bn each rank's running statistics saw only its slices:
  // evaluate and save their mean over the ranks (docs/distributed.md).
  if (replicas && !o.sync_bn) train::average_running_statistics(*net, *replicas);
  const train::EvalResult test = train::evaluate(*net, split.test, kEvalBatch, false, replicas);
  std::printf("test: accuracy %s  loss %s  (%lld images, eval mode)\n",
              percent(test.accuracy).c_str(), loss_text(test.loss).c_str(), static_cast<long long>(test.count));
  if (!o.save.empty() && root) {
    nn::save_checkpoint(o.save, *net, arch);
    std::printf("saved %s\n", o.save.c_str());
  }
  std::fflush(stdout);

  if (o.json && root) {
    nlohmann::json result = {
        {"arch", arch},
        {"optimizer", options.optimizer},
        {"batch", options.batch},
        {"lr", options.lr},
        {"lr_schedule", options.lr_schedule.empty() ? "constant" : options.lr_schedule},
        {"warmup_epochs", options.warmup_epochs},
        {"seed", o.seed},
        {"precision", o.precision},
        {"epochs", epochs},
        {"train_loss", losses},
        {"diverged", diverged},
        {"test_accuracy", test.accuracy},
        {"test_loss", test.loss},
        {"seconds", train_seconds},
        {"images_per_second", train_seconds > 0 ? train_images / train_seconds : 0.0}};
    if (replicas)
      result["distributed"] = {
          {"processes", ranks},
          {"global_batch", global_batch},
          {"sync_bn", o.sync_bn},
          {"overlap", !o.no_overlap},
          {"bucket_kb", o.bucket_kb},
          {"per_step_seconds", step_timing(trainer.times(), replicas->times())}};
    print_json_line(result);
  }
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<TrainCommandOptions>();
  CLI::App* command = app.add_subcommand("train", "Train a network and evaluate it on the test split");
  CLI::Option* arch = command->add_option(
      "--arch", o->arch, "Architecture in PyTorch's notation, e.g. \"Flatten(), Linear(784, 10)\"");
  CLI::Option* model = command->add_option("--model", o->model, "A preset: mlp, mlp-bn, cnn, cnn-bn")
                           ->check(CLI::IsMember(nn::preset_names()));
  arch->excludes(model);
  command->add_option("--epochs", o->epochs, "Passes over the training split")
      ->capture_default_str()->check(positive());
  command
      ->add_option("--batch", o->train.batch,
                   "Batch size (under mpirun: per process, as in PyTorch's DDP)")
      ->capture_default_str()
      ->check(positive());
  command->add_option("--lr", o->train.lr, "Learning rate")
      ->capture_default_str()->check(positive());
  command
      ->add_option("--optimizer", o->train.optimizer,
                   "sgd, adam or adamw (torch.optim.SGD, Adam, AdamW)")
      ->capture_default_str()
      ->check(CLI::IsMember({"sgd", "adam", "adamw"}));
  command->add_option("--momentum", o->train.momentum, "SGD momentum")
      ->capture_default_str()->check(non_negative());
  command
      ->add_option("--dampening", o->train.dampening,
                   "SGD: the buffer takes (1 - dampening) of each gradient")
      ->capture_default_str()
      ->check(number_in(0.0, 1.0, true));
  command->add_flag("--nesterov", o->train.nesterov,
                    "SGD: Nesterov momentum (needs --momentum > 0, --dampening 0)");
  command->add_option("--betas", o->betas, "Adam, AdamW: B1,B2 for the moments' averages")
      ->delimiter(',')
      ->expected(2)
      ->capture_default_str()
      ->check(number_in(0.0, 1.0, false));
  command->add_option("--eps", o->train.eps, "Adam, AdamW: added to the denominator")
      ->capture_default_str()
      ->check(non_negative());
  command
      ->add_option("--weight-decay", o->train.weight_decay,
                   "sgd, adam: L2 penalty added to the gradient; adamw: decoupled decay, "
                   "p *= 1 - lr*wd (default 0.01 with adamw)")
      ->capture_default_str()
      ->check(non_negative());
  command
      ->add_option("--clip-grad-norm", o->train.clip_grad_norm,
                   "Scale the gradients to this global 2-norm when above it "
                   "(clip_grad_norm_; 0: off)")
      ->capture_default_str()
      ->check(non_negative());
  command
      ->add_option("--label-smoothing", o->train.label_smoothing,
                   "CrossEntropyLoss(label_smoothing=...) for training; the test loss stays plain")
      ->capture_default_str()
      ->check(number_in(0.0, 1.0, true));
  command
      ->add_option("--lr-schedule", o->train.lr_schedule,
                   "constant, step:EPOCHS:GAMMA, multistep:E1,E2,...:GAMMA, cosine (per epoch, "
                   "over the epochs after the warmup) or onecycle (per batch, max lr = --lr)")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            try {
              optim::LrSchedule::check_text(text);
            } catch (const Error& e) {
              return e.what();
            }
            return "";
          },
          "SCHEDULE"));
  command
      ->add_option("--warmup-epochs", o->train.warmup_epochs,
                   "Linear warmup from lr*0.01 over these epochs, then the schedule "
                   "(LinearLR + SequentialLR; not with onecycle)")
      ->capture_default_str()
      ->check(non_negative());
  command->add_option("--seed", o->seed, "Seed for the weights and the shuffling")
      ->capture_default_str();
  command->add_option("--save", o->save, "Write a safetensors checkpoint (with the architecture)");
  command->add_flag("--freeze-bn", o->freeze_bn,
                    "BatchNorm normalizes with its running statistics and never updates them");
  command->add_flag("--freeze-bn-affine", o->freeze_bn_affine,
                    "--freeze-bn, and BatchNorm's weight and bias stop training too");
  command
      ->add_option("--precise-bn", o->precise_bn,
                   "After each epoch, set every BatchNorm's running statistics to the population "
                   "statistics of K training batches (precise BN; see bnlab recalibrate)")
      ->check(positive());
  command->add_flag("--json", o->json, "End with one JSON line: losses, test accuracy, speed");
  add_data_options(*command, o->data,
                   "Train on the first N examples and test on the first N/6 (quick runs)");
  add_threads_option(*command, o->threads);
  command->add_flag(
      "--sync-bn", o->sync_bn,
      "Under mpirun: every BatchNorm normalizes with the statistics of the whole global batch "
      "(SyncBatchNorm), so K processes x batch B train as one process with batch K*B. Without "
      "it each process normalizes its own B examples (noisier statistics, a different model), "
      "and eval and --save use the running statistics averaged over the processes");
  command
      ->add_option("--bucket-kb", o->bucket_kb,
                   "Under mpirun: gradient bucket size; each bucket is summed while the "
                   "backward goes on")
      ->capture_default_str()
      ->check(positive());
  add_precision_option(*command, o->precision);
  command->add_flag("--no-overlap", o->no_overlap,
                    "Under mpirun: sum the gradients after the backward instead of during it "
                    "(for measuring the overlap)");
  command->footer(
      "Examples:\n"
      "  bnlab train --model mlp-bn --epochs 2\n"
      "  bnlab train --arch \"Flatten(), Linear(784, 100, bias=False), BatchNorm1d(100), ReLU(), "
      "Linear(100, 10)\" --optimizer adam --lr 0.001 --save small.safetensors\n"
      "  bnlab train --model cnn-bn --data /usr/share/datasets/mnist --json\n"
      "  bnlab train --model mlp-bn --epochs 6 --optimizer adamw --lr 0.002 --lr-schedule cosine "
      "--warmup-epochs 1 --clip-grad-norm 1 --label-smoothing 0.1\n"
      "  bnlab train --model mlp --epochs 4 --momentum 0.9 --nesterov --lr-schedule step:2:0.1\n"
      "  mpirun -np 2 bnlab train --model cnn-bn --batch 32 --sync-bn   (2 processes, global "
      "batch 64; docs/distributed.md)");
  command->callback([o, command, arch, model] { run_train(*o, *command, arch, model); });
}

}  // namespace bnlab::cli
