// The training loop shared by the CLI and the lab (include/bnlab/train/trainer.hpp).
//
// One step, PyTorch's order:
//   optimizer.zero_grad(); logits = net(x); loss = CE(logits, y);
//   loss.backward(); optimizer.step()
// with the zero_grad of the next step folded into this step's update
// (Optimizer::step_and_zero_grad: one pass over each gradient instead of two).
// The batch buffers (images, labels) are sized on the first step and reused;
// every module reuses its own outputs, so a step allocates nothing once the
// shapes are known (the short last batch only shrinks the shapes).
#include "bnlab/train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "bnlab/error.hpp"

namespace bnlab::train {
namespace {

std::unique_ptr<optim::Optimizer> make_optimizer(nn::Sequential& net, const TrainOptions& o) {
  if (o.optimizer == "sgd")
    return std::make_unique<optim::SGD>(net.parameters(), o.lr, o.momentum, o.weight_decay);
  if (o.optimizer == "adam")
    return std::make_unique<optim::Adam>(net.parameters(), o.lr, 0.9, 0.999, 1e-8,
                                         o.weight_decay);
  throw Error("TrainOptions.optimizer: expected \"sgd\" or \"adam\", got \"" + o.optimizer + "\"");
}

// The shape of one example as the network's first layer takes it, for step()
// called on raw batches before any train_epoch told the trainer the data's
// shape: a leading Linear(in, ...) (after any Flatten) takes (in). A network
// that starts with a convolution cannot say its image size.
Shape infer_example_shape(nn::Sequential& net) {
  for (auto& child : net.children()) {
    if (dynamic_cast<nn::Flatten*>(child.get())) continue;
    if (auto* linear = dynamic_cast<nn::Linear*>(child.get())) return {linear->in_features};
    break;
  }
  throw Error(
      "Trainer::step: the example shape is unknown for a network that does not start with "
      "Linear; call set_example_shape({C, H, W}) or train_epoch (which takes it from the data "
      "set) first");
}

// Nobody reads the gradient w.r.t. the data: Sequential then skips the first
// Linear/Conv2d's input-gradient product (a quarter of the MLP's backward
// FLOPs). Written as a requires-check so this file builds against a
// Sequential without the switch too.
template <class Net>
void skip_data_gradient(Net& net) {
  if constexpr (requires { net.compute_grad_input = false; }) net.compute_grad_input = false;
}

// Gives images the shape (batch, example...) without building a Shape (a heap
// allocation) when it already has it: every step but the short last one.
void fit_batch(Tensor& images, int64_t batch, const Shape& example) {
  const Shape& shape = images.shape();
  if (shape.size() == example.size() + 1 && shape[0] == batch &&
      std::equal(example.begin(), example.end(), shape.begin() + 1))
    return;
  Shape wanted{batch};
  wanted.insert(wanted.end(), example.begin(), example.end());
  images.resize(wanted);  // keeps the storage (and values) when it fits
}

// The shape a batch is gathered in: (C, H, W), or flat (C*H*W) when the network
// starts with Flatten, which then passes the batch through instead of copying it.
Shape gathered_example_shape(nn::Sequential& net, const data::Dataset& d) {
  if (net.size() > 0 && dynamic_cast<nn::Flatten*>(&net[0]) != nullptr)
    return {d.channels * d.rows * d.cols};
  return {d.channels, d.rows, d.cols};
}

// Every BatchNorm in the network, nested Sequentials included.
void collect_batch_norms(nn::Sequential& net, std::vector<nn::BatchNorm*>& out) {
  for (auto& child : net.children()) {
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(child.get())) out.push_back(bn);
    if (auto* inner = dynamic_cast<nn::Sequential*>(child.get())) collect_batch_norms(*inner, out);
  }
}

// A BatchNorm's state a training-mode forward changes, kept to be put back.
struct SavedBatchNormState {
  nn::BatchNorm* module;
  std::vector<float> running_mean, running_var;
  int64_t num_batches_tracked;
  bool last_batch_non_finite;
};

}  // namespace

Trainer::Trainer(nn::Sequential& net, const TrainOptions& options)
    : net_(net), options_(options), optimizer_(make_optimizer(net, options)) {
  skip_data_gradient(net_);
  if (options_.batch <= 0)
    throw Error("TrainOptions.batch: must be > 0, got " + std::to_string(options_.batch));
}

StepResult Trainer::step(const float* images, const int32_t* labels, int64_t batch) {
  if (batch <= 0) throw Error("Trainer::step: batch must be > 0, got " + std::to_string(batch));
  if (example_shape_.empty()) example_shape_ = infer_example_shape(net_);
  fit_batch(batch_images_, batch, example_shape_);
  // train_epoch gathers straight into batch_images_; other callers' batches are copied.
  if (images != batch_images_.data())
    std::memcpy(batch_images_.data(), images, sizeof(float) * size_t(batch_images_.numel()));

  // The previous step's update left the gradients zero (step_and_zero_grad);
  // only the first step, or one after a failed step, clears them here.
  if (!grads_zero_) optimizer_->zero_grad();
  const Tensor& logits = net_.forward(batch_images_);
  StepResult result;
  result.loss = loss_.forward(logits, labels);
  result.correct = loss_.correct();
  // A non-finite loss means the run diverged: no update, the caller stops.
  if (!std::isfinite(result.loss)) return result;
  grads_zero_ = false;
  net_.backward(loss_.backward());
  optimizer_->step_and_zero_grad();
  grads_zero_ = true;
  return result;
}

