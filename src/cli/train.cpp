// bnlab train: trains an architecture (text or preset) on the training split,
// evaluates it on the test split, and saves a checkpoint if asked.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bnlab/dist/mpi_replicas.hpp"
#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/nn/loss.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "bnlab/io/atomic_file.hpp"
#include "bnlab/train/checkpoint.hpp"
#include "bnlab/optim/lr_schedule.hpp"
#include "bnlab/train/precise_bn.hpp"
#include "bnlab/train/progress.hpp"
#include "bnlab/train/trainer.hpp"
#include "bnlab/train/validation.hpp"
#include "common.hpp"
#include "stop_signals.hpp"

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
  int64_t test_limit = 0;
  double val_split = 0.0;
  std::string resume, init, save_best;
  int64_t checkpoint_every = 0;
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

// The options a resumed run must share with the run that saved the
// checkpoint to continue it exactly (compared as text).
std::map<std::string, std::string> run_settings(const TrainCommandOptions& o,
                                                const std::string& arch,
                                                const train::TrainOptions& options, int ranks,
                                                int64_t train_examples) {
  const auto number = [](double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", value);
    return std::string(text);
  };
  return {{"arch", arch},
          {"optimizer", options.optimizer},
          {"lr", number(options.lr)},
          {"momentum", number(options.momentum)},
          {"weight_decay", number(options.weight_decay)},
          {"dampening", number(options.dampening)},
          {"nesterov", options.nesterov ? "true" : "false"},
          {"betas", number(options.beta1) + "," + number(options.beta2)},
          {"eps", number(options.eps)},
          {"clip_grad_norm", number(options.clip_grad_norm)},
          {"label_smoothing", number(options.label_smoothing)},
          {"lr_schedule", options.lr_schedule},
          {"warmup_epochs", std::to_string(options.warmup_epochs)},
          // A schedule's learning rate depends on the run's total epochs.
          {"epochs", options.lr_schedule.empty() && options.warmup_epochs == 0
                         ? "any" : std::to_string(options.epochs)},
          {"precise_bn", std::to_string(o.precise_bn)},
          {"precision", o.precision},
          {"batch", std::to_string(options.batch)},
          {"processes", std::to_string(ranks)},
          {"sync_bn", o.sync_bn ? "true" : "false"},
          {"seed", std::to_string(o.seed)},
          {"drop_last", options.drop_last ? "true" : "false"},
          {"val_split", number(o.val_split)},
          {"train_examples", std::to_string(train_examples)},
          {"freeze_bn", o.freeze_bn_affine ? "affine" : o.freeze_bn ? "true" : "false"}};
}

