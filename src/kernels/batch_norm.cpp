// Batch normalization kernels: planning, threading and the per-channel math.
// The per-element work is in the loops of batch_norm_loops.hpp (plain and
// vector variants); this file decides how a tensor is cut into blocks, which
// thread takes which, and how block results merge into channel statistics.
//
// Passes over memory (M = n*s values per channel, every pass in memory order):
//   forward training   3: read x (statistics), read x + write y
//   forward inference  2: read x + write y
//   backward           5: read x, dy (sums), read x, dy + write dx; 3 over
//                         DRAM when walked channel by channel (see
//                         backward_by_channel), the second read from cache
// Outputs larger than 16 MiB (x and y together overflow the 32 MiB LLC) are
// written with streaming stores, which skip reading the output's lines first.
//
// How a tensor is walked, by layout and spatial size s:
//  - channels-first, s >= kSpanMin: each (sample, channel) row of s floats is
//    a span; tasks take contiguous ranges of spans in memory order and keep
//    per-channel partial results. (Walking channel by channel instead, to
//    normalize a channel while its slice is still in L2, was measured: on the
//    2-core Zen 5 machine it was ~15% slower than three passes in memory
//    order, because it hops between samples c*s*4 bytes apart.)
//  - channels-last, or channels-first with s < kSpanMin: a rows view, rows of
//    `width` columns (c columns of channels-last rows, or c*s positions of a
//    channels-first sample), columns across the vector lanes.
// Statistics: blocks of at most kSpanBlock/kRowsBlock floats are summed in
// float (two passes over the block, the second from L1), then merged in double
// with Chan et al.'s update
//   n = na + nb, delta = mean_b - mean_a,
//   mean = mean_a + delta * nb / n,  m2 = m2_a + m2_b + delta^2 * na * nb / n,
// so a channel with mean 1e4 and std 1 keeps its variance (no E[x^2] - E[x]^2).
// Tasks are cut by shape alone and merged in task order: the results do not
// depend on the thread count.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "bnlab/aligned.hpp"
#include "bnlab/batch_norm.hpp"
#include "bnlab/error.hpp"
#include "core/parallel.hpp"
#include "kernels/batch_norm_loops.hpp"

namespace bnlab {
namespace kernels {
namespace {

constexpr int64_t kSpanMin = 64;         // channels-first rows shorter than this use the rows view
constexpr int64_t kTargetTasks = 32;      // tasks to cut a channel-poor tensor into
constexpr int64_t kTileWidth = kRowsMaxWidth;  // columns a rows task takes at once
// Outputs are written with streaming stores when the input and the output
// together overflow the last-level cache (32 MiB on the machines we measure):
// then the output will not be read back from cache, and streaming saves reading
// its lines first. Below that, plain stores leave y in cache for the next layer
// (a 16 MiB tensor streamed ran at 0.58x PyTorch's cached inference).
constexpr int64_t kLastLevelCacheBytes = int64_t{32} << 20;

bool streams(const BatchNormShape& sh) {
  return 2 * sh.numel() * static_cast<int64_t>(sizeof(float)) > kLastLevelCacheBytes;
}

// Channels-first backward walks channel by channel, so that the dx pass
// finds the channel's x and dy in cache where the sums pass left them (3
// passes over DRAM instead of 5), when: x alone overflows the LLC (else
// memory order finds much of x and dy in the LLC anyway: at 32x64x56x56,
// 24.5 MiB, channel by channel measured 2.45 ms against 2.03 in memory
// order, medians of 5 runs), there are channels enough to
// share between the threads, and a channel's x and dy slices (n*s floats
// each) fit the share of cache a thread can count on. Measured on the 2-core
// Zen 5 machine on the 98 MiB shapes: 8.2 to 9.2 ms against 9.6 to 15.3 ms in
// memory order (the same forward walk gained nothing clear: its
// normalize pass is bound by the writes either way).
constexpr int64_t kByChannelMinChannels = 16;
constexpr int64_t kByChannelMaxSliceBytes = int64_t{4} << 20;

bool backward_by_channel(const BatchNormShape& sh) {
  return sh.layout == Layout::channels_first && sh.s >= kSpanMin &&
         sh.c >= kByChannelMinChannels &&
         2 * sh.per_channel() * static_cast<int64_t>(sizeof(float)) <= kByChannelMaxSliceBytes &&
         sh.numel() * static_cast<int64_t>(sizeof(float)) > kLastLevelCacheBytes;
}

// blocked16's backward walks block by block (16 channels: every sample's unit
// of them) under the same reasoning, when x overflows the LLC, there are two
// blocks or more, and a block's x and dy fit the share of the LLC a thread can
// count on (half of it).
constexpr int64_t kByBlockMaxBytes = kLastLevelCacheBytes / 2;

bool backward_by_block(const BatchNormShape& sh) {
  return sh.layout == Layout::blocked16 && sh.c >= 2 * 16 &&
         2 * sh.per_channel() * 16 * static_cast<int64_t>(sizeof(float)) <= kByBlockMaxBytes &&
         sh.numel() * static_cast<int64_t>(sizeof(float)) > kLastLevelCacheBytes;
}

std::atomic<const BatchNormLoops*> g_loops{nullptr};

const BatchNormLoops& loops() {
  const BatchNormLoops* l = g_loops.load(std::memory_order_acquire);
  if (l == nullptr) {
    l = simd_variant_count() > 0 ? simd_loops(0) : plain_loops();
    g_loops.store(l, std::memory_order_release);
  }
  return *l;
}

// Scratch that lives with the calling thread and only grows: no allocation
// once a shape has been seen.
struct Workspace {
  AlignedVector<double> doubles;  // block partials
  AlignedVector<float> floats;    // per-column values of the rows view
  AlignedVector<double> channel_doubles;
  AlignedVector<float> channel_floats;
  AlignedVector<float> statistics;  // per-channel statistics a caller derives (eval backward)
  static void grow(auto& v, int64_t count) {
    if (v.size() < static_cast<size_t>(count)) v.resize(static_cast<size_t>(count));
  }
  double* channel_d(int64_t count) {
    grow(channel_doubles, count);
    return channel_doubles.data();
  }
  float* channel_f(int64_t count) {
    grow(channel_floats, count);
    return channel_floats.data();
  }
  double* d(size_t count) {
    if (doubles.size() < count) doubles.resize(count);
    return doubles.data();
  }
  float* f(size_t count) {
    if (floats.size() < count) floats.resize(count);
    return floats.data();
  }
};
thread_local Workspace t_workspace;

// Running moments of one channel (or column): count, mean, m2.
struct Stat {
  double count = 0.0;
  double mean = 0.0;
  double m2 = 0.0;
  void store(double* mean_out, double* m2_out, int64_t j) const {
    mean_out[j] = mean;
    m2_out[j] = m2;
  }
  void merge(const Stat& b) {
    if (b.count == 0.0) return;
    if (count == 0.0) {  // the first part is the total so far, without a division
      *this = b;
      return;
    }
    const double total = count + b.count;
    const double delta = b.mean - mean;
    mean += delta * b.count / total;
    m2 += b.m2 + delta * delta * count * b.count / total;
    count = total;
  }
};

// The backward's two sums of one channel (or column): sum(g), sum(g * (x - mean)).
struct GradSums {
  double dy = 0.0;
  double dy_xmu = 0.0;
  void store(double* dy_out, double* dy_xmu_out, int64_t j) const {
    dy_out[j] = dy;
    dy_xmu_out[j] = dy_xmu;
  }
  void merge(const GradSums& b) {
    dy += b.dy;
    dy_xmu += b.dy_xmu;
  }
};

// The one parts-to-channel merge: for each channel j in [j_begin, j_end), its
// parts part(j, k), k < parts, merged in order into out_a[j] and out_b[j].
template <class Total, class Part>
void merge_parts(int64_t j_begin, int64_t j_end, int64_t parts, const Part& part, double* out_a,
                 double* out_b) {
  for (int64_t j = j_begin; j < j_end; ++j) {
    Total total;
    for (int64_t k = 0; k < parts; ++k) total.merge(part(j, k));
    total.store(out_a, out_b, j);
  }
}

// ---- spans (channels-first, s >= kSpanMin) ----

// The tensor as units in memory order: unit u is block u % blocks of row
// u / blocks, row = i*c + j being sample i's channel j (s floats). Tasks take
// contiguous ranges of units, so every pass streams through memory in order;
// each task keeps per-channel partial results, merged in task order.
struct SpanPlan {
  int64_t s, c;
  int64_t blocks;  // units per row: ceil(s / kSpanBlock)
  int64_t units;   // n * c * blocks
  int64_t parts;   // tasks

