// Reads the PyTorch golden files of tests/golden/batch_norm/ (the format is
// described in tests/golden/make_batch_norm_goldens.py).
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "bn_reference.hpp"
#include "golden_lines.hpp"
#include "bnlab/batch_norm.hpp"

#ifndef BNLAB_GOLDEN_DIR
#error "BNLAB_GOLDEN_DIR must name tests/golden (set by tests/kernels/CMakeLists.txt)"
#endif

namespace bnlab::test {

// One golden file: every "key count v0 v1 ..." line as a key and its numbers.
using Golden = std::map<std::string, std::vector<double>>;

inline Golden read_golden(const std::string& name) {
  return read_golden_lines(std::string(BNLAB_GOLDEN_DIR) + "/batch_norm/" + name + ".txt");
}

inline const std::vector<double>& entry(const Golden& g, const std::string& key) {
  const auto it = g.find(key);
  if (it == g.end()) throw std::runtime_error("golden file lacks '" + key + "'");
  return it->second;
}

inline bool flag(const Golden& g, const std::string& key) { return entry(g, key).at(0) != 0.0; }

// A channels-first array in the layout of sh (a permutation for the others).
inline std::vector<double> in_layout(const std::vector<double>& channels_first,
                                     const BatchNormShape& sh) {
  std::vector<double> out(channels_first.size());
  for (int64_t i = 0; i < sh.n; ++i)
    for (int64_t j = 0; j < sh.c; ++j)
      for (int64_t k = 0; k < sh.s; ++k)
        out[index_of(i, j, k, sh)] = channels_first[(i * sh.c + j) * sh.s + k];
  return out;
}

}  // namespace bnlab::test
