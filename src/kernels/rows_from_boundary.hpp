// Streaming stores need vector-aligned addresses, and a rows block streams row
// by row only when every row starts on a vector boundary. A caller's buffer that
// is only 16-byte aligned (numpy's) would then never stream: an output larger
// than the LLC would cost a read of every line first (issue 16: speed must not
// depend on alignment). A contiguous block (stride == width) can still stream
// from its first vector boundary, `head` floats in, seen as rows of width that
// start `head` columns in: the per-column values rotated by head.
#pragma once

#include <array>
#include <cstdint>

namespace bnlab::kernels {

// kArrays per-column arrays of width <= kMaxWidth columns and their copies
// rotated by head (copy[w] = in[(w + head) % width]); at(k, col, rotated) is
// what a part of rows_from_boundary reads.
template <int kArrays, int64_t kMaxWidth>
struct RotatedColumns {
  std::array<const float*, kArrays> in;
  alignas(64) float copy[kArrays][kMaxWidth];

  RotatedColumns(std::array<const float*, kArrays> arrays, int64_t width, int64_t head)
      : in(arrays) {
    for (int k = 0; k < kArrays; ++k)
      for (int64_t w = 0; w < width; ++w) copy[k][w] = in[k][(w + head) % width];
  }
  const float* at(int k, int64_t col, bool rotated) const {
    return rotated ? copy[k] : in[k] + col;
  }
};

// A contiguous block of rows > 1 rows of width columns, its output `head`
// floats (0 < head < width) before a vector boundary, as three calls of
// part(offset, rows, width, first_column, rotated, stream): row 0's first head
// columns; rows - 1 rows from offset head with columns rotated by head,
// streamed; the last row's columns from head on.
template <class Part>
void rows_from_boundary(int64_t rows, int64_t width, int64_t head, const Part& part) {
  part(int64_t{0}, int64_t{1}, head, int64_t{0}, false, false);
  part(head, rows - 1, width, int64_t{0}, true, true);
  part((rows - 1) * width + head, int64_t{1}, width - head, head, false, false);
}

}  // namespace bnlab::kernels