  explicit SpanPlan(const BatchNormShape& sh)
      : s(sh.s),
        c(sh.c),
        blocks((sh.s + kSpanBlock - 1) / kSpanBlock),
        units(sh.n * sh.c * ((sh.s + kSpanBlock - 1) / kSpanBlock)),
        parts(std::min(units, kTargetTasks)) {}

  int64_t unit_begin(int64_t part) const { return units * part / parts; }
  int64_t offset(int64_t u) const { return (u / blocks) * s + (u % blocks) * kSpanBlock; }
  int64_t length(int64_t u) const { return std::min(kSpanBlock, s - (u % blocks) * kSpanBlock); }
  int64_t channel(int64_t u) const { return (u / blocks) % c; }
};

// Per channel mean and m2 = sum((x - mean)^2), over the span plan.
void span_channel_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2) {
  const SpanPlan plan(sh);
  Stat* parts = reinterpret_cast<Stat*>(t_workspace.d(static_cast<size_t>(3 * plan.parts * sh.c)));
  parallel_for(plan.parts, sh.numel(), [&](int64_t p) {
    Stat* acc = parts + p * sh.c;
    std::fill(acc, acc + sh.c, Stat{});
    for (int64_t u = plan.unit_begin(p); u < plan.unit_begin(p + 1); ++u) {
      const int64_t len = plan.length(u);
      const Moments m = loops().span_moments(x + plan.offset(u), len);
      acc[plan.channel(u)].merge({static_cast<double>(len), m.mean, m.m2});
    }
  });
  merge_parts<Stat>(
      0, sh.c, plan.parts, [&](int64_t j, int64_t p) { return parts[p * sh.c + j]; }, mean, m2);
}

// ---- the rows view (channels-last, or channels-first with s < kSpanMin) ----

// Per-column mean and m2 of `rows` rows (width <= kTileWidth columns, rows
// `stride` floats apart) into mean[] and m2[]: blocks of block_rows rows
// summed by rows_moments, merged in double with Chan's update.
void rows_moments_merged(const float* x, int64_t rows, int64_t stride, int64_t width,
                         int64_t block_rows, double* mean, double* m2) {
  double block_mean[kTileWidth], block_m2[kTileWidth];
  float scr[2 * kTileWidth];
  double count = 0.0;
  for (int64_t r = 0; r < rows; r += block_rows) {
    const int64_t br = std::min(block_rows, rows - r);
    double* bm = count == 0.0 ? mean : block_mean;  // the first block lands in place
    double* bq = count == 0.0 ? m2 : block_m2;
    loops().rows_moments(x + r * stride, br, stride, width, bm, bq, scr);
    if (count > 0.0) {
      // Chan's update with the count factors shared by every column of the
      // block, so the loop over columns has no division.
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

struct RowsPlan {
  int64_t rows;     // n*s (channels-last) or n (channels-first)
  int64_t width;    // c or c*s
  int64_t per_column_group;  // columns that belong to one channel: 1 or s (grouped by channel)
  int64_t tile;     // columns a task takes
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
    block_rows = std::max<int64_t>(32, kRowsBlock / std::max<int64_t>(tile, 1));
    const int64_t want = std::max<int64_t>(1, kTargetTasks / tiles);
    parts = std::clamp<int64_t>(rows / (4 * block_rows), 1, want);
  }
  int64_t row_begin(int64_t part) const { return rows * part / parts; }
  // Floats between per-column arrays laid one after another: a whole number of
  // cache lines, so each array starts on one.
  int64_t column_pitch() const { return (width + 15) / 16 * 16; }
};

// Per channel mean and m2, over the rows view: the parts of each column, then
// the columns of each channel, in order.
void rows_channel_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2) {
  const RowsPlan plan(sh);
  const int64_t cols = plan.width;
  double* part_mean = t_workspace.d(static_cast<size_t>(2 * plan.parts * cols));
  double* part_m2 = part_mean + plan.parts * cols;
  parallel_for(plan.parts * plan.tiles, sh.numel(), [&](int64_t task) {
    const int64_t p = task / plan.tiles, t = task % plan.tiles;
    const int64_t w0 = t * plan.tile, tw = std::min(plan.tile, cols - w0);
    const int64_t r0 = plan.row_begin(p), r1 = plan.row_begin(p + 1);
    double* pm = part_mean + p * cols + w0;
    double* pq = part_m2 + p * cols + w0;
    rows_moments_merged(x + r0 * cols + w0, r1 - r0, cols, tw, plan.block_rows, pm, pq);
  });
  const int64_t group = plan.per_column_group;
  merge_parts<Stat>(
      0, sh.c, group * plan.parts,
      [&](int64_t j, int64_t k) {
        const int64_t w = j * group + k / plan.parts, p = k % plan.parts;
        return Stat{static_cast<double>(plan.row_begin(p + 1) - plan.row_begin(p)),
                    part_mean[p * cols + w], part_m2[p * cols + w]};
      },
      mean, m2);
}

// ---- blocks of 16 channels (blocked16, oneDNN's nChw16c) ----

// Unit u is sample u / blocks's block of channels 16*(u % blocks) .. +15: s
// rows of 16 columns, contiguous, each column one channel. Per-channel arrays
// serve a unit's columns as they are (channel 16b + w is column w of block b).
constexpr int64_t kBlockWidth = 16;

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

// Per channel mean and m2: each unit's 16 columns, then the units of each
// block merged in sample order.
void blocked_channel_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2) {
  const BlockedPlan plan(sh);
  double* part_mean = t_workspace.d(static_cast<size_t>(2 * plan.units * kBlockWidth));
  double* part_m2 = part_mean + plan.units * kBlockWidth;
  parallel_for(plan.units, sh.numel(), [&](int64_t u) {
    rows_moments_merged(x + plan.offset(u), plan.s, kBlockWidth, kBlockWidth, plan.block_rows,
                        part_mean + u * kBlockWidth, part_m2 + u * kBlockWidth);
  });
  merge_parts<Stat>(
      0, sh.c, sh.n,
      [&](int64_t j, int64_t i) {
        const int64_t col = plan.column(i, j);
        return Stat{static_cast<double>(plan.s), part_mean[col], part_m2[col]};
      },
      mean, m2);
}

// Per channel mean and m2 = sum((x - mean)^2) of a non-empty tensor, by layout.
void channel_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2) {
  if (sh.layout == Layout::blocked16) {
    blocked_channel_moments(x, sh, mean, m2);
  } else if (sh.layout == Layout::channels_first && sh.s >= kSpanMin) {
    span_channel_moments(x, sh, mean, m2);
  } else {
    rows_channel_moments(x, sh, mean, m2);
  }
}

// Broadcasts per-channel values over the rows view's columns into out (which
// starts on a cache line). Copied for channels-last too: the copy is small,
// and the caller's array may straddle lines on every vector load.
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

// y = act((x - mean) * scale + shift) over the whole tensor, with per-channel
// mean, scale and shift already computed.
void normalize(const float* x, float* y, const BatchNormShape& sh, const float* mean,
               const float* scale, const float* shift, bool relu) {
  const bool stream = streams(sh);
  if (sh.layout == Layout::blocked16) {
    const BlockedPlan plan(sh);
    parallel_for(plan.units, sh.numel(), [&](int64_t u) {
      const int64_t off = plan.offset(u), j = plan.first_channel(u);
      loops().rows_normalize(x + off, y + off, plan.s, kBlockWidth, kBlockWidth, mean + j,
                             scale + j, shift + j, relu, stream);
      if (stream) loops().store_fence();
    });
    return;
  }
  if (sh.layout == Layout::channels_first && sh.s >= kSpanMin) {
    const int64_t rows = sh.n * sh.c, chunks = std::min(rows, kTargetTasks);
    parallel_for(chunks, sh.numel(), [&](int64_t k) {
      for (int64_t row = rows * k / chunks; row < rows * (k + 1) / chunks; ++row) {
        const int64_t j = row % sh.c;
        loops().span_normalize(x + row * sh.s, y + row * sh.s, sh.s, mean[j], scale[j], shift[j],
                               relu, stream);
      }
      if (stream) loops().store_fence();
    });
    return;
  }
  const RowsPlan plan(sh);
  const int64_t pitch = plan.column_pitch();
  float* cols = t_workspace.f(static_cast<size_t>(3 * pitch));
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

bool finite_as_float(double v) {
  return std::isfinite(v) && std::fabs(v) <= std::numeric_limits<float>::max();
}

void check_not_null(const void* p, const char* name) {
  if (p == nullptr) throw Error(std::string(name) + " must not be null");
}

void check_eps(double eps) {
  if (!(eps > 0.0) || !std::isfinite(eps))
    throw Error("eps must be positive and finite, got " + std::to_string(eps));
}

}  // namespace
}  // namespace kernels

