// The 2x2, stride-2 max pool without padding (the window every preset uses),
// one output row at a time, NCHW and nChw16c, vectorized with Highway and
// chosen at run time. MaxPool2d (src/nn/max_pool2d.cpp) plans the planes and
// rows and keeps the general window in its own loop.
//
//   y[ow]      = max(row0[2ow], row0[2ow+1], row1[2ow], row1[2ow+1])
//   argmax[ow] = first_index + 2ow + {0, 1, w, w+1} for the winner
// The winner is the first maximum in that order, and the first NaN wins over
// any number (PyTorch's CPU rule); row1 = row0 + w in the input plane.
//
// The same window on oneDNN's nChw16c layout (MemoryFormat in
// bnlab/nn/module.hpp: each position holds 16 channels, one per lane), one
// output row of one (sample, channel block):
//   y[16ow + l]      = max(row0[16(2ow) + l], row0[16(2ow+1) + l],
//                          row1[16(2ow) + l], row1[16(2ow+1) + l])
//   argmax[16ow + l] = first_index + 2ow + {0, 1, w, w+1} for lane l's winner
// with the same rule per lane; row1 = row0 + 16w, and argmax is the winner's
// position in the plane (ih*w + iw), its lane implied. Its backward writes
// every input position of the row's windows (they do not overlap):
//   dx_row0[16(2ow) + l]   = (argmax[16ow + l] == first_index + 2ow)       ? 0 + dy[16ow + l] : 0
//   dx_row0[16(2ow+1) + l] = (argmax[16ow + l] == first_index + 2ow + 1)   ? 0 + dy[16ow + l] : 0
//   dx_row1[16(2ow) + l]   = (argmax[16ow + l] == first_index + 2ow + w)   ? 0 + dy[16ow + l] : 0
//   dx_row1[16(2ow+1) + l] = (argmax[16ow + l] == first_index + 2ow + w+1) ? 0 + dy[16ow + l] : 0
// the scatter dx = 0, dx[argmax] += dy without its read-modify-write (0 + dy
// as the scatter's add: -0 becomes +0 there too); a last odd column is not
// written.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bnlab::kernels {

void max_pool_2x2_row(const float* row0, const float* row1, int64_t out_w, int32_t first_index,
                      int32_t w, float* y, int32_t* argmax);

void max_pool_2x2_blocked16_row(const float* row0, const float* row1, int64_t out_w,
                              int32_t first_index, int32_t w, float* y, int32_t* argmax);
void max_pool_2x2_blocked16_row_backward(const float* dy, const int32_t* argmax, int64_t out_w,
                                       int32_t first_index, int32_t w, float* dx_row0,
                                       float* dx_row1);

// For tests: the variants this CPU runs, best first, then "plain" (the scalar
// loop); and the same row through one of them.
std::vector<std::string> max_pool_2x2_variants();
void max_pool_2x2_row_variant(int variant, const float* row0, const float* row1, int64_t out_w,
                              int32_t first_index, int32_t w, float* y, int32_t* argmax);
void max_pool_2x2_blocked16_row_variant(int variant, const float* row0, const float* row1,
                                      int64_t out_w, int32_t first_index, int32_t w, float* y,
                                      int32_t* argmax);
void max_pool_2x2_blocked16_row_backward_variant(int variant, const float* dy, const int32_t* argmax,
                                               int64_t out_w, int32_t first_index, int32_t w,
                                               float* dx_row0, float* dx_row1);

}  // namespace bnlab::kernels
