// Splitting work over the threads. Kernels cut their work into tasks by shape
// alone, never by thread count, and merge task results in task order, so the
// numbers they produce do not depend on how many threads ran.
#pragma once

#include <cstdint>

#include "bnlab/threading.hpp"

namespace bnlab {

// Below this many floats touched, a kernel runs on the calling thread: waking
// the pool would cost more than the work.
constexpr int64_t kParallelMinWork = 1 << 15;

// Calls body(i) for i in [0, count), over the threads when work is large enough.
template <class Body>
void parallel_for(int64_t count, int64_t work, Body&& body) {
  const int threads = num_threads();
  if (threads <= 1 || count <= 1 || work < kParallelMinWork) {
    for (int64_t i = 0; i < count; ++i) body(i);
    return;
  }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t i = 0; i < count; ++i) body(i);
}

}  // namespace bnlab