using kernels::loops;
using kernels::t_workspace;

void validate(const BatchNormShape& shape) {
  const std::pair<const char*, int64_t> sizes[] = {{"n", shape.n}, {"c", shape.c}, {"s", shape.s}};
  for (const auto& [name, value] : sizes)
    if (value < 0) throw Error(std::string(name) + " must be non-negative, got " + std::to_string(value));
  if (shape.layout != Layout::channels_first && shape.layout != Layout::channels_last &&
      shape.layout != Layout::blocked16)
    throw Error("layout must be channels_first (0), channels_last (1) or blocked16 (2), got " +
                std::to_string(static_cast<int>(shape.layout)));
  if (shape.layout == Layout::blocked16 && shape.c % 16 != 0)
    throw Error("layout blocked16 needs c to be a multiple of 16, got c=" +
                std::to_string(shape.c));
  int64_t product = 0;
  if (__builtin_mul_overflow(shape.n, shape.c, &product) ||
      __builtin_mul_overflow(product, shape.s, &product) ||
      product > std::numeric_limits<int64_t>::max() / 8)
    throw Error("n*c*s overflows: n=" + std::to_string(shape.n) + ", c=" + std::to_string(shape.c) +
                ", s=" + std::to_string(shape.s));
}

namespace kernels {
namespace {

void check_running(const RunningStats& running) {
  if ((running.mean == nullptr) != (running.var == nullptr))
    throw Error(std::string(running.mean == nullptr ? "running_mean" : "running_var") +
                " must not be null when the other running statistic is given");
  if (running.mean != nullptr && !(running.momentum >= 0.0 && running.momentum <= 1.0))
    throw Error("momentum must be in [0, 1], got " + std::to_string(running.momentum));
}

// A part of a batch of `count` values per channel.
void check_count(int64_t count, const BatchNormShape& sh) {
  if (count < sh.per_channel())
    throw Error("count must be at least this part's n*s=" + std::to_string(sh.per_channel()) +
                ", got " + std::to_string(count));
}

void check_training_count(int64_t count, const BatchNormShape& sh) {
  if (count <= 1)
    throw Error(ErrorCode::too_few_values,
                "expected more than 1 value per channel when training, got " +
                    std::to_string(count) + " (n=" + std::to_string(sh.n) +
                    ", s=" + std::to_string(sh.s) + ")");
}

// The training forward from each channel's mean and m2 over `count` values:
//   var = m2/count, invstd = 1/sqrt(var + eps), y = act((x - mean)*invstd*weight + bias)
// then save_*, and the running statistics when every statistic is finite.
BatchNormStatus forward_from_moments(const float* x, const BatchNormShape& sh, const float* weight,
                                     const float* bias, const double* mean, const double* m2,
                                     int64_t count, const RunningStats& running, double eps,
                                     float* y, float* save_mean, float* save_invstd,
                                     Activation activation) {
  const int64_t c = sh.c;
  const double count_d = static_cast<double>(count);
  float* mean_f = t_workspace.channel_f(4 * c);
  float* scale = mean_f + c;
  float* shift = scale + c;
  float* invstd_f = shift + c;
  bool finite = true;
  for (int64_t j = 0; j < c; ++j) {
    const double var = m2[j] / count_d;
    const double invstd = 1.0 / std::sqrt(var + eps);
    const double w = weight != nullptr ? weight[j] : 1.0;
    mean_f[j] = static_cast<float>(mean[j]);
    invstd_f[j] = static_cast<float>(invstd);
    scale[j] = static_cast<float>(invstd * w);
    shift[j] = bias != nullptr ? bias[j] : 0.0f;
    finite =
        finite && finite_as_float(mean[j]) && finite_as_float(var) && std::isfinite(invstd_f[j]);
  }
  if (sh.numel() > 0) normalize(x, y, sh, mean_f, scale, shift, activation == Activation::relu);
  if (save_mean != nullptr) std::copy(mean_f, mean_f + c, save_mean);
  if (save_invstd != nullptr) std::copy(invstd_f, invstd_f + c, save_invstd);
  if (!finite) return BatchNormStatus::non_finite;  // running statistics untouched (pytorch#90342)

  if (running.mean != nullptr) {
    const double m = running.momentum;
    const double bessel = running.unbiased ? count_d / (count - 1) : 1.0;
    for (int64_t j = 0; j < c; ++j) {
      const double var = m2[j] / count_d;
      running.mean[j] = static_cast<float>((1.0 - m) * running.mean[j] + m * mean[j]);
      running.var[j] = static_cast<float>((1.0 - m) * running.var[j] + m * var * bessel);
    }
  }
  return BatchNormStatus::ok;
}

}  // namespace
}  // namespace kernels

