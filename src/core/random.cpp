#include "bnlab/random.hpp"

#include <cmath>

namespace bnlab {

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

namespace {
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

// splitmix64 spreads one seed over the four words of xoshiro's state.
Generator::Generator(uint64_t seed) {
  for (uint64_t& word : s_) word = splitmix64(seed);
}

// xoshiro256** (Blackman & Vigna).
uint64_t Generator::next_u64() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Generator::uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

float Generator::uniform(float low, float high) {
  return low + static_cast<float>(uniform()) * (high - low);
}

// Box-Muller, keeping the second value of each pair for the next call.
float Generator::normal(float mean, float stddev) {
  double z;
  if (has_spare_) {
    z = spare_;
    has_spare_ = false;
  } else {
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    z = r * std::cos(2.0 * M_PI * u2);
    spare_ = r * std::sin(2.0 * M_PI * u2);
    has_spare_ = true;
  }
  return mean + stddev * static_cast<float>(z);
}

// Lemire's rejection: the multiply-high of a 64-bit draw, redrawn in the biased zone.
uint64_t Generator::below(uint64_t bound) {
  if (bound == 0) return 0;
  const uint64_t threshold = (0 - bound) % bound;
  while (true) {
    const unsigned __int128 m = static_cast<unsigned __int128>(next_u64()) * bound;
    if (static_cast<uint64_t>(m) >= threshold) return static_cast<uint64_t>(m >> 64);
  }
}

GeneratorState Generator::state() const {
  GeneratorState state;
  for (int i = 0; i < 4; ++i) state.words[i] = s_[i];
  state.has_spare = has_spare_;
  state.spare = spare_;
  return state;
}

void Generator::set_state(const GeneratorState& state) {
  for (int i = 0; i < 4; ++i) s_[i] = state.words[i];
  has_spare_ = state.has_spare;
  spare_ = state.spare;
}

}  // namespace bnlab
