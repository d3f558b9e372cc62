// GhostBatchNorm1d/2d and BatchRenorm1d/2d: float64 references of the
// training forward, the running statistics and the backward, central
// differences, and eval and state dicts equal to BatchNorm's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/nn/norm_layers.hpp"
#include "bnlab/nn/state_dict.hpp"
#include "grad_check.hpp"

namespace bnlab::nn {
namespace {

using test::check_gradients;
using test::GradCheckOptions;
using test::random_tensor;

// Mean and biased variance of channel j over examples [first, first + count) of x (N, C, S).
struct Stats {
  double mean, var;
};
Stats channel_stats(const Tensor& x, int64_t first, int64_t count, int64_t j) {
  const int64_t c = x.size(1), s = x.numel() / (x.size(0) * c);
  double sum = 0.0, squares = 0.0;
  for (int64_t i = first; i < first + count; ++i)
    for (int64_t k = 0; k < s; ++k) sum += x[(i * c + j) * s + k];
  const double mean = sum / static_cast<double>(count * s);
  for (int64_t i = first; i < first + count; ++i)
    for (int64_t k = 0; k < s; ++k) squares += std::pow(x[(i * c + j) * s + k] - mean, 2);
  return {mean, squares / static_cast<double>(count * s)};
}

void randomise(Parameter& p, uint64_t seed, float mean) {
  const Tensor r = random_tensor(p.value.shape(), seed, 0.5f, mean);
  for (int64_t i = 0; i < r.numel(); ++i) p.value[i] = r[i];
}

// The network's eval output after loading `from`'s state dict into `to`.
Tensor eval_after_loading(Sequential& from, Sequential& to, const Tensor& x) {
  load_state_dict(to, state_dict(from));
  to.eval();
  return to.forward(x);
}

// ---------------------------------------------------------------- GhostBatchNorm

TEST(GhostBatchNorm, TrainingNormalizesEachSliceAndFoldsEverySliceInOrder) {
  GhostBatchNorm ghost(1, 3, 4, 1e-5, 0.2);
  randomise(ghost.weight, 1, 1.0f);
  randomise(ghost.bias, 2, 0.0f);
  const Tensor x = random_tensor({10, 3, 5}, 3, 2.0f, 1.0f);  // slices of 4, 4, 2 examples
  const Tensor& y = ghost.forward(x);
  std::vector<double> mean(3, 0.0), var(3, 1.0);
  for (int64_t first = 0; first < 10; first += 4) {
    const int64_t count = std::min<int64_t>(4, 10 - first);
    for (int64_t j = 0; j < 3; ++j) {
      const Stats st = channel_stats(x, first, count, j);
      for (int64_t i = first; i < first + count; ++i)
        for (int64_t k = 0; k < 5; ++k) {
          const int64_t at = (i * 3 + j) * 5 + k;
          const double expected =
              (x[at] - st.mean) / std::sqrt(st.var + 1e-5) * ghost.weight.value[j] +
              ghost.bias.value[j];
          ASSERT_NEAR(y[at], expected, 2e-5) << "at " << at;
        }
      const double m = static_cast<double>(count * 5);
      mean[j] = 0.8 * mean[j] + 0.2 * st.mean;
      var[j] = 0.8 * var[j] + 0.2 * st.var * m / (m - 1.0);
    }
  }
  for (int64_t j = 0; j < 3; ++j) {
    EXPECT_NEAR(ghost.running_mean[j], mean[j], 1e-6);
    EXPECT_NEAR(ghost.running_var[j], var[j], 1e-6);
  }
  EXPECT_EQ(ghost.num_batches_tracked, 3);  // one per slice
}

TEST(GhostBatchNorm, OneSliceIsBatchNormAndEvalIsBatchNormsThroughTheStateDict) {
  Generator gen(0);
  auto ghost = parse_arch("GhostBatchNorm2d(4, 16, momentum=None)", gen);
  auto bn = parse_arch("BatchNorm2d(4, momentum=None)", gen);
  const Tensor x = random_tensor({8, 4, 3, 3}, 4, 1.5f, -0.5f);
  const Tensor ghost_y = ghost->forward(x);  // virtual_batch_size 16 > 8: one slice
  const Tensor& bn_y = bn->forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(ghost_y[i], bn_y[i]);
  // Different slices, then PyTorch's BatchNorm keys carry the state over.
  auto small = parse_arch("GhostBatchNorm2d(4, 2)", gen);
  for (int step = 0; step < 3; ++step) small->forward(random_tensor({8, 4, 3, 3}, 10 + step));
  const Tensor loaded_y = eval_after_loading(*small, *bn, x);
  small->eval();
  const Tensor& small_y = small->forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(small_y[i], loaded_y[i]);
}

TEST(GhostBatchNorm, GradientsMatchCentralDifferences) {
  GhostBatchNorm ghost(2, 3, 3);
  randomise(ghost.weight, 5, 1.0f);
  randomise(ghost.bias, 6, 0.0f);
  check_gradients(ghost, random_tensor({7, 3, 2, 2}, 7), 8);  // slices of 3, 3, 1
  ghost.eval();
  check_gradients(ghost, random_tensor({7, 3, 2, 2}, 9), 10);
  GhostBatchNorm plain(1, 2, 2, 1e-5, 0.1, false, false);
  check_gradients(plain, random_tensor({5, 2, 3}, 11), 12);
}

TEST(GhostBatchNorm, ReprTextAndErrors) {
  EXPECT_EQ(GhostBatchNorm(2, 16, 32).repr(),
            "GhostBatchNorm2d(16, virtual_batch_size=32, eps=1e-05, momentum=0.1, affine=True, "
            "track_running_stats=True)");
  Generator gen(0);
  EXPECT_EQ(parse_arch("GhostBatchNorm1d(8, virtual_batch_size=4, affine=False)", gen)->repr(),
            "Sequential(\n  (0): GhostBatchNorm1d(8, virtual_batch_size=4, eps=1e-05, "
            "momentum=0.1, affine=False, track_running_stats=True)\n)");
  EXPECT_THROW(parse_arch("GhostBatchNorm1d(8)", gen), Error);
  EXPECT_THROW(parse_arch("GhostBatchNorm1d(8, 0)", gen), Error);
  GhostBatchNorm ghost(1, 2, 2);
  EXPECT_THROW(ghost.forward(random_tensor({4, 3}, 1)), Error);
  EXPECT_THROW(ghost.forward(random_tensor({3, 2}, 1)), Error);  // a last slice of one value
}

// ---------------------------------------------------------------- BatchRenorm

// y = ((x - mu_B) / sigma_B * r + d) * w + b in double, with r, d from the
// running statistics before the step; returns r and d per channel too.
struct RenormReference {
  std::vector<double> y, r, d, xhat;
};
RenormReference renorm_reference(const Tensor& x, const BatchRenorm& renorm,
                                 const std::vector<double>& old_mean,
                                 const std::vector<double>& old_var) {
  const int64_t n = x.size(0), c = x.size(1), s = x.numel() / (n * c);
  RenormReference ref{std::vector<double>(x.numel()), {}, {}, std::vector<double>(x.numel())};
  for (int64_t j = 0; j < c; ++j) {
    const Stats st = channel_stats(x, 0, n, j);
    const double sigma_b = std::sqrt(st.var + renorm.eps);
    const double sigma = std::sqrt(old_var[j] + renorm.eps);
    const double r = std::clamp(sigma_b / sigma, 1.0 / renorm.r_max, renorm.r_max);
    const double d = std::clamp((st.mean - old_mean[j]) / sigma, -renorm.d_max, renorm.d_max);
    ref.r.push_back(r);
    ref.d.push_back(d);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) {
        const int64_t at = (i * c + j) * s + k;
        ref.xhat[at] = (x[at] - st.mean) / sigma_b;
        ref.y[at] = (ref.xhat[at] * r + d) * renorm.weight.value[j] + renorm.bias.value[j];
      }
  }
  return ref;
}

void set_running(BatchRenorm& renorm, const std::vector<double>& mean,
                 const std::vector<double>& var) {
  for (int64_t j = 0; j < renorm.num_features; ++j) {
    renorm.running_mean[j] = static_cast<float>(mean[j]);
    renorm.running_var[j] = static_cast<float>(var[j]);
  }
}

TEST(BatchRenorm, TrainingForwardMatchesIoffesFormulaAndRunningStatsAreBatchNorms) {
  BatchRenorm renorm(2, 3, 1e-5, 0.01, 1.5, 0.5);
  randomise(renorm.weight, 20, 1.0f);
  randomise(renorm.bias, 21, 0.0f);
  // Channel 0 within the bounds, 1 with r clipped high and d low, 2 with r low and d high.
  const std::vector<double> mean{0.9, 3.0, -2.0}, var{1.5, 0.2, 20.0};
  set_running(renorm, mean, var);
  const Tensor x = random_tensor({6, 3, 2, 2}, 22, 1.2f, 1.0f);
  const RenormReference ref = renorm_reference(x, renorm, mean, var);
  const Tensor& y = renorm.forward(x);
  for (int64_t at = 0; at < x.numel(); ++at) ASSERT_NEAR(y[at], ref.y[at], 2e-5) << "at " << at;
  EXPECT_LT(ref.r[0], 1.5);
  EXPECT_GT(ref.r[0], 1.0 / 1.5);
  EXPECT_DOUBLE_EQ(ref.r[1], 1.5);
  EXPECT_DOUBLE_EQ(ref.d[1], -0.5);
  EXPECT_DOUBLE_EQ(ref.r[2], 1.0 / 1.5);
  EXPECT_DOUBLE_EQ(ref.d[2], 0.5);
  for (int64_t j = 0; j < 3; ++j) {
    EXPECT_NEAR(renorm.last_r[j], ref.r[j], 1e-6);
    EXPECT_NEAR(renorm.last_d[j], ref.d[j], 1e-6);
  }
  // BatchNorm's update from the same state, with the same momentum.
  BatchNorm bn(2, 3, 1e-5, 0.01);
  for (int64_t j = 0; j < 3; ++j) {
    bn.running_mean[j] = static_cast<float>(mean[j]);
    bn.running_var[j] = static_cast<float>(var[j]);
  }
  bn.forward(x);
  for (int64_t j = 0; j < 3; ++j) {
    EXPECT_EQ(renorm.running_mean[j], bn.running_mean[j]);
    EXPECT_EQ(renorm.running_var[j], bn.running_var[j]);
  }
  EXPECT_EQ(renorm.num_batches_tracked, 1);
}

TEST(BatchRenorm, RMaxOneDMaxZeroIsBatchNormAndEvalIsBatchNorms) {
  BatchRenorm renorm(1, 4, 1e-5, 0.01, 1.0, 0.0);
  BatchNorm bn(1, 4, 1e-5, 0.01);
  const Tensor x = random_tensor({5, 4}, 23, 2.0f, 3.0f);
  const Tensor renorm_y = renorm.forward(x);
  const Tensor& bn_y = bn.forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_NEAR(renorm_y[i], bn_y[i], 1e-6);
  renorm.eval();
  bn.eval();
  const Tensor renorm_eval = renorm.forward(x);
  const Tensor& bn_eval = bn.forward(x);
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(renorm_eval[i], bn_eval[i]);
  // Its state dict is BatchNorm's.
  Generator gen(0);
  auto renorm_net = parse_arch("BatchRenorm2d(3)", gen);
  auto bn_net = parse_arch("BatchNorm2d(3)", gen);
  renorm_net->forward(random_tensor({4, 3, 2, 2}, 24, 1.0f, 2.0f));
  const Tensor probe = random_tensor({4, 3, 2, 2}, 25);
  const Tensor loaded = eval_after_loading(*renorm_net, *bn_net, probe);
  renorm_net->eval();
  const Tensor& own = renorm_net->forward(probe);
  for (int64_t i = 0; i < probe.numel(); ++i) ASSERT_EQ(own[i], loaded[i]);
}

TEST(BatchRenorm, BackwardHoldsRAndDConstantAgainstFloat64) {
  BatchRenorm renorm(2, 2, 1e-5, 0.01, 3.0, 5.0);
  randomise(renorm.weight, 26, 1.0f);
  randomise(renorm.bias, 27, 0.0f);
  const std::vector<double> mean{0.4, -0.3}, var{0.7, 2.0};  // r and d inside their bounds
  set_running(renorm, mean, var);
  const Tensor x = random_tensor({4, 2, 3, 1}, 28);
  const Tensor dy = random_tensor(x.shape(), 29);
  const RenormReference ref = renorm_reference(x, renorm, mean, var);
  renorm.forward(x);
  for (auto& [name, p] : renorm.parameters()) p->grad.fill(0.0f);
  const Tensor& dx = renorm.backward(dy);
  const int64_t n = 4, c = 2, s = 3;
  for (int64_t j = 0; j < c; ++j) {
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) {
        const int64_t at = (i * c + j) * s + k;
        sum_dy += dy[at];
        sum_dy_xhat += dy[at] * ref.xhat[at];
      }
    EXPECT_NEAR(renorm.bias.grad[j], sum_dy, 1e-5);
    EXPECT_NEAR(renorm.weight.grad[j], ref.r[j] * sum_dy_xhat + ref.d[j] * sum_dy, 1e-5);
    const double sigma_b = std::sqrt(channel_stats(x, 0, n, j).var + 1e-5);
    const double m = static_cast<double>(n * s);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t k = 0; k < s; ++k) {
        const int64_t at = (i * c + j) * s + k;
        const double expected = renorm.weight.value[j] * ref.r[j] / sigma_b *
                                (dy[at] - sum_dy / m - ref.xhat[at] * sum_dy_xhat / m);
        EXPECT_NEAR(dx[at], expected, 1e-5) << "at " << at;
      }
  }
}

