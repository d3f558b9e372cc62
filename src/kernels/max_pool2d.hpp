// The 2x2, stride-2 max pool without padding (the window every preset uses),
// one output row at a time, vectorized with Highway and chosen at run time.
// MaxPool2d (src/nn/max_pool2d.cpp) plans the planes and rows and keeps the
// general window in its own loop.
//
//   y[ow]      = max(row0[2ow], row0[2ow+1], row1[2ow], row1[2ow+1])
//   argmax[ow] = first_index + 2ow + {0, 1, w, w+1} for the winner
// The winner is the first maximum in that order, and the first NaN wins over
// any number (PyTorch's CPU rule); row1 = row0 + w in the input plane.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bnlab::kernels {

void max_pool_2x2_row(const float* row0, const float* row1, int64_t out_w, int32_t first_index,
                      int32_t w, float* y, int32_t* argmax);

// For tests: the variants this CPU runs, best first, then "plain" (the scalar
// loop); and the same row through one of them.
std::vector<std::string> max_pool_2x2_variants();
void max_pool_2x2_row_variant(int variant, const float* row0, const float* row1, int64_t out_w,
                              int32_t first_index, int32_t w, float* y, int32_t* argmax);

}  // namespace bnlab::kernels