BatchNormStatus batch_norm_forward_training(const float* x, const BatchNormShape& sh,
                                            const float* weight, const float* bias,
                                            const RunningStats& running, double eps, float* y,
                                            float* save_mean, float* save_invstd,
                                            Activation activation) {
  using namespace kernels;
  validate(sh);
  check_eps(eps);
  check_running(running);
  if (sh.c == 0) return BatchNormStatus::ok;
  check_training_count(sh.per_channel(), sh);
  check_not_null(x, "x");
  check_not_null(y, "y");
  double* mean = t_workspace.channel_d(2 * sh.c);
  double* m2 = mean + sh.c;
  channel_moments(x, sh, mean, m2);
  return forward_from_moments(x, sh, weight, bias, mean, m2, sh.per_channel(), running, eps, y,
                              save_mean, save_invstd, activation);
}

void batch_norm_stats(const float* x, const BatchNormShape& sh, double* mean, double* m2) {
  using namespace kernels;
  validate(sh);
  if (sh.c == 0) return;
  check_not_null(mean, "mean");
  check_not_null(m2, "m2");
  if (sh.numel() == 0) {  // an empty part: count 0, which a merge skips
    std::fill(mean, mean + sh.c, 0.0);
    std::fill(m2, m2 + sh.c, 0.0);
    return;
  }
  check_not_null(x, "x");
  channel_moments(x, sh, mean, m2);
}

