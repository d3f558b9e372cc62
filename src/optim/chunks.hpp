// Shared by the optimizers: a size check, and the elementwise loops split in
// fixed chunks over the threads (each element's update is independent, so the
// results do not depend on the thread count).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
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

// "0.9", "1e-08", "inf", "nan": a hyperparameter as a message shows it.
inline std::string hyperparameter_text(double value) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", value);
  return text;
}

// Throws Error "<optimizer>: <name> must be ..., got <value>" unless value is
// finite and >= low (> low when !inclusive).
inline void check_at_least(const char* optimizer, const char* name, double value, double low,
                           bool inclusive = true) {
  if (std::isfinite(value) && (inclusive ? value >= low : value > low)) return;
  throw Error(std::string(optimizer) + ": " + name + " must be a finite number " +
              (inclusive ? ">= " : "> ") + hyperparameter_text(low) + ", got " +
              hyperparameter_text(value));
}

// Throws Error unless value is in [low, high) (or [low, high] when high_inclusive).
inline void check_in_range(const char* optimizer, const char* name, double value, double low,
                           double high, bool high_inclusive) {
  if (value >= low && (high_inclusive ? value <= high : value < high)) return;
  throw Error(std::string(optimizer) + ": " + name + " must be in [" + hyperparameter_text(low) +
              ", " + hyperparameter_text(high) + (high_inclusive ? "]" : ")") + ", got " +
              hyperparameter_text(value));
}

}  // namespace bnlab::optim
