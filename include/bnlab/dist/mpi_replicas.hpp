// Data-parallel training over MPI: the process launch (MPI only under mpirun),
// the gradient sum in buckets that overlap the backward (as PyTorch's DDP
// does), and SyncBatchNorm. The library bnlab_dist sits above the toolkit; the
// kernels and the toolkit never link MPI. See docs/distributed.md.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "bnlab/train/replicas.hpp"

namespace bnlab::nn {
class Sequential;
class BatchNormSync;
}  // namespace bnlab::nn

namespace bnlab::dist {

// Whether mpirun (OpenMPI's, or a PMI/PMIx launcher) started this process.
bool launched_by_mpirun();

// Where the communication of the steps so far went (summed over steps).
struct CollectiveTimes {
  int64_t sync_bn_calls = 0;            // SyncBatchNorm collectives (2 per layer per step)
  double sync_bn_seconds = 0.0;         // inside them
  double gradient_start_seconds = 0.0;  // packing and starting buckets during the backward
  double gradient_wait_seconds = 0.0;   // finish_gradients: the sums the backward did not hide
  int64_t gradient_floats = 0;          // parameters summed per step
  int64_t buckets = 0;
};

// The processes of MPI_COMM_WORLD as train::Replicas. Built by Launch.
class MpiReplicas : public train::Replicas {
 public:
  MpiReplicas();
  ~MpiReplicas() override;
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void sum(double* values, int64_t count) override;
  int first_rank_with(bool flag) override;
  void attach(nn::Sequential& net) override;
  void start_gradients() override;
  void finish_gradients() override;

  // Buckets close once they hold at least this many bytes of gradients
  // (default 512 KiB: several buckets for the presets, so the sums overlap).
  void set_bucket_bytes(int64_t bytes);
  // false: every bucket starts after the backward (no overlap; for measuring it).
  void set_overlap(bool on) { overlap_ = on; }
  const CollectiveTimes& times() const { return times_; }

  // Rank-ordered allgather of `count` doubles from each process into all
  // (size() * count): the collective behind SyncBatchNorm.
  void allgather(const double* mine, int64_t count, double* all);
  CollectiveTimes& mutable_times() { return times_; }
  // Keeps a SyncBatchNorm's sync object alive as long as the replicas.
  void keep(std::unique_ptr<nn::BatchNormSync> sync);

 private:
  struct Buckets;
  void child_done(const void* child);
  int rank_ = 0, size_ = 1;
  bool overlap_ = true;
  int64_t bucket_bytes_ = 512 * 1024;
  std::unique_ptr<Buckets> buckets_;
  std::vector<std::unique_ptr<nn::BatchNormSync>> syncs_;
  CollectiveTimes times_;
};

// MPI for the life of the object when launched by mpirun (MPI_Init_thread,
// funneled: only the main thread calls MPI); nothing at all otherwise, so a
// single process pays no MPI start-up. On ranks other than 0, stdout goes to
// /dev/null (rank 0 alone prints); each rank takes cores / ranks-on-this-node
// threads unless OMP_NUM_THREADS or --threads says otherwise.
class Launch {
 public:
  Launch(int& argc, char**& argv);
  ~Launch();
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;
  bool active() const { return replicas_ != nullptr; }
  // The world's processes, or null when not launched by mpirun.
  MpiReplicas* replicas() { return replicas_.get(); }
  // Ends every process of the run with `code` (MPI_Abort): a failure on one
  // rank must never leave the others waiting in a collective.
  [[noreturn]] void abort(int code);

 private:
  std::unique_ptr<MpiReplicas> replicas_;
};

// The replicas of the Launch alive in this process, or null.
MpiReplicas* world();

// Makes every BatchNorm of net (nested Sequentials included) a SyncBatchNorm
// over the replicas' processes. The sync objects live as long as `replicas`.
void convert_sync_batch_norm(nn::Sequential& net, MpiReplicas& replicas);

}  // namespace bnlab::dist