void batch_norm_merge_stats(int64_t parts, int64_t c, const int64_t* counts, const double* means,
                            const double* m2s, double* mean, double* m2, int64_t* count) {
  using namespace kernels;
  if (parts < 0) throw Error("parts must be non-negative, got " + std::to_string(parts));
  if (c < 0) throw Error("c must be non-negative, got " + std::to_string(c));
  check_not_null(count, "count");
  if (parts > 0) check_not_null(counts, "counts");
  int64_t total = 0;
  for (int64_t p = 0; p < parts; ++p) {
    if (counts[p] < 0)
      throw Error("counts[" + std::to_string(p) + "] must be non-negative, got " +
                  std::to_string(counts[p]));
    if (__builtin_add_overflow(total, counts[p], &total))
      throw Error("the sum of counts overflows at counts[" + std::to_string(p) + "]");
  }
  if (c > 0) {
    check_not_null(mean, "mean");
    check_not_null(m2, "m2");
    if (parts > 0) {
      check_not_null(means, "means");
      check_not_null(m2s, "m2s");
    }
  }
  merge_parts<Stat>(
      0, c, parts,
      [&](int64_t j, int64_t p) {
        return Stat{static_cast<double>(counts[p]), means[p * c + j], m2s[p * c + j]};
      },
      mean, m2);
  *count = total;
}

BatchNormStatus batch_norm_forward_with_stats(const float* x, const BatchNormShape& sh,
                                              const float* weight, const float* bias,
                                              const double* mean, const double* m2, int64_t count,
                                              const RunningStats& running, double eps, float* y,
                                              float* save_mean, float* save_invstd,
                                              Activation activation) {
  using namespace kernels;
  validate(sh);
  check_eps(eps);
  check_running(running);
  check_count(count, sh);
  if (sh.c == 0) return BatchNormStatus::ok;
  check_training_count(count, sh);
  check_not_null(mean, "mean");
  check_not_null(m2, "m2");
  if (sh.numel() > 0) {
    check_not_null(x, "x");
    check_not_null(y, "y");
  }
  return forward_from_moments(x, sh, weight, bias, mean, m2, count, running, eps, y, save_mean,
                              save_invstd, activation);
}

void batch_norm_forward_inference(const float* x, const BatchNormShape& sh, const float* weight,
                                  const float* bias, const float* running_mean,
                                  const float* running_var, double eps, float* y,
                                  Activation activation) {
  using namespace kernels;
  validate(sh);
  check_eps(eps);
  if (sh.numel() == 0) return;
  check_not_null(x, "x");
  check_not_null(y, "y");
  check_not_null(running_mean, "running_mean");
  check_not_null(running_var, "running_var");
  const int64_t c = sh.c;
  float* scale = t_workspace.channel_f(2 * c);
  float* shift = scale + c;
  // y = (x - running_mean) * scale + shift, scale = weight / sqrt(running_var + eps).
  for (int64_t j = 0; j < c; ++j) {
    const double w = weight != nullptr ? weight[j] : 1.0;
    scale[j] = static_cast<float>(w / std::sqrt(static_cast<double>(running_var[j]) + eps));
    shift[j] = bias != nullptr ? bias[j] : 0.0f;
  }
  normalize(x, y, sh, running_mean, scale, shift, activation == Activation::relu);
}

namespace kernels {
namespace {

const float* offset_or_null(const float* p, int64_t off) {
  return p == nullptr ? nullptr : p + off;
}

// What a dx pass reads and writes: dx = a*g + b*(x - mean) + c per channel,
// g = dy, or 0 where relu_y <= 0 (the fused ReLU's mask) when relu_y is given.
struct GradInput {
  const float* x;
  const float* dy;
  const float* relu_y;
  float* dx;
  const float* mean;
  const float* a;
  const float* b;
  const float* c;
};

// ---- the backward's sums, sum(g) and sum(g * (x - mean)) per channel ----

void span_channel_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                            double* sum_dy_xmu) {
  const SpanPlan plan(sh);
  GradSums* parts =
      reinterpret_cast<GradSums*>(t_workspace.d(static_cast<size_t>(2 * plan.parts * sh.c)));
  parallel_for(plan.parts, 2 * sh.numel(), [&](int64_t p) {
    GradSums* acc = parts + p * sh.c;
    std::fill(acc, acc + sh.c, GradSums{});
    for (int64_t u = plan.unit_begin(p); u < plan.unit_begin(p + 1); ++u) {
      const int64_t off = plan.offset(u), j = plan.channel(u);
      loops().span_grad_sums(g.x + off, g.dy + off, offset_or_null(g.relu_y, off), plan.length(u),
                             g.mean[j], &acc[j].dy, &acc[j].dy_xmu);
    }
  });
  merge_parts<GradSums>(
      0, sh.c, plan.parts, [&](int64_t j, int64_t p) { return parts[p * sh.c + j]; }, sum_dy,
      sum_dy_xmu);
}

void rows_channel_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                            double* sum_dy_xmu) {
  const RowsPlan plan(sh);
  const int64_t cols = plan.width;
  double* part_s = t_workspace.d(static_cast<size_t>(2 * plan.parts * cols));
  double* part_sx = part_s + plan.parts * cols;
  const float* mean_cols =
      per_column(g.mean, plan, t_workspace.f(static_cast<size_t>(plan.column_pitch())));
  parallel_for(plan.parts * plan.tiles, 2 * sh.numel(), [&](int64_t task) {
    const int64_t p = task / plan.tiles, t = task % plan.tiles;
    const int64_t w0 = t * plan.tile, tw = std::min(plan.tile, cols - w0);
    const int64_t r0 = plan.row_begin(p), r1 = plan.row_begin(p + 1);
    std::fill(part_s + p * cols + w0, part_s + p * cols + w0 + tw, 0.0);
    std::fill(part_sx + p * cols + w0, part_sx + p * cols + w0 + tw, 0.0);
    float scr[2 * kTileWidth];
    for (int64_t r = r0; r < r1; r += plan.block_rows) {
      const int64_t br = std::min(plan.block_rows, r1 - r);
      const int64_t off = r * cols + w0;
      loops().rows_grad_sums(g.x + off, g.dy + off, offset_or_null(g.relu_y, off), br, cols, tw,
                             mean_cols + w0, part_s + p * cols + w0, part_sx + p * cols + w0, scr);
    }
  });
  const int64_t group = plan.per_column_group;
  merge_parts<GradSums>(
      0, sh.c, group * plan.parts,
      [&](int64_t j, int64_t k) {
        const int64_t w = j * group + k / plan.parts, p = k % plan.parts;
        return GradSums{part_s[p * cols + w], part_sx[p * cols + w]};
      },
      sum_dy, sum_dy_xmu);
}

