#include "bnlab/threading.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <string>

#include "bnlab/error.hpp"

namespace bnlab {
namespace {
std::atomic<int> g_threads{0};  // 0: OpenMP's default (the cores it sees)
}

void set_num_threads(int threads) {
  if (threads > kMaxThreads)
    throw Error("set_num_threads: threads = " + std::to_string(threads) +
                " is more than the maximum of " + std::to_string(kMaxThreads));
  g_threads.store(threads > 0 ? threads : 0);
}

int num_threads() {
  const int threads = g_threads.load();
  // OMP_NUM_THREADS=100000 would otherwise reach libgomp as it is.
  return threads > 0 ? threads : std::min(omp_get_max_threads(), kMaxThreads);
}

}  // namespace bnlab