EpochResult Trainer::train_epoch(const data::Dataset& data, int64_t epoch,
                                 const StepCallback& on_step) {
  const auto start = std::chrono::steady_clock::now();
  example_shape_ = gathered_example_shape(net_, data);
  const int64_t batch = options_.batch;
  const int64_t steps =
      options_.drop_last ? data.count / batch : (data.count + batch - 1) / batch;
  const std::vector<int64_t> order =
      data::shuffled_indices(data.count, options_.seed + static_cast<uint64_t>(epoch));
  batch_labels_.resize(static_cast<size_t>(batch));
  net_.train(true);

  EpochResult result;
  double loss_sum = 0.0;
  int64_t correct = 0, seen = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t begin = s * batch;
    const int64_t size = std::min(batch, data.count - begin);
    fit_batch(batch_images_, size, example_shape_);
    data::gather_batch(data, order, begin, size, batch_images_.data(), batch_labels_.data());
    StepResult r;
    try {
      r = step(batch_images_.data(), batch_labels_.data(), size);
    } catch (const Error& e) {
      // Say where: a short last batch of one example is the usual cause.
      throw Error(e.code(), "epoch " + std::to_string(epoch + 1) + ", step " +
                                std::to_string(s + 1) + " of " + std::to_string(steps) +
                                " (a batch of " + std::to_string(size) + " of " +
                                std::to_string(data.count) + " examples): " + e.what());
    }
    ++result.steps;
    if (!std::isfinite(r.loss)) {
      result.diverged = true;
      loss_sum += r.loss;  // the mean becomes NaN/Inf too: the epoch's loss says it diverged
      break;
    }
    loss_sum += r.loss;
    correct += r.correct;
    seen += size;
    if (on_step) on_step(s + 1, steps, r.loss);
  }
  result.mean_loss = result.steps > 0 ? loss_sum / double(result.steps) : 0.0;
  result.accuracy = seen > 0 ? double(correct) / double(seen) : 0.0;
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

/* loss = sum_b(mean CE of batch b * size_b) / count, accuracy = correct / count,
   in batches of `batch` in data order. train_mode puts only the BatchNorm
   layers in training mode (batch statistics; Dropout stays off) and restores
   their running statistics and num_batches_tracked afterwards, so evaluating
   leaves the model exactly as it was. */
EvalResult evaluate(nn::Sequential& net, const data::Dataset& data, int64_t batch,
                    bool train_mode) {
  if (batch <= 0) throw Error("evaluate: batch must be > 0, got " + std::to_string(batch));
  const bool was_training = net.is_training();
  std::vector<nn::BatchNorm*> batch_norms;
  collect_batch_norms(net, batch_norms);
  std::vector<SavedBatchNormState> saved;
  net.eval();
  if (train_mode) {
    for (nn::BatchNorm* bn : batch_norms) {
      saved.push_back({bn,
                       {bn->running_mean.data(), bn->running_mean.data() + bn->running_mean.numel()},
                       {bn->running_var.data(), bn->running_var.data() + bn->running_var.numel()},
                       bn->num_batches_tracked,
                       bn->last_batch_non_finite});
      bn->train(true);
    }
  }
  auto restore = [&] {
    for (const SavedBatchNormState& s : saved) {
      std::copy(s.running_mean.begin(), s.running_mean.end(), s.module->running_mean.data());
      std::copy(s.running_var.begin(), s.running_var.end(), s.module->running_var.data());
      s.module->num_batches_tracked = s.num_batches_tracked;
      s.module->last_batch_non_finite = s.last_batch_non_finite;
    }
    net.train(was_training);
  };

  EvalResult result;
  result.count = data.count;
  nn::CrossEntropyLoss loss;
  Tensor images;
  const Shape example = gathered_example_shape(net, data);
  double loss_sum = 0.0;
  int64_t correct = 0;
  try {
    for (int64_t begin = 0; begin < data.count; begin += batch) {
      const int64_t size = std::min(batch, data.count - begin);
      fit_batch(images, size, example);
      data::copy_examples(data, begin, size, images.data());
      const Tensor& logits = net.forward(images);
      loss_sum += loss.forward(logits, data.labels.data() + begin) * double(size);
      correct += loss.correct();
    }
  } catch (...) {
    restore();
    throw;
  }
  restore();
  if (data.count > 0) {
    result.loss = loss_sum / double(data.count);
    result.accuracy = double(correct) / double(data.count);
  }
  return result;
}

}  // namespace bnlab::train