// Unit u's 16 column sums into part_s[u*16 ...] and part_sx[u*16 ...].
void blocked_unit_grad_sums(const GradInput& g, const BlockedPlan& plan, int64_t u, double* part_s,
                            double* part_sx) {
  const int64_t off = plan.offset(u);
  double* ps = part_s + u * kBlockWidth;
  double* psx = part_sx + u * kBlockWidth;
  std::fill(ps, ps + kBlockWidth, 0.0);
  std::fill(psx, psx + kBlockWidth, 0.0);
  float scr[2 * kBlockWidth];
  for (int64_t r = 0; r < plan.s; r += plan.block_rows) {
    const int64_t rows_off = off + r * kBlockWidth;
    loops().rows_grad_sums(g.x + rows_off, g.dy + rows_off, offset_or_null(g.relu_y, rows_off),
                           std::min(plan.block_rows, plan.s - r), kBlockWidth, kBlockWidth,
                           g.mean + plan.first_channel(u), ps, psx, scr);
  }
}

// Channels [j_begin, j_end)'s sums: their units' sums added in sample order.
void blocked_merge_grad_sums(const BlockedPlan& plan, int64_t n, int64_t j_begin, int64_t j_end,
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

void blocked_channel_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                               double* sum_dy_xmu) {
  const BlockedPlan plan(sh);
  double* part_s = t_workspace.d(static_cast<size_t>(2 * plan.units * kBlockWidth));
  double* part_sx = part_s + plan.units * kBlockWidth;
  parallel_for(plan.units, 2 * sh.numel(),
               [&](int64_t u) { blocked_unit_grad_sums(g, plan, u, part_s, part_sx); });
  blocked_merge_grad_sums(plan, sh.n, 0, sh.c, part_s, part_sx, sum_dy, sum_dy_xmu);
}

// Per channel sum(g) and sum(g * (x - mean)) of a non-empty tensor, by layout
// (g.dx and the coefficients are not read).
void channel_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                       double* sum_dy_xmu) {
  if (sh.layout == Layout::blocked16) {
    blocked_channel_grad_sums(g, sh, sum_dy, sum_dy_xmu);
  } else if (sh.layout == Layout::channels_first && sh.s >= kSpanMin) {
    span_channel_grad_sums(g, sh, sum_dy, sum_dy_xmu);
  } else {
    rows_channel_grad_sums(g, sh, sum_dy, sum_dy_xmu);
  }
}

// ---- the dx pass ----

void span_grad_input(const GradInput& g, const BatchNormShape& sh, bool stream) {
  const SpanPlan plan(sh);
  parallel_for(plan.parts, 3 * sh.numel(), [&](int64_t p) {
    for (int64_t u = plan.unit_begin(p); u < plan.unit_begin(p + 1); ++u) {
      const int64_t off = plan.offset(u), j = plan.channel(u);
      loops().span_grad_input(g.x + off, g.dy + off, offset_or_null(g.relu_y, off), g.dx + off,
                              plan.length(u), g.mean[j], g.a[j], g.b[j], g.c[j], stream);
    }
    if (stream) loops().store_fence();
  });
}

void rows_grad_input(const GradInput& g, const BatchNormShape& sh, bool stream) {
  const RowsPlan plan(sh);
  const int64_t cols = plan.width;
  const int64_t pitch = plan.column_pitch();
  float* col = t_workspace.f(static_cast<size_t>(4 * pitch));
  const float* mean = per_column(g.mean, plan, col);
  const float* a = per_column(g.a, plan, col + pitch);
  const float* b = per_column(g.b, plan, col + 2 * pitch);
  const float* cst = per_column(g.c, plan, col + 3 * pitch);
  const int64_t chunks = std::min<int64_t>(plan.rows, kTargetTasks);
  parallel_for(chunks, 3 * sh.numel(), [&](int64_t k) {
    const int64_t r0 = plan.rows * k / chunks, r1 = plan.rows * (k + 1) / chunks;
    const int64_t off = r0 * cols;
    loops().rows_grad_input(g.x + off, g.dy + off, offset_or_null(g.relu_y, off), g.dx + off,
                            r1 - r0, cols, cols, mean, a, b, cst, stream);
    if (stream) loops().store_fence();
  });
}

