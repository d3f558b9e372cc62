// The MPI pieces, run inside mpirun with 2 and 3 ranks: SyncBatchNorm on each
// rank's slice of a batch gives what BatchNorm gives on the whole batch (y,
// running statistics, dx, and the weight/bias grads once summed over the
// ranks), the bucketed gradient sum, and the averaged running statistics. Each
// rank builds the same whole batch from one seed and the float64 or
// one-process reference from it.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "bnlab/dist/mpi_replicas.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/random.hpp"
#include "bnlab/train/trainer.hpp"

namespace bnlab::dist {
namespace {

MpiReplicas& replicas() {
  MpiReplicas* world = dist::world();
  if (world == nullptr) throw std::runtime_error("run these tests under mpirun");
  return *world;
}

Tensor random_tensor(const Shape& shape, uint64_t seed, float scale, float shift = 0.0f) {
  Generator gen(seed);
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = shift + scale * gen.normal();
  return t;
}

// Rows [begin, end) of a (N, ...) tensor.
Tensor rows(const Tensor& t, int64_t begin, int64_t end) {
  Shape shape = t.shape();
  const int64_t row = t.numel() / shape[0];
  shape[0] = end - begin;
  Tensor out(shape);
  std::copy(t.data() + begin * row, t.data() + end * row, out.data());
  return out;
}

void randomise_affine(nn::BatchNorm& bn) {
  const Tensor w = random_tensor({bn.num_features}, 11, 0.3f, 1.0f);
  const Tensor b = random_tensor({bn.num_features}, 12, 0.5f);
  std::copy(w.data(), w.data() + w.numel(), bn.weight.value.data());
  std::copy(b.data(), b.data() + b.numel(), bn.bias.value.data());
}

// One SyncBatchNorm step on rank slices of (n, c, s) against BatchNorm on the
// whole batch: two steps, so the second uses the updated running statistics.
void expect_sync_matches_whole_batch(int64_t n, int64_t c, int64_t s, bool relu) {
  MpiReplicas& world = replicas();
  int64_t begin = 0, end = 0;
  train::rank_part(n, world.rank(), world.size(), begin, end);
  const Shape shape = s > 1 ? Shape{n, c, s} : Shape{n, c};

  nn::BatchNorm whole(1, c);
  randomise_affine(whole);
  whole.fuse_relu = relu;
  nn::Sequential net;
  net.add(std::make_unique<nn::BatchNorm>(1, c));
  auto& part = dynamic_cast<nn::BatchNorm&>(net[0]);
  randomise_affine(part);
  part.fuse_relu = relu;
  convert_sync_batch_norm(net, world);

  for (int step = 0; step < 2; ++step) {
    const Tensor x = random_tensor(shape, 100 + step, 2.0f, 0.5f);
    const Tensor dy = random_tensor(shape, 200 + step, 1.0f);
    const Tensor x_part = rows(x, begin, end), dy_part = rows(dy, begin, end);
    const Tensor& y = whole.forward(x);
    const Tensor& y_part = part.forward(x_part);
    const Tensor expected_y = rows(y, begin, end);
    for (int64_t i = 0; i < y_part.numel(); ++i)
      ASSERT_NEAR(y_part[i], expected_y[i], 1e-5) << "y at " << i << ", step " << step;
    for (int64_t j = 0; j < c; ++j) {
      EXPECT_NEAR(part.running_mean[j], whole.running_mean[j], 1e-6) << j;
      EXPECT_NEAR(part.running_var[j], whole.running_var[j], 1e-5) << j;
    }
    whole.weight.grad.fill(0.0f);
    whole.bias.grad.fill(0.0f);
    part.weight.grad.fill(0.0f);
    part.bias.grad.fill(0.0f);
    const Tensor& dx = whole.backward(dy);
    const Tensor& dx_part = part.backward(dy_part);
    const Tensor expected_dx = rows(dx, begin, end);
    for (int64_t i = 0; i < dx_part.numel(); ++i)
      ASSERT_NEAR(dx_part[i], expected_dx[i], 1e-5) << "dx at " << i << ", step " << step;
    // Each rank holds its share of dweight/dbias; the gradient sum completes them.
    std::vector<double> grads(size_t(2 * c));
    for (int64_t j = 0; j < c; ++j) {
      grads[size_t(j)] = part.weight.grad[j];
      grads[size_t(c + j)] = part.bias.grad[j];
    }
    world.sum(grads.data(), 2 * c);
    for (int64_t j = 0; j < c; ++j) {
      EXPECT_NEAR(grads[size_t(j)], whole.weight.grad[j], 1e-4) << "dweight " << j;
      EXPECT_NEAR(grads[size_t(c + j)], whole.bias.grad[j], 1e-4) << "dbias " << j;
    }
  }
}

TEST(SyncBatchNorm, RankSlicesOfA2DBatchMatchBatchNormOnTheWholeBatch) {
  expect_sync_matches_whole_batch(11, 7, 1, false);
}

TEST(SyncBatchNorm, RankSlicesOfA3DBatchWithFusedReluMatchTheWholeBatch) {
  expect_sync_matches_whole_batch(7, 5, 9, true);
}

TEST(SyncBatchNorm, CollectivesAreCountedTwicePerStep) {
  MpiReplicas& world = replicas();
  const int64_t before = world.times().sync_bn_calls;
  expect_sync_matches_whole_batch(6, 3, 1, false);
  EXPECT_EQ(world.times().sync_bn_calls - before, 4);  // 2 steps x (forward + backward)
}

// grads (r + 1) * g on rank r sum to g * K (K + 1) / 2, bucket by bucket,
// whether the buckets start during the backward or after it.
void expect_bucketed_sum(bool overlap) {
  MpiReplicas& world = replicas();
  Generator gen(5);
  nn::Sequential net;
  net.add(std::make_unique<nn::Linear>(4, 8, true, gen));
  net.add(std::make_unique<nn::ReLU>());
  net.add(std::make_unique<nn::Linear>(8, 8, false, gen));
  net.add(std::make_unique<nn::Linear>(8, 3, true, gen));
  world.set_bucket_bytes(100);  // Linear(8, 8)'s 256 bytes close a bucket: several buckets
  world.set_overlap(overlap);
  world.attach(net);
  EXPECT_EQ(world.times().buckets, 3);
  EXPECT_EQ(world.times().gradient_floats, 4 * 8 + 8 + 8 * 8 + 8 * 3 + 3);
  const auto params = net.parameters();
  for (int round = 0; round < 2; ++round) {
    for (const auto& [name, p] : params)
      for (int64_t i = 0; i < p->grad.numel(); ++i)
        p->grad[i] = float((world.rank() + 1) * (i + round + 1));
    world.start_gradients();
    for (size_t i = net.size(); i-- > 0;) net.after_child_backward(net[i]);
    world.finish_gradients();
    const int k = world.size();
    for (const auto& [name, p] : params)
      for (int64_t i = 0; i < p->grad.numel(); ++i)
        ASSERT_EQ(p->grad[i], float((i + round + 1) * k * (k + 1) / 2)) << name << " " << i;
  }
  world.set_overlap(true);
  world.set_bucket_bytes(512 * 1024);
}

TEST(GradientSum, BucketsStartedDuringTheBackwardSumEveryGradient) { expect_bucketed_sum(true); }

// Every rank must apply the same update: the sums of random floats are the
// same bits on every rank, and within float rounding of the float64 sum.
TEST(GradientSum, EveryRankGetsTheSameBits) {
  MpiReplicas& world = replicas();
  Generator gen(7);
  nn::Sequential net;
  net.add(std::make_unique<nn::Linear>(33, 17, true, gen));
  net.add(std::make_unique<nn::Linear>(17, 5, true, gen));
  world.set_bucket_bytes(1024);
  world.attach(net);
  const auto params = net.parameters();
  std::vector<double> expected;
  for (const auto& [name, p] : params)
    for (int64_t i = 0; i < p->grad.numel(); ++i) {
      double sum = 0.0;
      for (int r = 0; r < world.size(); ++r) {
        const float value = static_cast<float>(std::sin(double(i + 1) * (r + 1) * 0.37) * (r + 1));
        if (r == world.rank()) p->grad[i] = value;
        sum += value;
      }
      expected.push_back(sum);
    }
  world.start_gradients();
  for (size_t i = net.size(); i-- > 0;) net.after_child_backward(net[i]);
  world.finish_gradients();
  std::vector<double> mine;
  for (const auto& [name, p] : params)
    for (int64_t i = 0; i < p->grad.numel(); ++i) mine.push_back(p->grad[i]);
  std::vector<double> all(mine.size() * size_t(world.size()));
  world.allgather(mine.data(), int64_t(mine.size()), all.data());
  for (size_t i = 0; i < mine.size(); ++i) {
    EXPECT_NEAR(mine[i], expected[i], 1e-5) << i;
    for (int r = 0; r < world.size(); ++r)
      ASSERT_EQ(all[size_t(r) * mine.size() + i], mine[i]) << "rank " << r << ", value " << i;
  }
  world.set_bucket_bytes(512 * 1024);
}
TEST(GradientSum, BucketsStartedAfterTheBackwardSumEveryGradient) { expect_bucketed_sum(false); }

TEST(RunningStatistics, AveragedOverTheRanks) {
  MpiReplicas& world = replicas();
  nn::Sequential net;
  net.add(std::make_unique<nn::BatchNorm>(1, 4));
  auto& bn = dynamic_cast<nn::BatchNorm&>(net[0]);
  for (int64_t j = 0; j < 4; ++j) {
    bn.running_mean[j] = float(world.rank() + j);
    bn.running_var[j] = float(2 * world.rank() + 1);
  }
  train::average_running_statistics(net, world);
  const double k = world.size(), mean_rank = (k - 1) / 2;
  for (int64_t j = 0; j < 4; ++j) {
    EXPECT_FLOAT_EQ(bn.running_mean[j], float(mean_rank + j));
    EXPECT_FLOAT_EQ(bn.running_var[j], float(2 * mean_rank + 1));
  }
}

}  // namespace
}  // namespace bnlab::dist

int main(int argc, char** argv) {
  bnlab::dist::Launch launch(argc, argv);
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
