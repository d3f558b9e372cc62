// MpiReplicas and Launch (bnlab/dist/mpi_replicas.hpp): the data-parallel
// gradient sum over MPI_COMM_WORLD.
//
// The gradients are summed in buckets, as PyTorch's DDP does: attach() walks
// the network's children from the last to the first (the order the backward
// finishes them) and closes a bucket once it holds bucket_bytes; a bucket is
// packed into one float buffer and its sum starts as soon as the last child
// holding it is done, while the backward goes on with the children before it.
// The sum is a ring allreduce's two halves: a reduce-scatter (rank r sums
// block r of every rank's buffer) and then an allgather of the summed blocks,
// so each float is added up once, on one rank, and every rank gets the same
// bits (an allreduce may add in a different order on each rank). The two
// halves run on two communicators, each seeing its collectives in bucket
// order on every rank, as MPI requires. MPI progresses nonblocking
// collectives only inside MPI calls, so each finished child also tests the
// buckets in flight and starts the allgathers whose reduce-scatter is done.
// finish_gradients waits for them all and unpacks the sums into the gradients.
#include "bnlab/dist/mpi_replicas.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/threading.hpp"

namespace bnlab::dist {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

MpiReplicas* g_world = nullptr;

void check(int code, const char* what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(std::string(what) + ": " + std::string(text, size_t(length)));
}

}  // namespace

bool launched_by_mpirun() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
    if (std::getenv(name) != nullptr) return true;
  return false;
}

struct MpiReplicas::Buckets {
  struct Bucket {
    std::vector<nn::Parameter*> params;
    std::vector<float> buffer;  // the gradients, padded to `block` floats per rank
    int64_t block = 0;
    int children = 0, pending = 0;
    bool started = false;
  };
  std::vector<Bucket> buckets;  // in the order the backward completes them
  std::unordered_map<const void*, int> bucket_of_child;
  // Bucket i's reduce-scatter and allgather; MPI_REQUEST_NULL once complete.
  std::vector<MPI_Request> scatters, gathers;
  size_t next_gather = 0;  // the allgathers start in bucket order
  MPI_Comm scatter_comm = MPI_COMM_NULL, gather_comm = MPI_COMM_NULL;
  int rank = 0;

  void start(size_t i) {
    Bucket& b = buckets[i];
    float* out = b.buffer.data();
    for (nn::Parameter* p : b.params) {
      std::copy(p->grad.data(), p->grad.data() + p->grad.numel(), out);
      out += p->grad.numel();
    }
    check(MPI_Ireduce_scatter_block(MPI_IN_PLACE, b.buffer.data(), static_cast<int>(b.block),
                                    MPI_FLOAT, MPI_SUM, scatter_comm, &scatters[i]),
          "MPI_Ireduce_scatter_block of a gradient bucket");
    b.started = true;
  }

  // Starts the allgather of each bucket, in order, whose reduce-scatter is
  // done (wait: waiting for it).
  void advance(bool wait) {
    while (next_gather < buckets.size() && buckets[next_gather].started) {
      int done = 1;
      if (wait)
        check(MPI_Wait(&scatters[next_gather], MPI_STATUS_IGNORE), "MPI_Wait for a reduce-scatter");
      else
        MPI_Test(&scatters[next_gather], &done, MPI_STATUS_IGNORE);
      if (!done) return;
      Bucket& b = buckets[next_gather];
      // The summed block lands at the buffer's start; the allgather takes it from its place.
      if (rank > 0)
        std::memmove(b.buffer.data() + rank * b.block, b.buffer.data(),
                     sizeof(float) * size_t(b.block));
      check(
          MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, b.buffer.data(),
                         static_cast<int>(b.block), MPI_FLOAT, gather_comm, &gathers[next_gather]),
          "MPI_Iallgather of a gradient bucket");
      ++next_gather;
    }
  }
};

MpiReplicas::MpiReplicas() : buckets_(std::make_unique<Buckets>()) {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  buckets_->rank = rank_;
  MPI_Comm_dup(MPI_COMM_WORLD, &buckets_->scatter_comm);
  MPI_Comm_dup(MPI_COMM_WORLD, &buckets_->gather_comm);
}

MpiReplicas::~MpiReplicas() {
  MPI_Comm_free(&buckets_->scatter_comm);
  MPI_Comm_free(&buckets_->gather_comm);
}

void MpiReplicas::keep(std::unique_ptr<nn::BatchNormSync> sync) {
  syncs_.push_back(std::move(sync));
}

void MpiReplicas::sum(double* values, int64_t count) {
  check(MPI_Allreduce(MPI_IN_PLACE, values, static_cast<int>(count), MPI_DOUBLE, MPI_SUM,
                      MPI_COMM_WORLD),
        "MPI_Allreduce");
}

