#include <omp.h>

#include <atomic>

#include "bnlab/threading.hpp"

namespace bnlab {
namespace {
std::atomic<int> g_threads{0};  // 0: OpenMP's default (the cores it sees)
}

void set_num_threads(int threads) { g_threads.store(threads > 0 ? threads : 0); }

int num_threads() {
  const int threads = g_threads.load();
  return threads > 0 ? threads : omp_get_max_threads();
}

}  // namespace bnlab
