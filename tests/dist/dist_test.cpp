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
