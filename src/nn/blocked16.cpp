// Plain NCHW <-> nChw16c copies (nn/nchw16c.hpp).
#include "nn/blocked16.hpp"

#include "core/parallel.hpp"

namespace bnlab::nn {
namespace {

constexpr int64_t kBlock = 16;

// Calls body(plain block, blocked block) for each (sample, channel block).
template <class Body>
void for_blocks(int64_t n, int64_t c, int64_t s, Body&& body) {
  const int64_t units = n * (c / kBlock), unit = kBlock * s;
  parallel_for(units, units * unit, [&](int64_t u) { body(u * unit); });
}

template <class T>
void to_blocked16_of(const T* plain, T* blocked, int64_t n, int64_t c, int64_t s) {
  for_blocks(n, c, s, [&](int64_t offset) {
    const T* src = plain + offset;
    T* dst = blocked + offset;
    for (int64_t k = 0; k < s; ++k)
      for (int64_t l = 0; l < kBlock; ++l) dst[k * kBlock + l] = src[l * s + k];
  });
}

template <class T>
void from_blocked16_of(const T* blocked, T* plain, int64_t n, int64_t c, int64_t s) {
  for_blocks(n, c, s, [&](int64_t offset) {
    const T* src = blocked + offset;
    T* dst = plain + offset;
    for (int64_t l = 0; l < kBlock; ++l)
      for (int64_t k = 0; k < s; ++k) dst[l * s + k] = src[k * kBlock + l];
  });
}

}  // namespace

void to_blocked16(const float* plain, float* blocked, int64_t n, int64_t c, int64_t s) {
  to_blocked16_of(plain, blocked, n, c, s);
}
void to_blocked16(const uint16_t* plain, uint16_t* blocked, int64_t n, int64_t c, int64_t s) {
  to_blocked16_of(plain, blocked, n, c, s);
}
void from_blocked16(const float* blocked, float* plain, int64_t n, int64_t c, int64_t s) {
  from_blocked16_of(blocked, plain, n, c, s);
}
void from_blocked16(const uint16_t* blocked, uint16_t* plain, int64_t n, int64_t c, int64_t s) {
  from_blocked16_of(blocked, plain, n, c, s);
}

}  // namespace bnlab::nn
