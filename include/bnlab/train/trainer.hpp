// The training loop the CLI and the lab share: batches from a data set in a
// seeded order, forward, cross-entropy, backward, optimizer step; evaluation
// in eval or train mode. A step allocates nothing once shapes are known.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "bnlab/data/dataset.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/loss.hpp"
#include "bnlab/optim/lr_schedule.hpp"
#include "bnlab/optim/optimizer.hpp"
#include "bnlab/train/replicas.hpp"

namespace bnlab::train {

struct TrainOptions {
  int64_t batch = 64;
  std::string optimizer = "sgd";  // "sgd", "adam" or "adamw" (torch.optim's rules)
  double lr = 0.01;
  double momentum = 0.0;          // SGD only
  double dampening = 0.0;         // SGD only
  bool nesterov = false;          // SGD only
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // Adam and AdamW
  double weight_decay = 0.0;      // as given (PyTorch's AdamW default is 0.01)
  double clip_grad_norm = 0.0;    // > 0: optim::clip_grad_norm_ before each update
  double label_smoothing = 0.0;   // of the training loss (evaluate's loss is plain)
  // optim::LrSchedule's text and warmup over a run of `epochs` epochs; with
  // neither, the optimizer's lr is left as it is.
  std::string lr_schedule;
  int64_t warmup_epochs = 0;
  int64_t epochs = 0;             // the run's total (needed by a schedule or warmup)
  uint64_t seed = 0;              // shuffling (weights are drawn by the caller's Generator)
  bool drop_last = false;         // PyTorch's DataLoader default keeps the short last batch
  // Data parallel (null: one process). batch is then the per-process batch, as
  // in PyTorch's DDP: a global batch of batch * size examples, rank r taking its
  // part of it (rank_part) from the same seeded order.
  Replicas* replicas = nullptr;
};

// With replicas, loss and correct are the global batch's (over every process).
struct StepResult {
  double loss = 0.0;     // NaN or Inf: the run diverged
  int64_t correct = 0;   // argmax == label in this batch
};

// Where a step's time goes, summed over the steps since the trainer was made.
// backward includes starting the gradient sums and SyncBN's backward
// collectives; gradient_wait is the part of the gradient sum the backward did
// not hide (waiting for the last buckets).
struct StepTimes {
  int64_t steps = 0;
  double forward = 0.0, loss = 0.0, backward = 0.0, gradient_wait = 0.0, update = 0.0;
};

struct EpochResult {
  double mean_loss = 0.0;       // mean of the step losses
  double accuracy = 0.0;        // training accuracy over the epoch (as it trained)
  int64_t steps = 0;
  double seconds = 0.0;
  bool diverged = false;        // a non-finite loss stopped the epoch
  double lr = 0.0;              // the learning rate of the epoch's first step
};

struct EvalResult {
  double loss = 0.0;
  double accuracy = 0.0;  // fraction
  int64_t count = 0;
};

// Called after each step: (step within epoch, steps in epoch, loss of the step).
using StepCallback = std::function<void(int64_t step, int64_t steps, double loss)>;

class Trainer {
 public:
  Trainer(nn::Sequential& net, const TrainOptions& options);
  // One step on a batch (images (batch, C, H, W) contiguous, labels (batch)).
  StepResult step(const float* images, const int32_t* labels, int64_t batch);
  // One pass over the data set in the order of shuffled_indices(count, seed + epoch).
  EpochResult train_epoch(const data::Dataset& data, int64_t epoch,
                          const StepCallback& on_step = nullptr);
  optim::Optimizer& optimizer() { return *optimizer_; }
  const StepTimes& times() const { return times_; }
  // The shape of one example, e.g. {1, 28, 28}, for step() on a network that
  // starts with a convolution (train_epoch takes it from the data set; a
  // network starting with Linear needs nothing).
  void set_example_shape(const Shape& example) { example_shape_ = example; }

 private:
  nn::Sequential& net_;
  TrainOptions options_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::optional<optim::LrSchedule> schedule_;
  nn::CrossEntropyLoss loss_;
  Tensor batch_images_;
  std::vector<int32_t> batch_labels_;
  Tensor scaled_grad_;  // the loss gradient weighted by this process's share of the global batch
  StepTimes times_;
  Shape example_shape_;
  bool grads_zero_ = false;  // the gradients are zero (the last step's update cleared them)
};

// Test loss and accuracy in batches of `batch`. train_mode = true evaluates with
// batch statistics (BN in train mode, running statistics left as they were).
// With replicas (eval mode only), rank r scores its part of the data set
// (rank_part) and the loss and counts are summed over the processes.
EvalResult evaluate(nn::Sequential& net, const data::Dataset& data, int64_t batch = 1000,
                    bool train_mode = false, Replicas* replicas = nullptr);

// Replaces each BatchNorm's running_mean and running_var by their mean over
// the processes (num_batches_tracked is the same on each): what a data-parallel
// run without SyncBatchNorm saves and evaluates with, since each process's
// running statistics saw only its own slices.
void average_running_statistics(nn::Sequential& net, Replicas& replicas);

}  // namespace bnlab::train
