// Plain NCHW <-> oneDNN's nChw16c (see MemoryFormat in bnlab/nn/module.hpp),
// C a multiple of 16, S = H*W:
//   blocked[((i*(C/16) + j/16)*S + k)*16 + j%16] = plain[(i*C + j)*S + k]
// One task per (sample, channel block): a 16 x S transpose.
#pragma once

#include <cstdint>

namespace bnlab::nn {

void to_blocked16(const float* plain, float* blocked, int64_t n, int64_t c, int64_t s);
void from_blocked16(const float* blocked, float* plain, int64_t n, int64_t c, int64_t s);
// The same on bf16 values (bit patterns).
void to_blocked16(const uint16_t* plain, uint16_t* blocked, int64_t n, int64_t c, int64_t s);
void from_blocked16(const uint16_t* blocked, uint16_t* plain, int64_t n, int64_t c, int64_t s);

}  // namespace bnlab::nn
