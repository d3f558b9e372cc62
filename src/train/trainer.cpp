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

// The optimizer over the parameters that train (requires_grad: a frozen
// BatchNorm's weight and bias stay as they are, even under weight decay).
std::unique_ptr<optim::Optimizer> make_optimizer(nn::Sequential& net, const TrainOptions& o) {
  std::vector<std::pair<std::string, nn::Parameter*>> params;
  for (auto& entry : net.parameters())
    if (entry.second->requires_grad) params.push_back(entry);
  if (o.optimizer == "sgd")
    return std::make_unique<optim::SGD>(params, o.lr, o.momentum, o.weight_decay, o.dampening,
                                        o.nesterov);
  if (o.optimizer == "adam")
    return std::make_unique<optim::Adam>(params, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay);
  if (o.optimizer == "adamw")
    return std::make_unique<optim::AdamW>(params, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay);
  throw Error("TrainOptions.optimizer: expected \"sgd\", \"adam\" or \"adamw\", got \"" +
              o.optimizer + "\"");
}

std::optional<optim::LrSchedule> make_schedule(const TrainOptions& o) {
  if (o.lr_schedule.empty() && o.warmup_epochs == 0) return std::nullopt;
  return optim::LrSchedule(o.lr_schedule, o.lr, o.epochs, o.warmup_epochs);
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
    : net_(net),
      options_(options),
      optimizer_(make_optimizer(net, options)),
      schedule_(make_schedule(options)),
      loss_(options.label_smoothing) {
  if (!(options_.clip_grad_norm >= 0.0 && options_.clip_grad_norm < HUGE_VAL))
    throw Error("TrainOptions.clip_grad_norm: must be a finite number >= 0, got " +
                std::to_string(options_.clip_grad_norm));
  skip_data_gradient(net_);
  if (options_.batch <= 0)
    throw Error("TrainOptions.batch: must be > 0, got " + std::to_string(options_.batch));
  if (options_.replicas) options_.replicas->attach(net_);
}

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point& mark) {
  const Clock::time_point now = Clock::now();
  const double s = std::chrono::duration<double>(now - mark).count();
  mark = now;
  return s;
}
}  // namespace

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
  Clock::time_point mark = Clock::now();
  const Tensor& logits = net_.forward(batch_images_);
  times_.forward += seconds_since(mark);
  StepResult result;
  result.loss = loss_.forward(logits, labels);
  result.correct = loss_.correct();
  Replicas* replicas = options_.replicas;
  const Tensor* grad_logits = nullptr;
  if (replicas != nullptr) {
    /* The global batch's mean loss is sum_r(B_r * loss_r) / B with B = sum_r B_r,
       so rank r's loss gradient is weighted by B_r / B: the summed gradients are
       then the global batch's, however unequal the slices. */
    double sums[4] = {result.loss * double(batch), double(result.correct), double(batch),
                      std::isfinite(result.loss) ? 0.0 : 1.0};
    replicas->sum(sums, 4);
    if (sums[3] > 0.0) {
      // Every process stops here together: no rank is left waiting in the backward.
      const int bad = replicas->first_rank_with(!std::isfinite(result.loss));
      throw Error("the loss became non-finite on rank " + std::to_string(bad) + " of " +
                  std::to_string(replicas->size()) +
                  "; training stopped on every rank (try a smaller --lr)");
    }
    result.loss = sums[0] / sums[2];
    result.correct = static_cast<int64_t>(sums[1]);
    const Tensor& local = loss_.backward();
    const float share = static_cast<float>(double(batch) / sums[2]);
    scaled_grad_.resize(local.shape());
    for (int64_t i = 0; i < local.numel(); ++i) scaled_grad_[i] = local[i] * share;
    grad_logits = &scaled_grad_;
  }
  times_.loss += seconds_since(mark);
  // A non-finite loss means the run diverged: no update, the caller stops.
  if (!std::isfinite(result.loss)) return result;
  grads_zero_ = false;
  if (replicas != nullptr) replicas->start_gradients();
  net_.backward(grad_logits != nullptr ? *grad_logits : loss_.backward());
  times_.backward += seconds_since(mark);
  if (replicas != nullptr) replicas->finish_gradients();
  times_.gradient_wait += seconds_since(mark);
  // On the summed gradients under replicas: the global norm, as under DDP.
  if (options_.clip_grad_norm > 0.0)
    optim::clip_grad_norm_(optimizer_->parameters(), options_.clip_grad_norm);
  optimizer_->step_and_zero_grad();
  grads_zero_ = true;
  times_.update += seconds_since(mark);
  ++times_.steps;
  return result;
}