void run_train(const TrainCommandOptions& o, const CLI::App& command, CLI::Option* arch_option,
               CLI::Option* model_option) {
  // The checkpoint to continue (--resume) or to start from (--init).
  const std::string& from_path = o.resume.empty() ? o.init : o.resume;
  if (arch_option->count() == 0 && model_option->count() == 0 && from_path.empty())
    throw CLI::RequiredError("--arch TEXT or --model PRESET (or --resume FILE, --init FILE)");
  train::TrainOptions options = o.train;
  options.beta1 = o.betas[0];
  options.beta2 = o.betas[1];
  options.epochs = o.epochs;
  check_optimizer_options(command, options);
  apply_threads(o.threads);
  apply_precision(o.precision);  // refuses bf16 on a CPU without it
  std::optional<io::SafetensorsFile> from;
  std::optional<train::ResumeState> resumed;
  if (!from_path.empty()) from = io::read_safetensors(from_path);
  if (!o.resume.empty()) resumed = train::read_resume_state(*from, o.resume);
  const std::string arch = !o.arch.empty()    ? o.arch
                           : !o.model.empty() ? nn::preset_arch(o.model)
                                              : checkpoint_arch(*from, from_path, "");
  // Under mpirun: one model over every process (stdout is rank 0's alone).
  dist::MpiReplicas* replicas = dist::world();
  const int ranks = replicas ? replicas->size() : 1;
  const bool root = replicas == nullptr || replicas->rank() == 0;
  // Outputs that cannot be written are errors now, not after the training.
  if (root) {
    if (!o.save.empty()) io::check_writable(o.save, "--save");
    if (!o.save_best.empty()) io::check_writable(o.save_best, "--save-best");
  }

  data::Split split = load_data(o.data, o.data.limit, o.test_limit);
  std::optional<data::Dataset> validation;
  if (o.val_split > 0.0) {
    train::HeldOut held = train::hold_out(split.train, o.val_split, o.seed);
    split.train = std::move(held.train);
    validation = std::move(held.validation);
  }
  // Weights, then Dropout's masks, come from this generator (saved with --save).
  Generator generator(o.seed);
  std::unique_ptr<nn::Sequential> net = build_network(arch, generator, split.train);
  if (!o.init.empty()) nn::load_state_dict(*net, *from);  // weights only: fine-tuning
  if (o.freeze_bn || o.freeze_bn_affine) net->freeze_batch_norm(o.freeze_bn_affine);

  options.seed = o.seed;
  if (const std::string note = nn::final_softmax_warning(*net); root && !note.empty())
    std::fprintf(stderr, "bnlab: warning: %s\n", note.c_str());
  if (replicas) {
    replicas->set_bucket_bytes(o.bucket_kb * 1024);
    replicas->set_overlap(!o.no_overlap);
    if (o.sync_bn) dist::convert_sync_batch_norm(*net, *replicas);
    options.replicas = replicas;
  }
  const int64_t global_batch = options.batch * ranks;
  const Shape example{split.train.channels, split.train.rows, split.train.cols};
  if (train::last_batch_too_small_for_batch_norm(*net, example, split.train.count, options)) {
    // PyTorch would stop the run at epoch 1's last step; this drops that batch instead.
    options.drop_last = true;
    if (root)
      std::fprintf(stderr,
                   "bnlab: note: each epoch's last batch would hold %lld of %lld examples, too "
                   "few for BatchNorm's batch statistics: it is dropped (as "
                   "DataLoader(drop_last=True))\n",
                   static_cast<long long>(split.train.count % global_batch),
                   static_cast<long long>(split.train.count));
  }
  train::Trainer trainer(*net, options);
  const std::map<std::string, std::string> settings =
      run_settings(o, arch, options, ranks, split.train.count);
  if (resumed) {
    const std::string difference = train::settings_difference(resumed->settings, settings);
    if (!difference.empty())
      throw Error("--resume " + o.resume + ": this run's options differ from the checkpoint's (" +
                  difference + "); pass the same ones to continue exactly, or start a new run "
                  "from its weights with --init");
    train::load_model_and_optimizer(*from, o.resume, *net, trainer.optimizer());
    if (resumed->dropout_generator) generator.set_state(*resumed->dropout_generator);
  }
  train::ResumeState position = resumed.value_or(train::ResumeState{});
  position.settings = settings;

  // Without --sync-bn each rank's running statistics saw only its slices: a
  // checkpoint and an evaluation use their mean over the ranks
  // (docs/distributed.md). Mid-run, training continues with its own.
  const bool average_statistics = replicas != nullptr && !o.sync_bn;
  const auto as_evaluated = [&](const auto& work) {
    if (!average_statistics) return work();
    const io::SafetensorsFile own = nn::state_dict(*net);
    train::average_running_statistics(*net, *replicas);
    work();
    nn::load_state_dict(*net, own);
  };
  const auto save_to = [&](const std::string& path, int64_t epoch, const train::EpochState& within) {
    position.epoch = epoch;
    position.within = within;
    position.dropout_generator = generator.state();
    as_evaluated([&] {
      if (root) train::save_training_checkpoint(path, *net, arch, trainer.optimizer(), position);
    });
  };

  // From here a SIGINT or SIGTERM ends the run after the step in progress.
  StopSignals stop_signals;
  trainer.set_stop_flag(stop_signals.flag());
  std::printf("training %s\n  on %lld images of %s, batch %lld, %s, %lld epochs\n", arch.c_str(),
              static_cast<long long>(split.train.count), o.data.dir.c_str(),
              static_cast<long long>(options.batch), optimizer_text(options).c_str(),
              static_cast<long long>(o.epochs));
  if (validation)
    std::printf("  validation: %lld images held out (--val-split %g)\n",
                static_cast<long long>(validation->count), o.val_split);
  if (resumed)
    std::printf("  resumed from %s at epoch %lld, step %lld\n", o.resume.c_str(),
                static_cast<long long>(position.epoch + 1),
                static_cast<long long>(position.within.step));
  if (replicas)
    std::printf("  on %d processes: global batch %lld, BatchNorm %s\n", ranks,
                static_cast<long long>(global_batch),
                o.sync_bn ? "synchronized (SyncBatchNorm)" : "per process (no --sync-bn)");
  std::fflush(stdout);
  train::TrainOptions counting = options;
  counting.batch = global_batch;
  const int64_t steps = steps_per_epoch(split.train.count, counting);

  nlohmann::json epochs = nlohmann::json::array();
  std::vector<double> losses;
  double train_seconds = 0.0;
  int64_t train_images = 0;
  bool diverged = false, stopped = false;
  std::string divergence;  // "the loss became non-finite at epoch 2, step 7 of 10"
  nlohmann::json diverged_at = nullptr;
  for (int64_t epoch = position.epoch; epoch < o.epochs && !diverged && !stopped; ++epoch) {
    const std::string label =
        "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(o.epochs);
    // Progress lines (stderr) from rank 0 only.
    std::optional<Progress> progress;
    if (root) progress.emplace(label, steps, "img");
    char status[64];
    auto on_step = [&](int64_t step, int64_t, double loss) {
      stop_signals.poll();  // the next step sees the flag
      if (!progress) return;
      std::snprintf(status, sizeof status, "loss %s", loss_text(loss).c_str());
      progress->update(step, std::min(step * global_batch, split.train.count), status);
    };
    train::EpochState within = epoch == position.epoch ? position.within : train::EpochState{};
    const int64_t first_step = within.step;
    const train::EpochResult r = trainer.train_epoch(split.train, epoch, on_step, &within);
    const int64_t images = std::min((r.steps - first_step) * global_batch, split.train.count);
    const double rate = r.seconds > 0 ? double(images) / r.seconds : 0.0;
    std::snprintf(status, sizeof status, "loss %s, %.0f img/s", loss_text(r.mean_loss).c_str(),
                  rate);
    if (progress) progress->finish(status, r.steps);
    train_seconds += r.seconds;
    train_images += images;
    const std::string bad_weight = r.diverged ? "" : train::first_non_finite(*net);
    diverged = r.diverged || !bad_weight.empty();
    if (diverged) {
      const int64_t step = r.diverged ? r.diverged_step : r.steps;
      divergence = std::string(r.diverged ? "the loss" : "weight '" + bad_weight + "'") +
                   " became non-finite at epoch " + std::to_string(epoch + 1) + ", step " +
                   std::to_string(step) + " of " + std::to_string(steps);
      diverged_at = {{"epoch", epoch + 1}, {"step", step}};
    }
    if (r.stopped && r.steps < steps) {  // mid-epoch: the checkpoint continues this epoch
      stopped = true;
      position.epoch = epoch;
      position.within = within;
      std::printf("epoch %lld/%lld  stopped after step %lld of %lld (%s)\n",
                  static_cast<long long>(epoch + 1), static_cast<long long>(o.epochs),
                  static_cast<long long>(r.steps), static_cast<long long>(steps),
                  stop_signals.signal_name());
      break;
    }
    losses.push_back(r.mean_loss);
    nlohmann::json entry = {{"epoch", epoch + 1},
                            {"train_loss", r.mean_loss},
                            {"train_accuracy", r.accuracy},
                            {"lr", r.lr},
                            {"seconds", r.seconds},
                            {"images_per_second", rate}};
    std::string precise_text;
    if (o.precise_bn > 0 && !diverged) {
      // Precise BN: the same batches on every process (same seed), so they agree.
      const nn::RecalibrationResult p = train::recalibrate_batch_norm(
          *net, split.train, o.precise_bn, options.batch, o.seed + uint64_t(epoch));
      precise_text = "  precise BN: " + std::to_string(p.layers) + " layer(s) recalibrated on " +
                     std::to_string(p.examples) + " images";
    }
    std::string validation_text;
    if (validation && !diverged) {
      train::EvalResult v;
      as_evaluated([&] { v = train::evaluate(*net, *validation, kEvalBatch, false, replicas); });
      entry["val_loss"] = v.loss;
      entry["val_accuracy"] = v.accuracy;
      validation_text = "  val loss " + loss_text(v.loss) + "  val accuracy " + percent(v.accuracy);
      if (!o.save_best.empty() && v.accuracy > position.best_val_accuracy) {
        position.best_val_accuracy = v.accuracy;
        save_to(o.save_best, epoch + 1, {});
        validation_text += "  (best: saved " + o.save_best + ")";
      }
    }
    std::printf("epoch %lld/%lld  loss %s  train accuracy %s%s  %.2f s  %.0f img/s%s\n",
                static_cast<long long>(epoch + 1), static_cast<long long>(o.epochs),
                loss_text(r.mean_loss).c_str(), percent(r.accuracy).c_str(),
                validation_text.c_str(), r.seconds, rate, diverged ? "  DIVERGED" : "");
    if (!precise_text.empty()) std::printf("%s\n", precise_text.c_str());
    std::fflush(stdout);
    epochs.push_back(entry);
    position.epoch = epoch + 1;
    position.within = {};
    stopped = r.stopped || stop_signals.poll();
    if (!diverged && !stopped && o.checkpoint_every > 0 && (epoch + 1) % o.checkpoint_every == 0 &&
        epoch + 1 < o.epochs) {
      save_to(o.save, epoch + 1, {});
      std::printf("checkpoint: %s (epoch %lld)\n", o.save.c_str(),
                  static_cast<long long>(epoch + 1));
    }
  }

  nlohmann::json result = {{"arch", arch},
                           {"optimizer", options.optimizer},
                           {"batch", options.batch},
                           {"lr", options.lr},
                           {"lr_schedule",
                            options.lr_schedule.empty() ? "constant" : options.lr_schedule},
                           {"warmup_epochs", options.warmup_epochs},
                           {"seed", o.seed},
                           {"precision", o.precision},
                           {"epochs", epochs},
                           {"train_loss", losses},
                           {"diverged", diverged},
                           {"diverged_at", diverged_at},
                           {"seconds", train_seconds},
                           {"images_per_second",
                            train_seconds > 0 ? train_images / train_seconds : 0.0}};
  if (replicas)
    result["distributed"] = {
        {"processes", ranks},
        {"global_batch", global_batch},
        {"sync_bn", o.sync_bn},
        {"overlap", !o.no_overlap},
        {"bucket_kb", o.bucket_kb},
        {"per_step_seconds", step_timing(trainer.times(), replicas->times())}};
  if (diverged) {
    // Nothing is saved: a checkpoint already at --save stays as it was.
    if (o.json && root) print_json_line(result);
    throw Error(divergence + "; training stopped and nothing was saved (try a smaller --lr)");
  }
  if (stopped) {
    if (!o.save.empty()) {
      save_to(o.save, position.epoch, position.within);
      std::printf("saved %s: continue with --resume %s and the same options\n", o.save.c_str(),
                  o.save.c_str());
    }
    result["interrupted"] = stop_signals.signal_name();
    if (o.json && root) print_json_line(result);
    std::fflush(stdout);
    throw ExitStatus{128 + stop_signals.signal()};
  }

  if (average_statistics) train::average_running_statistics(*net, *replicas);
  const train::EvalResult test = train::evaluate(*net, split.test, kEvalBatch, false, replicas);
  std::printf("test: accuracy %s  loss %s  (%lld images, eval mode)\n",
              percent(test.accuracy).c_str(), loss_text(test.loss).c_str(),
              static_cast<long long>(test.count));
  if (!o.save.empty()) {
    position.dropout_generator = generator.state();
    if (root) train::save_training_checkpoint(o.save, *net, arch, trainer.optimizer(), position);
    std::printf("saved %s\n", o.save.c_str());
  }
  std::fflush(stdout);
  result["test_accuracy"] = test.accuracy;
  result["test_loss"] = test.loss;
  if (o.json && root) print_json_line(result);
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
  CLI::Option* save = command->add_option(
      "--save", o->save,
      "Write a checkpoint at the end: a safetensors state dict with the architecture, plus the "
      "optimizer's state and the run's position, so --resume can continue it");
  CLI::Option* resume = command->add_option(
      "--resume", o->resume,
      "Continue the run a --save checkpoint stopped at (same options; --epochs is the total)");
  CLI::Option* init = command->add_option(
      "--init", o->init, "Start from a checkpoint's weights only (fine-tuning; eval's key checks)");
  resume->excludes(init);
  command
      ->add_option("--checkpoint-every", o->checkpoint_every,
                   "Also write the --save checkpoint every N epochs")
      ->check(positive())
      ->needs(save);
  CLI::Option* val_split =
      command
          ->add_option("--val-split", o->val_split,
                       "Hold out this fraction of the training split (seeded) and report "
                       "validation loss and accuracy after each epoch")
          ->check(CLI::Validator(
              [](std::string& text) -> std::string {
                double value = 0.0;
                if (!CLI::detail::lexical_cast(text, value)) return "expected a number, got " + text;
                return value > 0.0 && value < 1.0 ? "" : "must be in (0, 1), got " + text;
              },
              "FRACTION"));
  command
      ->add_option("--save-best", o->save_best,
                   "Write a checkpoint here whenever the validation accuracy improves")
      ->needs(val_split);
  command->add_flag("--drop-last", o->train.drop_last,
                    "Drop each epoch's short last batch (DataLoader's drop_last=True); a last "
                    "batch BatchNorm cannot train on (one example) is dropped anyway, with a note");
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
  add_data_options(*command, o->data, "Train on the first N training examples (quick runs)");
  command->add_option("--test-limit", o->test_limit, "Test on the first N test examples")
      ->check(non_negative());
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
      "  bnlab train --model mlp-bn --epochs 2 --val-split 0.1 --save run.safetensors\n"
      "  bnlab train --resume run.safetensors --epochs 4 --val-split 0.1 --save run.safetensors"
      "   (continues the same run; Ctrl-C saves it too)\n"
      "  bnlab train --init run.safetensors --optimizer adam --lr 0.0001 --epochs 1   "
      "(fine-tuning from the weights)\n"
      "  bnlab train --model mlp --epochs 3 --limit 6000 --test-limit 1000   (a quick run)\n"
      "  bnlab train --model mlp-bn --epochs 6 --optimizer adamw --lr 0.002 --lr-schedule cosine "
      "--warmup-epochs 1 --clip-grad-norm 1 --label-smoothing 0.1\n"
      "  bnlab train --model mlp --epochs 4 --momentum 0.9 --nesterov --lr-schedule step:2:0.1\n"
      "  mpirun -np 2 bnlab train --model cnn-bn --batch 32 --sync-bn   (2 processes, global "
      "batch 64; docs/distributed.md)");
  command->callback([o, command, arch, model] { run_train(*o, *command, arch, model); });
}

}  // namespace bnlab::cli
