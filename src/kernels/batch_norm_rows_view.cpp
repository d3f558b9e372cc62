// The rows view: channels-last, or channels-first with s < kSpanMin, as rows
// of `width` columns (c columns of channels-last rows, or the c*s positions of
// a channels-first sample), columns across the vector lanes (batch_norm_walks.hpp).
#include <algorithm>

#include "core/parallel.hpp"
#include "kernels/batch_norm_walks.hpp"

namespace bnlab::kernels {
namespace {

constexpr int64_t kTileWidth = kRowsMaxWidth;  // columns a task takes at once
// Rows a rows block takes at least: each block ends in a merge per column
// (Chan's update, divisions), which 32 rows of 256 columns left as a large
// cost; 128 rows (128 KiB of 256 columns, the second pass from L2) took 3-10%
// off channels-last training (docs/performance.md). Fixed, not from the
// cache sizes, so that the sums' blocks and the results' bits are the same on
// every machine.
constexpr int64_t kMinBlockRows = 128;

struct RowsPlan {
  int64_t rows;              // n*s (channels-last) or n (channels-first)
  int64_t width;             // c or c*s
  int64_t per_column_group;  // columns that belong to one channel: 1 or s (grouped by channel)
  int64_t tile;              // columns a task takes
  int64_t tiles;
  int64_t block_rows;  // rows summed in float before a merge in double
  int64_t parts;       // row ranges

  explicit RowsPlan(const BatchNormShape& sh) {
    const bool last = sh.layout == Layout::channels_last;
    rows = last ? sh.n * sh.s : sh.n;
    width = last ? sh.c : sh.c * sh.s;
    per_column_group = last ? 1 : sh.s;
    tile = std::min<int64_t>(width, kTileWidth);
    tiles = (width + tile - 1) / tile;
    block_rows = std::max<int64_t>(kMinBlockRows, kRowsBlock / std::max<int64_t>(tile, 1));
    const int64_t want = std::max<int64_t>(1, kTargetTasks / tiles);
    parts = std::clamp<int64_t>(rows / (4 * block_rows), 1, want);
  }
  int64_t row_begin(int64_t part) const { return rows * part / parts; }
  int64_t part_rows(int64_t part) const { return row_begin(part + 1) - row_begin(part); }
  // Floats between per-column arrays laid one after another: a whole number of
  // cache lines, so each array starts on one.
  int64_t column_pitch() const { return (width + 15) / 16 * 16; }
  // Part k < parts * per_column_group of channel j: column w's part p.
  int64_t column_of(int64_t j, int64_t k) const { return j * per_column_group + k / parts; }
  int64_t part_of(int64_t k) const { return k % parts; }
};

// Broadcasts per-channel values over the columns into out (which starts on a
// cache line). Copied for channels-last too: the copy is small, and the
// caller's array may straddle lines on every vector load.
float* per_column(const float* per_channel, const RowsPlan& plan, float* out) {
  const int64_t group = plan.per_column_group;
  if (group == 1) {
    std::copy(per_channel, per_channel + plan.width, out);
    return out;
  }
  for (int64_t j = 0; j < plan.width / group; ++j)
    std::fill(out + j * group, out + (j + 1) * group, per_channel[j]);
  return out;
}

}  // namespace

// Per-column mean and m2 of `rows` rows (width <= kTileWidth columns, rows
// `stride` floats apart): blocks of block_rows rows summed by rows_moments,
// merged in double by Moments::merge's update with the count factors shared by
// every column of a block (no division in the loop over columns).
void rows_moments_merged(const float* x, int64_t rows, int64_t stride, int64_t width,
                         int64_t block_rows, double* mean, double* m2) {
  double block_mean[kTileWidth], block_m2[kTileWidth];
  double count = 0.0;
  for (int64_t r = 0; r < rows; r += block_rows) {
    const int64_t br = std::min(block_rows, rows - r);
    double* bm = count == 0.0 ? mean : block_mean;  // the first block lands in place
    double* bq = count == 0.0 ? m2 : block_m2;
    loops().rows_moments(x + r * stride, br, stride, width, bm, bq);
    if (count > 0.0) {
      const double total = count + static_cast<double>(br);
      const double weight_new = static_cast<double>(br) / total;
      const double weight_cross = count * static_cast<double>(br) / total;
      for (int64_t k = 0; k < width; ++k) {
        const double delta = block_mean[k] - mean[k];
        mean[k] += delta * weight_new;
        m2[k] += block_m2[k] + delta * delta * weight_cross;
      }
    }
    count += static_cast<double>(br);
  }
}

void rows_view_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2) {
  const RowsPlan plan(sh);
  const int64_t cols = plan.width;
  double* part_mean = Workspace::grown(workspace().parts, 2 * plan.parts * cols);
  double* part_m2 = part_mean + plan.parts * cols;
  parallel_for(plan.parts * plan.tiles, sh.numel(), [&](int64_t task) {
    const int64_t p = task / plan.tiles, t = task % plan.tiles;
    const int64_t w0 = t * plan.tile, tw = std::min(plan.tile, cols - w0);
    const int64_t r0 = plan.row_begin(p);
    rows_moments_merged(x + r0 * cols + w0, plan.part_rows(p), cols, tw, plan.block_rows,
                        part_mean + p * cols + w0, part_m2 + p * cols + w0);
  });
  // The parts of each column, then the columns of each channel, in order.
  merge_parts<Moments>(
      0, sh.c, plan.per_column_group * plan.parts,
      [&](int64_t j, int64_t k) {
        const int64_t at = plan.part_of(k) * cols + plan.column_of(j, k);
        return Moments{static_cast<double>(plan.part_rows(plan.part_of(k))), part_mean[at],
                       part_m2[at]};
      },
      mean, m2);
}

