// The blocked16 walks (oneDNN's nChw16c): units of 16 channels of one sample,
// s rows of 16 columns, each column one channel (batch_norm_walks.hpp).
#include <algorithm>

#include "core/parallel.hpp"
#include "kernels/batch_norm_walks.hpp"

namespace bnlab::kernels {
namespace {

constexpr int64_t kBlockWidth = 16;

// Unit u is sample u / blocks's block of channels 16*(u % blocks) .. +15.
// Per-channel arrays serve a unit's columns as they are (channel 16b + w is
// column w of block b).
struct BlockedPlan {
  int64_t s, blocks, units;
  int64_t block_rows = kRowsBlock / kBlockWidth;  // rows summed in float before a merge

  explicit BlockedPlan(const BatchNormShape& sh)
      : s(sh.s), blocks(sh.c / kBlockWidth), units(sh.n * (sh.c / kBlockWidth)) {}
  int64_t offset(int64_t u) const { return u * s * kBlockWidth; }
  int64_t first_channel(int64_t u) const { return (u % blocks) * kBlockWidth; }
  // Where channel j's value of sample i's unit lies in per-unit arrays of 16.
  int64_t column(int64_t i, int64_t j) const {
    return (i * blocks + j / kBlockWidth) * kBlockWidth + j % kBlockWidth;
  }
};

// Block by block pays, as channel by channel does for spans, when x overflows
// the LLC, there are two blocks or more, and a block's two slices (x and dy,
// or x and y) fit half the LLC (cache_thresholds.hpp; docs/performance.md,
// 'Kernel choices').
bool by_block_pays(const BatchNormShape& sh) {
  const CacheThresholds t = cache_thresholds();
  return sh.layout == Layout::blocked16 && sh.c >= 2 * kBlockWidth &&
         2 * sh.per_channel() * kBlockWidth * static_cast<int64_t>(sizeof(float)) <=
             t.by_block_bytes &&
         sh.numel() * static_cast<int64_t>(sizeof(float)) > t.by_channel_bytes;
}

// Unit u's 16 column sums into part_s[u*16 ...] and part_sx[u*16 ...].
void unit_grad_sums(const GradInput& g, const BlockedPlan& plan, int64_t u, double* part_s,
                    double* part_sx) {
  const int64_t off = plan.offset(u);
  double* ps = part_s + u * kBlockWidth;
  double* psx = part_sx + u * kBlockWidth;
  std::fill(ps, ps + kBlockWidth, 0.0);
  std::fill(psx, psx + kBlockWidth, 0.0);
  for (int64_t r = 0; r < plan.s; r += plan.block_rows) {
    const int64_t rows_off = off + r * kBlockWidth;
    loops().rows_grad_sums(g.x + rows_off, g.dy + rows_off, offset_or_null(g.relu_y, rows_off),
                           std::min(plan.block_rows, plan.s - r), kBlockWidth, kBlockWidth,
                           g.mean + plan.first_channel(u), ps, psx);
  }
}

// Channels [j_begin, j_end)'s sums: their units' sums added in sample order.
void merge_unit_grad_sums(const BlockedPlan& plan, int64_t n, int64_t j_begin, int64_t j_end,
                          const double* part_s, const double* part_sx, double* sum_dy,
                          double* sum_dy_xmu) {
  merge_parts<GradSums>(
      j_begin, j_end, n,
      [&](int64_t j, int64_t i) {
        const int64_t col = plan.column(i, j);
        return GradSums{part_s[col], part_sx[col]};
      },
      sum_dy, sum_dy_xmu);
}

void unit_grad_input(const GradInput& g, const BlockedPlan& plan, int64_t u, bool stream) {
  const int64_t off = plan.offset(u), j = plan.first_channel(u);
  loops().rows_grad_input(g.x + off, g.dy + off, offset_or_null(g.relu_y, off), g.dx + off, plan.s,
                          kBlockWidth, kBlockWidth, g.mean + j, g.a + j, g.b + j, g.c + j, stream);
}

// Unit u's 16 columns' mean and m2 into part_mean[u*16 ...] and part_m2[u*16 ...].
void unit_moments(const float* x, const BlockedPlan& plan, int64_t u, double* part_mean,
                  double* part_m2) {
  rows_moments_merged(x + plan.offset(u), plan.s, kBlockWidth, kBlockWidth, plan.block_rows,
                      part_mean + u * kBlockWidth, part_m2 + u * kBlockWidth);
}

// Channels [j_begin, j_end)'s moments: their units' merged in sample order.
void merge_unit_moments(const BlockedPlan& plan, int64_t n, int64_t j_begin, int64_t j_end,
                        const double* part_mean, const double* part_m2, double* mean, double* m2) {
  merge_parts<Moments>(
      j_begin, j_end, n,
      [&](int64_t j, int64_t i) {
        const int64_t col = plan.column(i, j);
        return Moments{static_cast<double>(plan.s), part_mean[col], part_m2[col]};
      },
      mean, m2);
}

void unit_normalize(const float* x, float* y, const BlockedPlan& plan, int64_t u, const float* mean,
                    const float* scale, const float* shift, bool relu, bool stream) {
  const int64_t off = plan.offset(u), j = plan.first_channel(u);
  loops().rows_normalize(x + off, y + off, plan.s, kBlockWidth, kBlockWidth, mean + j, scale + j,
                         shift + j, relu, stream);
}

// One task per block of 16 channels: first(u) on its unit of every sample,
// then done(j_begin, j_end) for its channels, then, unless done says no,
// out(u, stream) on the same units, which the first pass left in the LLC.
template <class First, class Done, class Out>
void by_block(const BatchNormShape& sh, const BlockedPlan& plan, const First& first,
              const Done& done, const Out& out) {
  const bool stream = streams(sh);
  parallel_for(plan.blocks, 3 * sh.numel(), [&](int64_t b) {
    for (int64_t i = 0; i < sh.n; ++i) first(i * plan.blocks + b);
    if (!done(b * kBlockWidth, (b + 1) * kBlockWidth)) return;
    for (int64_t i = 0; i < sh.n; ++i) out(i * plan.blocks + b, stream);
    if (stream) loops().store_fence();
  });
}

}  // namespace

// Each unit's 16 columns, then the units of each channel merged in sample order.
void blocked16_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2) {
  const BlockedPlan plan(sh);
  double* part_mean = Workspace::grown(workspace().parts, 2 * plan.units * kBlockWidth);
  double* part_m2 = part_mean + plan.units * kBlockWidth;
  parallel_for(plan.units, sh.numel(),
               [&](int64_t u) { unit_moments(x, plan, u, part_mean, part_m2); });
  merge_unit_moments(plan, sh.n, 0, sh.c, part_mean, part_m2, mean, m2);
}