void blocked_unit_grad_input(const GradInput& g, const BlockedPlan& plan, int64_t u, bool stream) {
  const int64_t off = plan.offset(u), j = plan.first_channel(u);
  loops().rows_grad_input(g.x + off, g.dy + off, offset_or_null(g.relu_y, off), g.dx + off, plan.s,
                          kBlockWidth, kBlockWidth, g.mean + j, g.a + j, g.b + j, g.c + j, stream);
}

void blocked_grad_input(const GradInput& g, const BatchNormShape& sh, bool stream) {
  const BlockedPlan plan(sh);
  parallel_for(plan.units, 3 * sh.numel(), [&](int64_t u) {
    blocked_unit_grad_input(g, plan, u, stream);
    if (stream) loops().store_fence();
  });
}

// dx = a*g + b*(x - mean) + c over a non-empty tensor, by layout.
void grad_input(const GradInput& g, const BatchNormShape& sh) {
  const bool stream = streams(sh);
  if (sh.layout == Layout::blocked16) {
    blocked_grad_input(g, sh, stream);
  } else if (sh.layout == Layout::channels_first && sh.s >= kSpanMin) {
    span_grad_input(g, sh, stream);
  } else {
    rows_grad_input(g, sh, stream);
  }
}

// ---- the fused backward ----

// The backward of both modes. With constant_statistics (eval mode) mean and
// invstd are the running statistics' and dx = weight*invstd*g: the b and c
// coefficients below are 0; the sums for dweight and dbias are the same.
void backward(const float* x, const float* dy, const BatchNormShape& sh, const float* weight,
              const float* save_mean, const float* save_invstd, float* dx, float* dweight,
              float* dbias, Activation activation, const float* y, bool constant_statistics) {
  if (sh.numel() == 0) {
    if (dweight != nullptr) std::fill(dweight, dweight + sh.c, 0.0f);
    if (dbias != nullptr) std::fill(dbias, dbias + sh.c, 0.0f);
    return;
  }
  check_not_null(x, "x");
  check_not_null(dy, "dy");
  check_not_null(save_mean, "save_mean");
  check_not_null(save_invstd, "save_invstd");
  const float* relu_y = nullptr;
  if (activation == Activation::relu) {
    check_not_null(y, "y (the fused ReLU's output, needed for its mask)");
    relu_y = y;
  }
  if (dx == nullptr && dweight == nullptr && dbias == nullptr) return;

  const int64_t c = sh.c;
  const double inv_m = 1.0 / static_cast<double>(sh.per_channel());
  double* sum_dy = t_workspace.channel_d(2 * c);
  double* sum_dy_xmu = sum_dy + c;
  float* coef = t_workspace.channel_f(3 * c);  // a, b, c of dx = a*g + b*(x - mean) + c
  const GradInput g{x, dy, relu_y, dx, save_mean, coef, coef + c, coef + 2 * c};

  // From a channel's sums to dweight, dbias and the dx coefficients.
  auto finish_channel = [&](int64_t j) {
    const double w = weight != nullptr ? weight[j] : 1.0;
    const double invstd = save_invstd[j];
    if (dweight != nullptr) dweight[j] = static_cast<float>(sum_dy_xmu[j] * invstd);
    if (dbias != nullptr) dbias[j] = static_cast<float>(sum_dy[j]);
    coef[j] = static_cast<float>(w * invstd);
    coef[c + j] = constant_statistics
                      ? 0.0f
                      : static_cast<float>(-w * invstd * invstd * invstd * sum_dy_xmu[j] * inv_m);
    coef[2 * c + j] =
        constant_statistics ? 0.0f : static_cast<float>(-w * invstd * sum_dy[j] * inv_m);
  };
  const bool stream = streams(sh);

  if (backward_by_channel(sh)) {
    // One task per channel: its sums over every sample's span, then dx over
    // the same spans, which the sums have just brought into L2 (or the LLC).
    parallel_for(c, 3 * sh.numel(), [&](int64_t j) {
      double s_dy = 0.0, s_dy_xmu = 0.0;
      for (int64_t i = 0; i < sh.n; ++i) {
        const int64_t off = (i * c + j) * sh.s;
        loops().span_grad_sums(x + off, dy + off, offset_or_null(relu_y, off), sh.s, save_mean[j],
                               &s_dy, &s_dy_xmu);
      }
      sum_dy[j] = s_dy;
      sum_dy_xmu[j] = s_dy_xmu;
      finish_channel(j);
      if (dx == nullptr) return;
      for (int64_t i = 0; i < sh.n; ++i) {
        const int64_t off = (i * c + j) * sh.s;
        loops().span_grad_input(x + off, dy + off, offset_or_null(relu_y, off), dx + off, sh.s,
                                save_mean[j], g.a[j], g.b[j], g.c[j], stream);
      }
      if (stream) loops().store_fence();
    });
    return;
  }
  if (backward_by_block(sh)) {
    // One task per block of 16 channels, as backward_by_channel: its sums over
    // every sample, then dx over the same units, which the sums left in the LLC.
    const BlockedPlan plan(sh);
    double* part_s = t_workspace.d(static_cast<size_t>(2 * plan.units * kBlockWidth));
    double* part_sx = part_s + plan.units * kBlockWidth;
    parallel_for(plan.blocks, 3 * sh.numel(), [&](int64_t b) {
      for (int64_t i = 0; i < sh.n; ++i)
        blocked_unit_grad_sums(g, plan, i * plan.blocks + b, part_s, part_sx);
      blocked_merge_grad_sums(plan, sh.n, b * kBlockWidth, (b + 1) * kBlockWidth, part_s, part_sx,
                              sum_dy, sum_dy_xmu);
      for (int64_t j = b * kBlockWidth; j < (b + 1) * kBlockWidth; ++j) finish_channel(j);
      if (dx == nullptr) return;
      for (int64_t i = 0; i < sh.n; ++i)
        blocked_unit_grad_input(g, plan, i * plan.blocks + b, stream);
      if (stream) loops().store_fence();
    });
    return;
  }
  channel_grad_sums(g, sh, sum_dy, sum_dy_xmu);
  for (int64_t j = 0; j < c; ++j) finish_channel(j);
  if (dx != nullptr) grad_input(g, sh);
}

}  // namespace
}  // namespace kernels