TEST(BatchRenorm, GradientsMatchCentralDifferencesWhereRAndDAreClipped) {
  // r and d clipped, so constant near x: the central differences of the
  // whole map are the backward's. momentum 0: the running statistics stay.
  BatchRenorm renorm(2, 2, 1e-5, 0.0, 3.0, 1.0);
  randomise(renorm.weight, 30, 1.0f);
  randomise(renorm.bias, 31, 0.0f);
  renorm.running_mean.fill(50.0f);
  renorm.running_var.fill(100.0f);
  check_gradients(renorm, random_tensor({3, 2, 2, 2}, 32), 33);
  EXPECT_DOUBLE_EQ(renorm.last_r[0], 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(renorm.last_d[1], -1.0);
  renorm.eval();
  check_gradients(renorm, random_tensor({3, 2, 2, 2}, 34), 35);
}

TEST(BatchRenorm, ReprTextAndErrors) {
  EXPECT_EQ(BatchRenorm(2, 16).repr(),
            "BatchRenorm2d(16, eps=1e-05, momentum=0.01, r_max=3.0, d_max=5.0, affine=True)");
  Generator gen(0);
  EXPECT_EQ(parse_arch("BatchRenorm1d(8, r_max=2, d_max=0.5, affine=False)", gen)->repr(),
            "Sequential(\n  (0): BatchRenorm1d(8, eps=1e-05, momentum=0.01, r_max=2.0, "
            "d_max=0.5, affine=False)\n)");
  for (const char* bad : {"BatchRenorm1d(8, r_max=0.5)", "BatchRenorm1d(8, d_max=-1)",
                          "BatchRenorm1d(8, momentum=None)", "BatchRenorm2d(8, momentum=1.5)"})
    EXPECT_THROW(parse_arch(bad, gen), Error) << bad;
  BatchRenorm renorm(2, 3);
  EXPECT_THROW(renorm.forward(random_tensor({2, 3, 4}, 1)), Error);
}

// ---------------------------------------------------------------- frozen BatchNorm

TEST(FrozenStatisticsBatchNorm, TrainingGradientsAreEvalsAndMatchCentralDifferences) {
  // freeze_batch_norm: training uses the running statistics, whose backward
  // (batch_norm_backward_inference) has no term through the batch.
  BatchNorm bn(2, 3);
  randomise(bn.weight, 40, 1.0f);
  randomise(bn.bias, 41, 0.0f);
  for (int64_t j = 0; j < 3; ++j) {
    bn.running_mean[j] = 0.3f * static_cast<float>(j);
    bn.running_var[j] = 0.5f + static_cast<float>(j);
  }
  bn.freeze_batch_norm(false);
  check_gradients(bn, random_tensor({2, 3, 2, 2}, 42), 43);
  EXPECT_EQ(bn.num_batches_tracked, 0);
  EXPECT_TRUE(bn.weight.requires_grad);
  bn.freeze_batch_norm(true);
  EXPECT_FALSE(bn.bias.requires_grad);
}

// A single-process stand-in for MPI: merges nothing, counts the collectives.
struct CountingSync : BatchNormSync {
  void merge_stats(int64_t, int64_t&, double*, double*) override { ++merges; }
  void sum_grad_sums(int64_t, double*, double*) override { ++grad_sums; }
  int merges = 0, grad_sums = 0;
};

TEST(FrozenStatisticsBatchNorm, ASyncedBatchNormFrozenAfterTrainingRunsNoCollective) {
  CountingSync sync;
  BatchNorm bn(1, 3);
  bn.sync = &sync;
  const Tensor x = random_tensor({4, 3}, 44);
  const Tensor dy = random_tensor({4, 3}, 45);
  bn.forward(x);
  bn.backward(dy);
  EXPECT_EQ(sync.grad_sums, 1);
  bn.freeze_batch_norm(false);
  bn.forward(x);
  const Tensor frozen_dx = bn.backward(dy);
  EXPECT_EQ(sync.merges, 1);
  EXPECT_EQ(sync.grad_sums, 1);  // the inference backward, not the synced one
  bn.sync = nullptr;
  bn.eval();
  bn.forward(x);
  const Tensor& eval_dx = bn.backward(dy);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(frozen_dx[i], eval_dx[i]);
}

}  // namespace
}  // namespace bnlab::nn
