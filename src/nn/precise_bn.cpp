// Precise BN: population statistics of K batches in place of the running
// averages (see bnlab/nn/precise_bn.hpp). Each layer's input statistics come
// from the kernels SyncBatchNorm uses (batch_norm_stats, batch_norm_merge_stats),
// so a batch here is merged exactly as a process's part of a batch is there.
#include "bnlab/nn/precise_bn.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "bnlab/batch_norm.hpp"
#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/norm_layers.hpp"

namespace bnlab::nn {
namespace {

// One layer to recalibrate: its buffers, their values before, and the
// population so far (count, mean and m2 per channel, in double).
struct Target {
  Module* module = nullptr;
  Tensor* running_mean = nullptr;
  Tensor* running_var = nullptr;
  int64_t* num_batches_tracked = nullptr;
  bool* last_batch_non_finite = nullptr;
  std::vector<float> saved_mean, saved_var;
  int64_t saved_tracked = 0;
  bool saved_non_finite = false;
  int64_t count = 0;
  std::vector<double> mean, m2;
  std::vector<double> batch_mean, batch_m2;  // this batch's, reused

  void save() {
    saved_mean.assign(running_mean->data(), running_mean->data() + running_mean->numel());
    saved_var.assign(running_var->data(), running_var->data() + running_var->numel());
    saved_tracked = *num_batches_tracked;
    if (last_batch_non_finite) saved_non_finite = *last_batch_non_finite;
  }
  void restore() {
    std::copy(saved_mean.begin(), saved_mean.end(), running_mean->data());
    std::copy(saved_var.begin(), saved_var.end(), running_var->data());
    *num_batches_tracked = saved_tracked;
    if (last_batch_non_finite) *last_batch_non_finite = saved_non_finite;
  }
};

// The layer as a Target when it normalizes with batch statistics in training
// and keeps running statistics; no value otherwise.
bool as_target(Module& m, Target& t) {
  t.module = &m;
  if (auto* bn = dynamic_cast<BatchNorm*>(&m)) {
    if (!bn->track_running_stats || bn->freeze_statistics) return false;
    t.running_mean = &bn->running_mean;
    t.running_var = &bn->running_var;
    t.num_batches_tracked = &bn->num_batches_tracked;
    t.last_batch_non_finite = &bn->last_batch_non_finite;
    return true;
  }
  if (auto* ghost = dynamic_cast<GhostBatchNorm*>(&m)) {
    if (!ghost->track_running_stats) return false;
    t.running_mean = &ghost->running_mean;
    t.running_var = &ghost->running_var;
    t.num_batches_tracked = &ghost->num_batches_tracked;
    t.last_batch_non_finite = &ghost->last_batch_non_finite;
    return true;
  }
  if (auto* renorm = dynamic_cast<BatchRenorm*>(&m)) {
    t.running_mean = &renorm->running_mean;
    t.running_var = &renorm->running_var;
    t.num_batches_tracked = &renorm->num_batches_tracked;
    return true;
  }
  return false;
}

void collect_targets(Module& m, std::vector<Target>& out) {
  if (auto* seq = dynamic_cast<Sequential*>(&m)) {
    for (size_t i = 0; i < seq->size(); ++i) collect_targets((*seq)[i], out);
    return;
  }
  Target t;
  if (as_target(m, t)) out.push_back(std::move(t));
}

// Merges the statistics of this batch's input, (n, c) or (n, c, *), into t.
void observe(Target& t, const Tensor& input) {
  BatchNormShape shape;
  shape.n = input.size(0);
  shape.c = input.size(1);
  shape.s = input.numel() / std::max<int64_t>(1, shape.n * shape.c);
  shape.layout = Layout::channels_first;
  const auto c = static_cast<size_t>(shape.c);
  t.batch_mean.resize(c);
  t.batch_m2.resize(c);
  if (t.mean.empty()) {
    t.mean.assign(c, 0.0);
    t.m2.assign(c, 0.0);
  }
  batch_norm_stats(input.data(), shape, t.batch_mean.data(), t.batch_m2.data());
  // Two parts, the population so far then this batch, merged in that order.
  const int64_t counts[2] = {t.count, shape.n * shape.s};
  std::vector<double> means(t.mean), m2s(t.m2);
  means.insert(means.end(), t.batch_mean.begin(), t.batch_mean.end());
  m2s.insert(m2s.end(), t.batch_m2.begin(), t.batch_m2.end());
  batch_norm_merge_stats(2, shape.c, counts, means.data(), m2s.data(), t.mean.data(), t.m2.data(),
                         &t.count);
}

// Runs m on x in training mode, observing each target's input on the way.
const Tensor& forward_observed(Module& m, const Tensor& x, std::vector<Target>& targets,
                               size_t& next) {
  if (auto* seq = dynamic_cast<Sequential*>(&m)) {
    const Tensor* y = &x;
    for (size_t i = 0; i < seq->size(); ++i) y = &forward_observed((*seq)[i], *y, targets, next);
    return *y;
  }
  if (next < targets.size() && targets[next].module == &m) observe(targets[next++], x);
  return m.forward(x);
}

}  // namespace

RecalibrationResult recalibrate_batch_norm(Module& net, const BatchSource& next_batch) {
  std::vector<Target> targets;
  collect_targets(net, targets);
  for (Target& t : targets) t.save();
  const bool was_training = net.is_training();
  auto put_back = [&] {
    for (Target& t : targets) t.restore();
    net.train(was_training);
  };
  RecalibrationResult result;
  result.layers = static_cast<int64_t>(targets.size());
  Tensor batch;
  try {
    net.train(true);
    while (next_batch(batch)) {
      if (batch.dim() < 1 || batch.size(0) < 1)
        throw Error("recalibrate_batch_norm: the batch source gave an empty batch " +
                    shape_string(batch.shape()));
      size_t next = 0;
      forward_observed(net, batch, targets, next);
      for (Target& t : targets) t.restore();  // every batch sees the same network
      ++result.batches;
      result.examples += batch.size(0);
    }
    if (result.batches == 0) throw Error("recalibrate_batch_norm: the batch source gave no batch");
    for (const Target& t : targets)
      if (t.count < 2)
        throw Error("recalibrate_batch_norm: " + t.module->repr() + " saw " +
                    std::to_string(t.count) +
                    " value(s) per channel; the unbiased variance needs at least 2");
  } catch (...) {
    put_back();
    throw;
  }
  put_back();
  for (Target& t : targets)
    for (size_t j = 0; j < t.mean.size(); ++j) {
      (*t.running_mean)[static_cast<int64_t>(j)] = static_cast<float>(t.mean[j]);
      (*t.running_var)[static_cast<int64_t>(j)] =
          static_cast<float>(t.m2[j] / static_cast<double>(t.count - 1));
    }
  return result;
}

}  // namespace bnlab::nn