void batch_norm_backward(const float* x, const float* dy, const BatchNormShape& sh,
                         const float* weight, const float* save_mean, const float* save_invstd,
                         float* dx, float* dweight, float* dbias, Activation activation,
                         const float* y) {
  validate(sh);
  kernels::backward(x, dy, sh, weight, save_mean, save_invstd, dx, dweight, dbias, activation, y,
                    false);
}

void batch_norm_backward_reduce(const float* x, const float* dy, const BatchNormShape& sh,
                                const float* save_mean, const float* save_invstd, double* sum_dy,
                                double* sum_dy_xhat, Activation activation, const float* y) {
  using namespace kernels;
  validate(sh);
  if (sh.c == 0) return;
  check_not_null(sum_dy, "sum_dy");
  check_not_null(sum_dy_xhat, "sum_dy_xhat");
  if (sh.numel() == 0) {  // an empty part adds nothing
    std::fill(sum_dy, sum_dy + sh.c, 0.0);
    std::fill(sum_dy_xhat, sum_dy_xhat + sh.c, 0.0);
    return;
  }
  check_not_null(x, "x");
  check_not_null(dy, "dy");
  check_not_null(save_mean, "save_mean");
  check_not_null(save_invstd, "save_invstd");
  if (activation == Activation::relu)
    check_not_null(y, "y (the fused ReLU's output, needed for its mask)");
  const GradInput g{x,       dy,        activation == Activation::relu ? y : nullptr,
                    nullptr, save_mean, nullptr,
                    nullptr, nullptr};
  channel_grad_sums(g, sh, sum_dy, sum_dy_xhat);
  // sum(g * xhat) = invstd * sum(g * (x - mean))
  for (int64_t j = 0; j < sh.c; ++j) sum_dy_xhat[j] *= static_cast<double>(save_invstd[j]);
}

void batch_norm_backward_with_sums(const float* x, const float* dy, const BatchNormShape& sh,
                                   const float* weight, const float* save_mean,
                                   const float* save_invstd, const double* sum_dy,
                                   const double* sum_dy_xhat, int64_t count, float* dx,
                                   Activation activation, const float* y) {
  using namespace kernels;
  validate(sh);
  check_count(count, sh);
  if (sh.numel() == 0) return;
  check_not_null(x, "x");
  check_not_null(dy, "dy");
  check_not_null(save_mean, "save_mean");
  check_not_null(save_invstd, "save_invstd");
  check_not_null(sum_dy, "sum_dy");
  check_not_null(sum_dy_xhat, "sum_dy_xhat");
  check_not_null(dx, "dx");
  if (activation == Activation::relu)
    check_not_null(y, "y (the fused ReLU's output, needed for its mask)");
  const int64_t c = sh.c;
  const double inv_m = 1.0 / static_cast<double>(count);
  float* coef = t_workspace.channel_f(3 * c);
  // dx = w*invstd*(g - sum_dy/M - xhat*sum_dy_xhat/M) as a*g + b*(x - mean) + c
  for (int64_t j = 0; j < c; ++j) {
    const double w = weight != nullptr ? weight[j] : 1.0;
    const double invstd = save_invstd[j];
    coef[j] = static_cast<float>(w * invstd);
    coef[c + j] = static_cast<float>(-w * invstd * invstd * sum_dy_xhat[j] * inv_m);
    coef[2 * c + j] = static_cast<float>(-w * invstd * sum_dy[j] * inv_m);
  }
  const GradInput g{x,        dy,          activation == Activation::relu ? y : nullptr,
                    dx,       save_mean,   coef,
                    coef + c, coef + 2 * c};
  grad_input(g, sh);
}

void batch_norm_backward_inference(const float* x, const float* dy, const BatchNormShape& sh,
                                   const float* weight, const float* running_mean,
                                   const float* running_var, double eps, float* dx,
                                   float* dweight, float* dbias, Activation activation,
                                   const float* y) {
  using namespace kernels;
  validate(sh);
  check_eps(eps);
  if (sh.numel() > 0) {
    check_not_null(running_mean, "running_mean");
    check_not_null(running_var, "running_var");
  }
  // invstd_r per channel, in its own scratch (backward uses the channel ones).
  AlignedVector<float>& invstd = t_workspace.statistics;
  Workspace::grow(invstd, sh.c);
  for (int64_t j = 0; j < sh.c; ++j)
    invstd[j] = static_cast<float>(1.0 / std::sqrt(static_cast<double>(running_var[j]) + eps));
  backward(x, dy, sh, weight, running_mean, invstd.data(), dx, dweight, dbias, activation, y, true);
}

std::string batch_norm_kernel_variant() { return loops().name; }

std::string batch_norm_kernel_variants() {
  std::string out = "auto";
  for (int i = 0; i < kernels::simd_variant_count(); ++i)
    out += std::string(",") + kernels::simd_loops(i)->name;
  return out + ",plain";
}

void set_batch_norm_kernel_variant(const std::string& name) {
  using namespace kernels;
  if (name == "auto") {
    g_loops.store(simd_variant_count() > 0 ? simd_loops(0) : plain_loops());
    return;
  }
  if (name == "plain") {
    g_loops.store(plain_loops());
    return;
  }
  for (int i = 0; i < simd_variant_count(); ++i)
    if (name == simd_loops(i)->name) {
      g_loops.store(simd_loops(i));
      return;
    }
  throw Error("unknown kernel variant '" + name + "'; this CPU runs: " +
              batch_norm_kernel_variants());
}

}  // namespace bnlab