int MpiReplicas::first_rank_with(bool flag) {
  int mine = flag ? rank_ : size_, first = size_;
  check(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce");
  return first;
}

void MpiReplicas::allgather(const double* mine, int64_t count, double* all) {
  check(MPI_Allgather(mine, static_cast<int>(count), MPI_DOUBLE, all, static_cast<int>(count),
                      MPI_DOUBLE, MPI_COMM_WORLD),
        "MPI_Allgather");
}

void MpiReplicas::set_bucket_bytes(int64_t bytes) {
  if (bytes <= 0) throw Error("bucket bytes: must be > 0, got " + std::to_string(bytes));
  bucket_bytes_ = bytes;
}

void MpiReplicas::attach(nn::Sequential& net) {
  Buckets& state = *buckets_;
  auto close_bucket = [&](Buckets::Bucket& current, int64_t& floats) {
    current.block = (floats + size_ - 1) / size_;
    current.buffer.assign(size_t(current.block * size_), 0.0f);
    times_.gradient_floats += floats;
    state.buckets.push_back(std::move(current));
    current = {};
    floats = 0;
  };
  state.buckets.clear();
  state.bucket_of_child.clear();
  Buckets::Bucket current;
  int64_t floats = 0;
  times_.gradient_floats = 0;
  for (size_t i = net.size(); i-- > 0;) {
    nn::Module& child = net[i];
    const auto params = child.parameters();
    if (params.empty()) continue;
    for (const auto& [name, p] : params) {
      current.params.push_back(p);
      floats += p->grad.numel();
    }
    state.bucket_of_child[&child] = static_cast<int>(state.buckets.size());
    ++current.children;
    if (floats * int64_t(sizeof(float)) >= bucket_bytes_) close_bucket(current, floats);
  }
  if (current.children > 0) close_bucket(current, floats);
  times_.buckets = static_cast<int64_t>(state.buckets.size());
  state.scatters.assign(state.buckets.size(), MPI_REQUEST_NULL);
  state.gathers.assign(state.buckets.size(), MPI_REQUEST_NULL);
  state.next_gather = 0;
  net.after_child_backward = [this](nn::Module& child) { child_done(&child); };
}

void MpiReplicas::start_gradients() {
  for (Buckets::Bucket& b : buckets_->buckets) {
    b.pending = b.children;
    b.started = false;
  }
}

void MpiReplicas::child_done(const void* child) {
  if (!overlap_) return;
  Buckets& state = *buckets_;
  const auto found = state.bucket_of_child.find(child);
  if (found == state.bucket_of_child.end()) return;
  const Clock::time_point start = Clock::now();
  const size_t index = size_t(found->second);
  if (--state.buckets[index].pending == 0) state.start(index);
  // Lets MPI move the buckets in flight along while the backward goes on.
  state.advance(false);
  int done = 0;
  MPI_Testall(static_cast<int>(state.next_gather), state.gathers.data(), &done,
              MPI_STATUSES_IGNORE);
  times_.gradient_start_seconds += since(start);
}

void MpiReplicas::finish_gradients() {
  Buckets& state = *buckets_;
  const Clock::time_point start = Clock::now();
  for (size_t i = 0; i < state.buckets.size(); ++i)
    if (!state.buckets[i].started) state.start(i);
  state.advance(true);
  check(MPI_Waitall(static_cast<int>(state.gathers.size()), state.gathers.data(),
                    MPI_STATUSES_IGNORE),
        "MPI_Waitall for the gradient buckets");
  state.next_gather = 0;
  for (Buckets::Bucket& b : state.buckets) {
    const float* in = b.buffer.data();
    for (nn::Parameter* p : b.params) {
      std::copy(in, in + p->grad.numel(), p->grad.data());
      in += p->grad.numel();
    }
  }
  times_.gradient_wait_seconds += since(start);
}

Launch::Launch(int& argc, char**& argv) {
  if (!launched_by_mpirun()) return;
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
  replicas_ = std::make_unique<MpiReplicas>();
  g_world = replicas_.get();
  if (replicas_->rank() != 0) {
    std::fflush(stdout);
    if (std::freopen("/dev/null", "w", stdout) == nullptr) std::fclose(stdout);
  }
  // Processes on one machine share its cores instead of each taking them all.
  // (The split is collective: every rank makes it, whatever its environment.)
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local = 1;
  MPI_Comm_size(node, &local);
  MPI_Comm_free(&node);
  if (std::getenv("OMP_NUM_THREADS") == nullptr) {
    const long cores = ::sysconf(_SC_NPROCESSORS_ONLN);
    set_num_threads(std::max(1, static_cast<int>(cores / std::max(1, local))));
  }
}

Launch::~Launch() {
  if (!replicas_) return;
  g_world = nullptr;
  replicas_.reset();
  MPI_Finalize();
}

void Launch::abort(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  // mpirun forwards a rank's stderr asynchronously; MPI_Abort right away can
  // end the job before the message above arrives.
  ::usleep(300 * 1000);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);  // MPI_Abort does not return; this keeps [[noreturn]] honest
}

MpiReplicas* world() { return g_world; }

}  // namespace bnlab::dist
