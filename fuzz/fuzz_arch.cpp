// libFuzzer target: the architecture parser through its public API,
// bnlab::nn::parse_arch (without and with an input shape), on any text.
// Anything it refuses must be a bnlab::Error (an uncaught exception or a
// crash is a finding).
//
// parse_arch builds the network, refusing only what exceeds the machine's
// memory; inputs whose numbers could ask for more than kMaxValues floats are
// skipped here so that the fuzzer explores the grammar instead of filling
// gigabytes (and stopping at libFuzzer's out-of-memory limit).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "bnlab/error.hpp"
#include "bnlab/nn/arch.hpp"
#include "bnlab/random.hpp"

namespace {

constexpr double kMaxValues = double(1 << 24);  // 64 MB of floats

// An upper bound on the floats a layer call could allocate: per parenthesised
// call, the product of its numbers (each at least 1) times its largest (a
// kernel is k * k), summed over the calls.
bool could_allocate_too_much(const std::string& text) {
  double total = 0, product = 1, largest = 1;
  for (size_t i = 0; i < text.size();) {
    const char ch = text[i];
    if (std::isdigit(static_cast<unsigned char>(ch)) || ch == '.') {
      char* end = nullptr;
      const double value = std::strtod(text.c_str() + i, &end);
      const size_t used = static_cast<size_t>(end - (text.c_str() + i));
      const double magnitude = std::isfinite(value) ? std::max(1.0, std::fabs(value)) : 1e300;
      product *= magnitude;
      largest = std::max(largest, magnitude);
      i += used > 0 ? used : 1;
      continue;
    }
    if (ch == ')') {
      total += product * largest;
      product = largest = 1;
    }
    ++i;
  }
  total += product * largest;
  return !(total <= kMaxValues);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (could_allocate_too_much(text)) return 0;
  bnlab::Generator gen(1);
  try {
    if (!bnlab::nn::parse_arch(text, gen)) std::abort();
  } catch (const bnlab::Error&) {
  }
  // With an input shape the shapes are checked through the network too.
  for (const bnlab::Shape& input : {bnlab::Shape{2, 1, 28, 28}, bnlab::Shape{2, 784}}) {
    try {
      if (!bnlab::nn::parse_arch(text, gen, input)) std::abort();
    } catch (const bnlab::Error&) {
    }
  }
  return 0;
}
