// The processes of a data-parallel run as the training loop sees them (PyTorch's
// DistributedDataParallel, on CPUs): each process holds the same model, trains
// on its slice of every global batch and sums the gradients with the others
// before the same update. bnlab_dist implements it over MPI
// (bnlab/dist/mpi_replicas.hpp); a null Replicas* means one process.
#pragma once

#include <cstdint>

namespace bnlab::nn {
class Sequential;
}

namespace bnlab::train {

class Replicas {
 public:
  virtual ~Replicas() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Sums `count` doubles over every process, in place. Blocking; every process calls it.
  virtual void sum(double* values, int64_t count) = 0;
  // The lowest rank whose flag is set, or size() when none. Blocking.
  virtual int first_rank_with(bool flag) = 0;
  // The gradient sum of a step. attach (once per network) groups the
  // parameters into buckets and hooks Sequential's backward, so that a bucket
  // starts summing as soon as the children holding it are done; start_gradients
  // comes before each backward, finish_gradients after it: it waits for every
  // bucket and leaves each parameter's grad summed over the processes.
  virtual void attach(nn::Sequential& net) = 0;
  virtual void start_gradients() = 0;
  virtual void finish_gradients() = 0;
};

// [begin, end) of rank r's part of `count` items split over `size` ranks in
// rank order; the parts differ by at most one item.
inline void rank_part(int64_t count, int rank, int size, int64_t& begin, int64_t& end) {
  begin = count * rank / size;
  end = count * (rank + 1) / size;
}

}  // namespace bnlab::train