void blocked16_normalize(const float* x, float* y, const BatchNormShape& sh, const float* mean,
                         const float* scale, const float* shift, bool relu) {
  const bool stream = streams(sh);
  const BlockedPlan plan(sh);
  parallel_for(plan.units, sh.numel(), [&](int64_t u) {
    unit_normalize(x, y, plan, u, mean, scale, shift, relu, stream);
    if (stream) loops().store_fence();
  });
}

bool blocked16_forward_by_block(const float* x, float* y, const BatchNormShape& sh, double* mean,
                                double* m2, const ForwardFinish& finish, bool relu) {
  if (!by_block_pays(sh)) return false;
  const BlockedPlan plan(sh);
  double* part_mean = Workspace::grown(workspace().parts, 2 * plan.units * kBlockWidth);
  double* part_m2 = part_mean + plan.units * kBlockWidth;
  by_block(
      sh, plan, [&](int64_t u) { unit_moments(x, plan, u, part_mean, part_m2); },
      [&](int64_t j_begin, int64_t j_end) {
        merge_unit_moments(plan, sh.n, j_begin, j_end, part_mean, part_m2, mean, m2);
        for (int64_t j = j_begin; j < j_end; ++j) finish(j);
        return true;
      },
      [&](int64_t u, bool stream) {
        unit_normalize(x, y, plan, u, finish.mean_f, finish.scale, finish.shift, relu, stream);
      });
  return true;
}

void blocked16_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                         double* sum_dy_xmu) {
  const BlockedPlan plan(sh);
  double* part_s = Workspace::grown(workspace().parts, 2 * plan.units * kBlockWidth);
  double* part_sx = part_s + plan.units * kBlockWidth;
  parallel_for(plan.units, 2 * sh.numel(),
               [&](int64_t u) { unit_grad_sums(g, plan, u, part_s, part_sx); });
  merge_unit_grad_sums(plan, sh.n, 0, sh.c, part_s, part_sx, sum_dy, sum_dy_xmu);
}

void blocked16_grad_input(const GradInput& g, const BatchNormShape& sh) {
  const bool stream = streams(sh);
  const BlockedPlan plan(sh);
  parallel_for(plan.units, 3 * sh.numel(), [&](int64_t u) {
    unit_grad_input(g, plan, u, stream);
    if (stream) loops().store_fence();
  });
}

bool blocked16_backward_by_block(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                                 double* sum_dy_xmu, const BackwardFinish& finish) {
  if (!by_block_pays(sh)) return false;
  const BlockedPlan plan(sh);
  double* part_s = Workspace::grown(workspace().parts, 2 * plan.units * kBlockWidth);
  double* part_sx = part_s + plan.units * kBlockWidth;
  by_block(
      sh, plan, [&](int64_t u) { unit_grad_sums(g, plan, u, part_s, part_sx); },
      [&](int64_t j_begin, int64_t j_end) {
        merge_unit_grad_sums(plan, sh.n, j_begin, j_end, part_s, part_sx, sum_dy, sum_dy_xmu);
        for (int64_t j = j_begin; j < j_end; ++j) finish(j);
        return g.dx != nullptr;
      },
      [&](int64_t u, bool stream) { unit_grad_input(g, plan, u, stream); });
  return true;
}

}  // namespace bnlab::kernels
