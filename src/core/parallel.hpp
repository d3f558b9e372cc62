// Splitting work over the threads. Kernels cut their work into tasks by shape
// alone, never by thread count, and merge task results in task order, so the
// numbers they produce do not depend on how many threads ran.
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>

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

// Calls body(team, member, team_size, teams) once on each thread, the threads
// grouped in teams of team_size that work on the same data and meet at a
// TeamRendezvous. OpenMP may give fewer threads than asked (a nested region):
// the teams shrink with them, and threads left over from the last team idle.
template <class Body>
void parallel_teams(int team_size, Body&& body) {
#pragma omp parallel num_threads(std::max(num_threads(), 1))
  {
    const int got = omp_get_num_threads(), id = omp_get_thread_num();
    const int size = std::clamp(team_size, 1, got), teams = got / size;
    if (id < teams * size) body(id / size, id % size, size, teams);
  }
}

// Where a team's members wait for each other: each arrives once a round, and
// wait_round(r) returns once every member has arrived r + 1 times. It spins a
// little, then yields the core, so that a member which lost its core to another
// process gets it back instead of the wait burning the time slice.
class TeamRendezvous {
 public:
  void arrive() { arrivals_.fetch_add(1, std::memory_order_acq_rel); }
  void wait_round(int64_t round, int team_size) const {
    const int64_t target = (round + 1) * team_size;
    for (int spins = 0; arrivals_.load(std::memory_order_acquire) < target; ++spins) {
      if (spins >= kSpins) {
        std::this_thread::yield();
      } else {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
      }
    }
  }

 private:
  static constexpr int kSpins = 1 << 12;
  alignas(64) std::atomic<int64_t> arrivals_{0};  // one rendezvous per cache line
};

}  // namespace bnlab