EpochResult Trainer::train_epoch(const data::Dataset& data, int64_t epoch,
                                 const StepCallback& on_step) {
  const auto start = std::chrono::steady_clock::now();
  example_shape_ = gathered_example_shape(net_, data);
  // With replicas, each step takes a global batch of batch * size examples and
  // this rank trains on its part of it.
  const int rank = options_.replicas ? options_.replicas->rank() : 0;
  const int ranks = options_.replicas ? options_.replicas->size() : 1;
  const int64_t batch = options_.batch * ranks;
  const int64_t steps =
      options_.drop_last ? data.count / batch : (data.count + batch - 1) / batch;
  const int64_t last = data.count % batch;
  if (!options_.drop_last && last > 0 && last < ranks)
    throw Error("the last global batch has " + std::to_string(last) + " examples (" +
                std::to_string(data.count) + " examples in batches of " + std::to_string(batch) +
                "), fewer than the " + std::to_string(ranks) +
                " processes: change the batch or the example count so each process gets one");
  const std::vector<int64_t> order =
      data::shuffled_indices(data.count, options_.seed + static_cast<uint64_t>(epoch));
  batch_labels_.resize(static_cast<size_t>(options_.batch));
  net_.train(true);

  EpochResult result;
  double loss_sum = 0.0;
  int64_t correct = 0, seen = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t global_begin = s * batch;
    const int64_t global_size = std::min(batch, data.count - global_begin);
    int64_t part_begin = 0, part_end = global_size;
    rank_part(global_size, rank, ranks, part_begin, part_end);
    const int64_t begin = global_begin + part_begin;
    const int64_t size = part_end - part_begin;
    fit_batch(batch_images_, size, example_shape_);
    data::gather_batch(data, order, begin, size, batch_images_.data(), batch_labels_.data());
    if (schedule_) optimizer_->lr = schedule_->lr(epoch, s, steps);
    if (result.steps == 0) result.lr = optimizer_->lr;  // the first step this call runs
    StepResult r;
    try {
      r = step(batch_images_.data(), batch_labels_.data(), size);
    } catch (const Error& e) {
      // Say where: a short last batch of one example is the usual cause.
      throw Error(e.code(), "epoch " + std::to_string(epoch + 1) + ", step " +
                                std::to_string(s + 1) + " of " + std::to_string(steps) +
                                " (a batch of " + std::to_string(global_size) + " of " +
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
    seen += global_size;
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
EvalResult evaluate(nn::Sequential& net, const data::Dataset& data, int64_t batch, bool train_mode,
                    Replicas* replicas) {
  if (replicas != nullptr && train_mode)
    throw Error("evaluate: train_mode (batch statistics) is not split over processes");
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
  int64_t first = 0, end = data.count;
  if (replicas != nullptr) rank_part(data.count, replicas->rank(), replicas->size(), first, end);
  try {
    for (int64_t begin = first; begin < end; begin += batch) {
      const int64_t size = std::min(batch, end - begin);
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
  if (replicas != nullptr) {
    double sums[2] = {loss_sum, double(correct)};
    replicas->sum(sums, 2);
    loss_sum = sums[0];
    correct = static_cast<int64_t>(sums[1]);
  }
  if (data.count > 0) {
    result.loss = loss_sum / double(data.count);
    result.accuracy = double(correct) / double(data.count);
  }
  return result;
}

/* running_mean = sum_r(running_mean_r) / K, running_var likewise (the mean of
   the per-rank variances: the spread between the ranks' means is not in it). */
void average_running_statistics(nn::Sequential& net, Replicas& replicas) {
  std::vector<nn::BatchNorm*> batch_norms;
  collect_batch_norms(net, batch_norms);
  std::vector<double> values;
  for (nn::BatchNorm* bn : batch_norms)
    for (Tensor* t : {&bn->running_mean, &bn->running_var})
      values.insert(values.end(), t->data(), t->data() + t->numel());
  replicas.sum(values.data(), static_cast<int64_t>(values.size()));
  size_t at = 0;
  const double share = 1.0 / double(replicas.size());
  for (nn::BatchNorm* bn : batch_norms)
    for (Tensor* t : {&bn->running_mean, &bn->running_var})
      for (int64_t j = 0; j < t->numel(); ++j) (*t)[j] = static_cast<float>(values[at++] * share);
}

}  // namespace bnlab::train
