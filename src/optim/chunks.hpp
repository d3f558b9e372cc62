// The optimizers' elementwise loops, split in fixed chunks over the threads
// (each element's update is independent, so results do not depend on threads).
#pragma once

#include <cstdint>

#include "core/parallel.hpp"

namespace bnlab::optim {

constexpr int64_t kUpdateChunk = 1 << 14;

template <class Body>
void for_chunks(int64_t numel, Body&& body) {
  const int64_t chunks = (numel + kUpdateChunk - 1) / kUpdateChunk;
  parallel_for(chunks, numel, [&](int64_t chunk) {
    const int64_t begin = chunk * kUpdateChunk;
    body(begin, begin + kUpdateChunk < numel ? begin + kUpdateChunk : numel);
  });
}

}  // namespace bnlab::optim
