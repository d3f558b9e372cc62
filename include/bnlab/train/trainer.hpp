// The training loop the CLI and the lab share: batches from a data set in a
// seeded order, forward, cross-entropy, backward, optimizer step; evaluation
// in eval or train mode. A step allocates nothing once shapes are known.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "bnlab/data/dataset.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/loss.hpp"
#include "bnlab/optim/optimizer.hpp"

namespace bnlab::train {

struct TrainOptions {
  int64_t batch = 64;
  std::string optimizer = "sgd";  // "sgd" or "adam"
  double lr = 0.01;
  double momentum = 0.0;          // SGD only
  double weight_decay = 0.0;
  uint64_t seed = 0;              // shuffling (weights are drawn by the caller's Generator)
  bool drop_last = false;         // PyTorch's DataLoader default keeps the short last batch
};

struct StepResult {
  double loss = 0.0;     // NaN or Inf: the run diverged
  int64_t correct = 0;   // argmax == label in this batch
};

struct EpochResult {
  double mean_loss = 0.0;       // mean of the step losses
  double accuracy = 0.0;        // training accuracy over the epoch (as it trained)
  int64_t steps = 0;
  double seconds = 0.0;
  bool diverged = false;        // a non-finite loss stopped the epoch
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
  // The shape of one example, e.g. {1, 28, 28}, for step() on a network that
  // starts with a convolution (train_epoch takes it from the data set; a
  // network starting with Linear needs nothing).
  void set_example_shape(const Shape& example) { example_shape_ = example; }

 private:
  nn::Sequential& net_;
  TrainOptions options_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  nn::CrossEntropyLoss loss_;
  Tensor batch_images_;
  std::vector<int32_t> batch_labels_;
  Shape example_shape_;
  bool grads_zero_ = false;  // the gradients are zero (the last step's update cleared them)
};

// Test loss and accuracy in batches of `batch`. train_mode = true evaluates with
// batch statistics (BN in train mode, running statistics left as they were).
EvalResult evaluate(nn::Sequential& net, const data::Dataset& data, int64_t batch = 1000,
                    bool train_mode = false);

}  // namespace bnlab::train
