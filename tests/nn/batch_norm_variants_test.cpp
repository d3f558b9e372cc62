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

}  // namespace
}  // namespace bnlab::nn