void rows_view_normalize(const float* x, float* y, const BatchNormShape& sh, const float* mean,
                         const float* scale, const float* shift, bool relu) {
  const bool stream = streams(sh);
  const RowsPlan plan(sh);
  const int64_t pitch = plan.column_pitch();
  float* cols = Workspace::grown(workspace().columns, 3 * pitch);
  const float* m = per_column(mean, plan, cols);
  const float* sc = per_column(scale, plan, cols + pitch);
  const float* sf = per_column(shift, plan, cols + 2 * pitch);
  const int64_t chunks = std::min<int64_t>(plan.rows, kTargetTasks);
  parallel_for(chunks, sh.numel(), [&](int64_t k) {
    const int64_t r0 = plan.rows * k / chunks, r1 = plan.rows * (k + 1) / chunks;
    loops().rows_normalize(x + r0 * plan.width, y + r0 * plan.width, r1 - r0, plan.width,
                           plan.width, m, sc, sf, relu, stream);
    if (stream) loops().store_fence();
  });
}

void rows_view_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                         double* sum_dy_xmu) {
  const RowsPlan plan(sh);
  const int64_t cols = plan.width;
  double* part_s = Workspace::grown(workspace().parts, 2 * plan.parts * cols);
  double* part_sx = part_s + plan.parts * cols;
  const float* mean_cols =
      per_column(g.mean, plan, Workspace::grown(workspace().columns, plan.column_pitch()));
  parallel_for(plan.parts * plan.tiles, 2 * sh.numel(), [&](int64_t task) {
    const int64_t p = task / plan.tiles, t = task % plan.tiles;
    const int64_t w0 = t * plan.tile, tw = std::min(plan.tile, cols - w0);
    const int64_t r0 = plan.row_begin(p), r1 = plan.row_begin(p + 1);
    double* ps = part_s + p * cols + w0;
    double* psx = part_sx + p * cols + w0;
    std::fill(ps, ps + tw, 0.0);
    std::fill(psx, psx + tw, 0.0);
    for (int64_t r = r0; r < r1; r += plan.block_rows) {
      const int64_t off = r * cols + w0;
      loops().rows_grad_sums(g.x + off, g.dy + off, offset_or_null(g.relu_y, off),
                             std::min(plan.block_rows, r1 - r), cols, tw, mean_cols + w0, ps, psx);
    }
  });
  merge_parts<GradSums>(
      0, sh.c, plan.per_column_group * plan.parts,
      [&](int64_t j, int64_t k) {
        const int64_t at = plan.part_of(k) * cols + plan.column_of(j, k);
        return GradSums{part_s[at], part_sx[at]};
      },
      sum_dy, sum_dy_xmu);
}

void rows_view_grad_input(const GradInput& g, const BatchNormShape& sh) {
  const bool stream = streams(sh);
  const RowsPlan plan(sh);
  const int64_t cols = plan.width;
  const int64_t pitch = plan.column_pitch();
  float* col = Workspace::grown(workspace().columns, 4 * pitch);
  const float* mean = per_column(g.mean, plan, col);
  const float* a = per_column(g.a, plan, col + pitch);
  const float* b = per_column(g.b, plan, col + 2 * pitch);
  const float* c = per_column(g.c, plan, col + 3 * pitch);
  const int64_t chunks = std::min<int64_t>(plan.rows, kTargetTasks);
  parallel_for(chunks, 3 * sh.numel(), [&](int64_t k) {
    const int64_t r0 = plan.rows * k / chunks, r1 = plan.rows * (k + 1) / chunks;
    const int64_t off = r0 * cols;
    loops().rows_grad_input(g.x + off, g.dy + off, offset_or_null(g.relu_y, off), g.dx + off,
                            r1 - r0, cols, cols, mean, a, b, c, stream);
    if (stream) loops().store_fence();
  });
}

}  // namespace bnlab::kernels
