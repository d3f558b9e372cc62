// SyncBatchNorm over MPI (bnlab/dist/mpi_replicas.hpp): one allgather of
// (count, mean, m2) per layer in the forward and one of (sum_dy, sum_dy_xhat)
// in the backward. Both gather every rank's values and combine them in rank
// order (batch_norm_merge_stats, then plain sums), so every rank gets the same
// bits whatever the timing or MPI's reduction order: the running statistics
// and the normalization are identical on every rank. The values are small
// (c doubles per rank): each collective costs a latency, not a bandwidth.
#include <chrono>
#include <vector>

#include "bnlab/batch_norm.hpp"
#include "bnlab/dist/mpi_replicas.hpp"
#include "bnlab/nn/layers.hpp"

namespace bnlab::dist {
namespace {

class MpiBatchNormSync : public nn::BatchNormSync {
 public:
  explicit MpiBatchNormSync(MpiReplicas& replicas) : replicas_(replicas) {}

  /* Rank r sends [count_r, mean_r(c), m2_r(c)]; every rank merges the K parts
     in rank order (Chan et al.). */
  void merge_stats(int64_t c, int64_t& count, double* mean, double* m2) override {
    const auto start = std::chrono::steady_clock::now();
    const int ranks = replicas_.size();
    const size_t row = size_t(1 + 2 * c);
    mine_.resize(row);
    all_.resize(row * size_t(ranks));
    mine_[0] = double(count);
    std::copy(mean, mean + c, mine_.begin() + 1);
    std::copy(m2, m2 + c, mine_.begin() + 1 + c);
    replicas_.allgather(mine_.data(), int64_t(row), all_.data());
    counts_.resize(size_t(ranks));
    means_.resize(size_t(ranks * c));
    m2s_.resize(size_t(ranks * c));
    for (int r = 0; r < ranks; ++r) {
      const double* part = all_.data() + size_t(r) * row;
      counts_[size_t(r)] = static_cast<int64_t>(part[0]);
      std::copy(part + 1, part + 1 + c, means_.begin() + r * c);
      std::copy(part + 1 + c, part + 1 + 2 * c, m2s_.begin() + r * c);
    }
    batch_norm_merge_stats(ranks, c, counts_.data(), means_.data(), m2s_.data(), mean, m2, &count);
    record(start);
  }

  // sum_dy = sum_r sum_dy_r, sum_dy_xhat likewise, added in rank order.
  void sum_grad_sums(int64_t c, double* sum_dy, double* sum_dy_xhat) override {
    const auto start = std::chrono::steady_clock::now();
    const int ranks = replicas_.size();
    const size_t row = size_t(2 * c);
    mine_.resize(row);
    all_.resize(row * size_t(ranks));
    std::copy(sum_dy, sum_dy + c, mine_.begin());
    std::copy(sum_dy_xhat, sum_dy_xhat + c, mine_.begin() + c);
    replicas_.allgather(mine_.data(), int64_t(row), all_.data());
    for (int64_t j = 0; j < c; ++j) sum_dy[j] = sum_dy_xhat[j] = 0.0;
    for (int r = 0; r < ranks; ++r) {
      const double* part = all_.data() + size_t(r) * row;
      for (int64_t j = 0; j < c; ++j) {
        sum_dy[j] += part[j];
        sum_dy_xhat[j] += part[c + j];
      }
    }
    record(start);
  }

 private:
  void record(std::chrono::steady_clock::time_point start) {
    CollectiveTimes& t = replicas_.mutable_times();
    t.sync_bn_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ++t.sync_bn_calls;
  }
  MpiReplicas& replicas_;
  std::vector<double> mine_, all_, means_, m2s_;
  std::vector<int64_t> counts_;
};

void convert(nn::Sequential& net, MpiReplicas& replicas) {
  for (size_t i = 0; i < net.size(); ++i) {
    if (auto* inner = dynamic_cast<nn::Sequential*>(&net[i])) convert(*inner, replicas);
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(&net[i])) {
      auto sync = std::make_unique<MpiBatchNormSync>(replicas);
      bn->sync = sync.get();
      replicas.keep(std::move(sync));
    }
  }
}

}  // namespace

void convert_sync_batch_norm(nn::Sequential& net, MpiReplicas& replicas) { convert(net, replicas); }

}  // namespace bnlab::dist
