// The thread count every bnlab kernel uses (OpenMP underneath).
#pragma once

namespace bnlab {

// The most threads bnlab runs: above every CPU a single machine offers today
// (768 hardware threads on the largest two-socket servers), far below what
// makes libgomp fail (32768 threads abort in it, 100000 crash it).
constexpr int kMaxThreads = 1024;

// threads <= 0 restores the default: the number of cores OpenMP sees (at most
// kMaxThreads). Throws Error naming the value when threads > kMaxThreads.
void set_num_threads(int threads);
// The count in use: the one set, else OpenMP's (OMP_NUM_THREADS or the
// cores), never above kMaxThreads.
int num_threads();

}  // namespace bnlab
