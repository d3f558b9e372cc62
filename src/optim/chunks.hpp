// Shared by the optimizers: a size check, and the elementwise loops split in
// fixed chunks over the threads (each element's update is independent, so the
// results do not depend on the thread count).
#pragma once

#include <cstdint>
#include <string>

#include "bnlab/error.hpp"
#include "bnlab/nn/module.hpp"
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

// Throws Error naming the optimizer and the parameter when grad and value differ in size.
inline void check_grad_size(const char* optimizer, const std::string& name, const nn::Parameter& param) {
  if (param.grad.numel() != param.value.numel())
    throw Error(std::string(optimizer) + ": parameter " + name + " has grad " +
                shape_string(param.grad.shape()) + " for value " + shape_string(param.value.shape()));
}

}  // namespace bnlab::optim
