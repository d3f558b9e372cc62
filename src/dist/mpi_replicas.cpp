// MpiReplicas and Launch (bnlab/dist/mpi_replicas.hpp): the data-parallel
// gradient sum over MPI_COMM_WORLD.
//
// The gradients are summed in buckets, as PyTorch's DDP does: attach() walks
// the network's children from the last to the first (the order the backward
// finishes them) and closes a bucket once it holds bucket_bytes; a bucket is
// packed into one float buffer and its MPI_Iallreduce starts as soon as the
// last child holding it is done, while the backward goes on with the children
// before it. MPI progresses a nonblocking collective only inside MPI calls, so
// each finished child also tests the buckets in flight. finish_gradients waits
// for them all and unpacks the sums into the gradients. Every rank starts the
// buckets in the same order (the backward's), as MPI requires of collectives.
#include "bnlab/dist/mpi_replicas.hpp"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
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
    std::vector<float> buffer;
    int children = 0, pending = 0;
    bool started = false;
  };
  std::vector<Bucket> buckets;  // in the order the backward completes them
  std::unordered_map<const void*, int> bucket_of_child;
  std::vector<MPI_Request> requests;  // bucket i's; MPI_REQUEST_NULL once complete

  void start(size_t i, MPI_Comm comm) {
    Bucket& b = buckets[i];
    float* out = b.buffer.data();
    for (nn::Parameter* p : b.params) {
      std::copy(p->grad.data(), p->grad.data() + p->grad.numel(), out);
      out += p->grad.numel();
    }
    check(MPI_Iallreduce(MPI_IN_PLACE, b.buffer.data(), static_cast<int>(b.buffer.size()),
                         MPI_FLOAT, MPI_SUM, comm, &requests[i]),
          "MPI_Iallreduce of a gradient bucket");
    b.started = true;
  }
};

MpiReplicas::MpiReplicas() : buckets_(std::make_unique<Buckets>()) {
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiReplicas::~MpiReplicas() = default;

void MpiReplicas::keep(std::unique_ptr<nn::BatchNormSync> sync) { syncs_.push_back(std::move(sync)); }

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
    if (floats * int64_t(sizeof(float)) >= bucket_bytes_) {
      current.buffer.resize(size_t(floats));
      times_.gradient_floats += floats;
      state.buckets.push_back(std::move(current));
      current = {};
      floats = 0;
    }
  }
  if (current.children > 0) {
    current.buffer.resize(size_t(floats));
    times_.gradient_floats += floats;
    state.buckets.push_back(std::move(current));
  }
  times_.buckets = static_cast<int64_t>(state.buckets.size());
  state.requests.assign(state.buckets.size(), MPI_REQUEST_NULL);
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
  if (--state.buckets[index].pending == 0) state.start(index, MPI_COMM_WORLD);
  // Lets MPI move the buckets in flight along while the backward goes on.
  int done = 0;
  MPI_Testall(static_cast<int>(state.requests.size()), state.requests.data(), &done,
              MPI_STATUSES_IGNORE);
  times_.gradient_start_seconds += since(start);
}

void MpiReplicas::finish_gradients() {
  Buckets& state = *buckets_;
  const Clock::time_point start = Clock::now();
  for (size_t i = 0; i < state.buckets.size(); ++i)
    if (!state.buckets[i].started) state.start(i, MPI_COMM_WORLD);
  check(MPI_Waitall(static_cast<int>(state.requests.size()), state.requests.data(),
                    MPI_STATUSES_IGNORE),
        "MPI_Waitall for the gradient buckets");
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
