// A seeded random generator whose streams are the same on every machine and
// compiler (no std:: distributions, whose results differ across libraries):
// xoshiro256** seeded through splitmix64, uniform floats from the top 24 bits,
// normals by Box-Muller.
#pragma once

#include <cstdint>

namespace bnlab {

// One step of splitmix64 (Steele, Lea and Flood 2014): advances state by a
// fixed odd constant and returns a bijective mix of it.
uint64_t splitmix64(uint64_t& state);

// Everything a Generator's future draws depend on, to save with a checkpoint
// and restore exactly (bnlab train --resume).
struct GeneratorState {
  uint64_t words[4] = {0, 0, 0, 0};
  bool has_spare = false;
  double spare = 0.0;
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0);
  uint64_t next_u64();
  double uniform();                          // [0, 1)
  float uniform(float low, float high);      // [low, high)
  float normal(float mean = 0.0f, float stddev = 1.0f);
  uint64_t below(uint64_t bound);            // [0, bound), unbiased
  GeneratorState state() const;
  void set_state(const GeneratorState& state);

 private:
  uint64_t s_[4];
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace bnlab
