// GroupNorm kernels (and LayerNorm's, layer_norm.cpp: one group per row):
// planning, threading and the per-group math. The per-element work is in the
// loops of group_norm_loops.hpp (plain and vector variants).
//
// Tasks, cut by shape alone so the results do not depend on the thread count:
//  - channels-first: one task per (sample, group), whose M = (c/G)*s values
//    are contiguous. The statistics read the span, the normalize pass (or the
//    backward's dx pass) reads it again from L2 while it fits (8 channels of
//    56x56: 100 KiB), so 2 passes over memory forward and 3 backward.
//    Below kSmallSpatial positions (s == 1: LayerNorm, GroupNorm on (N, C);
//    3x3 maps) a channel's span is too short for a loop call of its own: a
//    sample is a row of c*s values, each group's span normalized in one loop
//    with the affine expanded per element, and the backward walks chunks of
//    rows so that the affine parameters' column sums read x and dy from cache.
//  - channels-last and blocked16: one task per sample, its s rows of c
//    channels walked as column tiles (up to 256 channels of each row, or a
//    blocked16 unit of 16): per-channel moments merged into the groups, then
//    the normalize pass over the sample. A sample that overflows a thread's
//    L2 (3.2 MiB at 256x56x56) is cut into parts by rows and shared by a team
//    of threads, each reading its parts back from its own L2 (sample_plan).
// Statistics: blocks of at most kNormBlock values summed in float, merged in
// double with Chan et al.'s update
//   n = na + nb, delta = mean_b - mean_a,
//   mean = mean_a + delta * nb / n,  m2 = m2_a + m2_b + delta^2 * na * nb / n.
// The backward keeps per (sample, channel) sums of dy and dy*(x - mean) in
// double; dweight and dbias add them over the samples in sample order.
// Outputs are written with streaming stores when x and the output together
// overflow the last-level cache, as the batch-norm kernels do: then y will
// not be read back from cache, and streaming saves reading its lines first.
#include "bnlab/group_norm.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "bnlab/aligned.hpp"
#include "bnlab/error.hpp"
#include "core/parallel.hpp"
#include "kernels/batch_norm_validation.hpp"
#include "kernels/batch_norm_walks.hpp"
#include "kernels/group_norm_loops.hpp"
#include "kernels/split_mean.hpp"

namespace bnlab {
namespace kernels {
namespace {

// The same rule as batch norm's (batch_norm_walks.hpp).
bool streams(const GroupNormShape& sh) { return streams_bytes(sh.numel()); }

std::atomic<const NormLoops*> g_norm_loops{nullptr};

const NormLoops& loops() {
  const NormLoops* l = g_norm_loops.load(std::memory_order_acquire);
  if (l == nullptr) {
    l = simd_norm_variant_count() > 0 ? simd_norm_loops(0) : plain_norm_loops();
    g_norm_loops.store(l, std::memory_order_release);
  }
  return *l;
}

// Scratch that lives with each thread (callers and workers) and only grows: no
// allocation once a shape has been seen.
struct NormWorkspace {
  AlignedVector<double> doubles;
  AlignedVector<float> floats;
  AlignedVector<double> task_doubles;  // a worker's per-task scratch
  AlignedVector<float> task_floats;
  AlignedVector<double> sample_sums;  // by_sample's part sums
  static double* grow(AlignedVector<double>& v, int64_t count) {
    if (v.size() < static_cast<size_t>(count)) v.resize(static_cast<size_t>(count));
    return v.data();
  }
  static float* grow(AlignedVector<float>& v, int64_t count) {
    if (v.size() < static_cast<size_t>(count)) v.resize(static_cast<size_t>(count));
    return v.data();
  }
};
thread_local NormWorkspace t_norm_workspace;

// Running moments: count, mean, m2.
struct Stat {
  double count = 0.0;
  double mean = 0.0;
  double m2 = 0.0;
  void merge(double count_b, double mean_b, double m2_b) {
    if (count_b == 0.0) return;
    const double total = count + count_b;
    const double delta = mean_b - mean;
    mean += delta * count_b / total;
    m2 += m2_b + delta * delta * count * count_b / total;
    count = total;
  }
};

// Moments of a contiguous span of any length, block by block.
Stat span_stat(const float* x, int64_t len) {
  Stat st;
  for (int64_t off = 0; off < len; off += kNormBlock) {
    const int64_t l = std::min(kNormBlock, len - off);
    const NormMoments m = loops().span_moments(x + off, l);
    st.merge(static_cast<double>(l), m.mean, m.m2);
  }
  return st;
}

// sum g and sum g*(x - mean) over a contiguous span of any length (g = dy or dy*w).
void span_sums(const float* x, const float* dy, const float* w, int64_t len, float mean,
               double* sum_g, double* sum_g_xmu) {
  for (int64_t off = 0; off < len; off += kNormBlock)
    loops().span_grad_sums(x + off, dy + off, w == nullptr ? nullptr : w + off,
                           std::min(kNormBlock, len - off), mean, sum_g, sum_g_xmu);
}

// Rows a rows block takes at least: each block ends in scalar work per column
// (its mean and m2, Chan's merge), which 16 rows of 256 columns (4096 values)
// left as the larger cost; 128 rows (128 KiB, an eighth of a 1 MiB L2: the
// second pass from L2) cut channels-last's CPU time by ~1/4 (see the commit
// that set it). From the machine's L2 (cache_thresholds.hpp).
int64_t rows_per_block(int64_t width) {
  const int64_t min_rows = cache_thresholds().norm_min_tile_block_bytes /
                           (kNormMaxWidth * static_cast<int64_t>(sizeof(float)));
  return std::max<int64_t>({int64_t{1}, min_rows, kNormBlock / width});
}

// One sample's rows (channels-last, blocked16) as column tiles: each tile is
// `rows` rows of `width` channels starting at channel first_channel,
// consecutive rows `stride` floats apart, at offset from the sample's start.
struct Tile {
  int64_t offset, stride, width, first_channel;
};

int64_t tile_count(const GroupNormShape& sh) {
  return sh.layout == Layout::blocked16 ? sh.c / 16 : (sh.c + kNormMaxWidth - 1) / kNormMaxWidth;
}

Tile tile_at(const GroupNormShape& sh, int64_t t) {
  if (sh.layout == Layout::blocked16) return {t * sh.s * 16, 16, 16, t * 16};
  const int64_t first = t * kNormMaxWidth;
  return {first, sh.c, std::min(kNormMaxWidth, sh.c - first), first};
}

// Per-channel mean and m2 over rows [r0, r1) of one sample (channels-last,
// blocked16): mean at mean[0..c), m2 at mean[c..2c).
void rows_channel_moments(const float* sample, const GroupNormShape& sh, int64_t r0, int64_t r1,
                          double* mean) {
  double block_mean[kNormMaxWidth], block_m2[kNormMaxWidth];
  for (int64_t t = 0; t < tile_count(sh); ++t) {
    const Tile tile = tile_at(sh, t);
    const int64_t block_rows = rows_per_block(tile.width);
    double* tm = mean + tile.first_channel;
    double* tq = mean + sh.c + tile.first_channel;
    double count = 0.0;
    for (int64_t r = r0; r < r1; r += block_rows) {
      const int64_t br = std::min(block_rows, r1 - r);
      const bool first = count == 0.0;  // the first block lands in place
      loops().rows_moments(sample + tile.offset + r * tile.stride, br, tile.stride, tile.width,
                           first ? tm : block_mean, first ? tq : block_m2);
      if (!first) {
        const double total = count + static_cast<double>(br);
        const double weight_new = static_cast<double>(br) / total;
        const double weight_cross = count * static_cast<double>(br) / total;
        for (int64_t k = 0; k < tile.width; ++k) {
          const double delta = block_mean[k] - tm[k];
          tm[k] += delta * weight_new;
          tq[k] += block_m2[k] + delta * delta * weight_cross;
        }
      }
      count += static_cast<double>(br);
    }
  }
}

// A channels-last or blocked16 kernel that reads `bytes` of each sample twice
// cuts a sample's rows into parts when those overflow a thread's share of L2:
// by shape and cache size alone, not by thread count, and the sums of each
// part are merged in part order, whichever thread took it. The parts let a
// team of threads share a sample (by_sample), so that the second pass reads
// each member's share (or the parts it read last) back from the member's L2,
// not from the LLC. A sample that fits stays whole and on one thread.
constexpr int64_t kMaxSampleParts = 8;
constexpr int64_t kMinPartRows = 64;
struct SamplePlan {
  int64_t parts = 1;
  int team = 1;  // threads that share each sample
};
SamplePlan sample_plan(const GroupNormShape& sh, int64_t bytes) {
  const int64_t budget = cache_thresholds().norm_team_share_bytes;
  if (budget <= 0 || bytes <= budget) return {};
  const int64_t parts = std::clamp<int64_t>(sh.s / kMinPartRows, 1, kMaxSampleParts);
  const int64_t team = std::min<int64_t>({(bytes + budget - 1) / budget, num_threads(), parts});
  return {parts, static_cast<int>(team)};
}
int64_t part_first_row(const GroupNormShape& sh, int64_t parts, int64_t p) {
  return sh.s * p / parts;
}

// A two-pass channels-last or blocked16 kernel over the samples: first(i, p,
// sums) fills the part_doubles sums of part p of sample i; once every part's
// are in, second(i, sums, p0, p1, member) merges them (part p's at
// sums + p * part_doubles) and makes the second pass over parts [p0, p1).
// A team of plan.team threads shares each sample, each member taking its
// share of the parts in both passes. A member can be one sample ahead of its team at
// most, so the sums of consecutive samples alternate between two buffers.
template <class First, class Second>
void by_sample(const GroupNormShape& sh, const SamplePlan& plan, int64_t part_doubles, int64_t work,
               First&& first, Second&& second) {
  const int team = plan.team;
  const int64_t parts = plan.parts, buffer = parts * part_doubles;
  if (team == 1) {
    parallel_for(sh.n, work, [&](int64_t i) {
      double* sums = NormWorkspace::grow(t_norm_workspace.sample_sums, buffer);
      for (int64_t p = 0; p < parts; ++p) first(i, p, sums + p * part_doubles);
      second(i, sums, int64_t{0}, parts, 0);
    });
    return;
  }
  const int max_teams = std::max(num_threads() / team, 1);
  double* shared = NormWorkspace::grow(t_norm_workspace.sample_sums, 2 * max_teams * buffer);
  std::unique_ptr<TeamRendezvous[]> rendezvous(new TeamRendezvous[max_teams]);
  parallel_teams(team, [&](int t, int member, int size, int teams) {
    const int64_t p0 = parts * member / size, p1 = parts * (member + 1) / size;
    int64_t round = 0;
    for (int64_t i = t; i < sh.n; i += teams, ++round) {
      double* sums = shared + (2 * t + round % 2) * buffer;
      for (int64_t p = p0; p < p1; ++p) first(i, p, sums + p * part_doubles);
      rendezvous[t].arrive();
      rendezvous[t].wait_round(round, size);
      second(i, sums, p0, p1, member);
    }
  });
}

// Channels-first spans shorter than this take the rows path (see the top).
constexpr int64_t kSmallSpatial = 32;

// The affine parameters per element of a channels-first sample, c channels of
// s positions (weight = 1, bias = 0 where null), for the loops that take them
// per element: the caller's arrays when s == 1 and both are given, else
// copies expanded over s; null when both are null.
struct Affine {
  const float* weight = nullptr;
  const float* bias = nullptr;
};
Affine full_affine(const float* weight, const float* bias, int64_t c, int64_t s) {
  if (weight == nullptr && bias == nullptr) return {};
  if (s == 1 && weight != nullptr && bias != nullptr) return {weight, bias};
  float* filled = NormWorkspace::grow(t_norm_workspace.floats, 2 * c * s);
  for (int64_t j = 0; j < c; ++j) {
    std::fill(filled + j * s, filled + (j + 1) * s, weight != nullptr ? weight[j] : 1.0f);
    std::fill(filled + (c + j) * s, filled + (c + j + 1) * s, bias != nullptr ? bias[j] : 0.0f);
  }
  return {filled, filled + c * s};
}

void forward(const float* x, const GroupNormShape& sh, const float* weight, const float* bias,
             double eps, float* y, float* save_mean, float* save_invstd) {
  const int64_t groups = sh.groups, cg = sh.channels_per_group(), m = sh.per_group();
  auto finish_group = [&](const Stat& st, int64_t ig, float* mean_f, float* invstd_f) {
    const double invstd = 1.0 / std::sqrt(st.m2 / st.count + eps);
    *mean_f = static_cast<float>(st.mean);
    *invstd_f = static_cast<float>(invstd);
    if (save_mean != nullptr && ig >= 0) save_mean[ig] = *mean_f;
    if (save_invstd != nullptr && ig >= 0) save_invstd[ig] = *invstd_f;
    return invstd;
  };

  const bool stream = streams(sh);
  if (sh.layout == Layout::channels_first) {
    const bool small = sh.s < kSmallSpatial;
    const Affine affine = small ? full_affine(weight, bias, sh.c, sh.s) : Affine{};
    parallel_for(sh.n * groups, sh.numel(), [&](int64_t ig) {
      const int64_t i = ig / groups, g = ig % groups, j0 = g * cg;
      const int64_t off = (i * sh.c + j0) * sh.s;
      float mean_f, invstd_f;
      const Stat st = span_stat(x + off, m);
      const double invstd = finish_group(st, ig, &mean_f, &invstd_f);
      if (small) {  // the whole group in one loop; xhat's shift carries the mean's low part
        const SplitMean xhat = split_mean(st.mean, invstd_f, 0.0);
        if (affine.weight != nullptr) {
          loops().span_normalize_affine(x + off, y + off, m, mean_f, invstd_f, xhat.shift,
                                        affine.weight + j0 * sh.s, affine.bias + j0 * sh.s, stream);
        } else {
          loops().span_normalize(x + off, y + off, m, mean_f, invstd_f, xhat.shift, stream);
        }
        if (stream) loops().store_fence();
        return;
      }
      for (int64_t j = j0; j < j0 + cg; ++j) {
        const float scale = static_cast<float>(invstd * (weight != nullptr ? weight[j] : 1.0));
        const SplitMean split = split_mean(st.mean, scale, bias != nullptr ? bias[j] : 0.0);
        const int64_t span = off + (j - j0) * sh.s;
        loops().span_normalize(x + span, y + span, sh.s, mean_f, scale, split.shift, stream);
      }
      if (stream) loops().store_fence();
    });
    return;
  }

  // channels-last and blocked16: a sample per task, or per team of threads.
  const SamplePlan plan = sample_plan(sh, sh.c * sh.s * static_cast<int64_t>(sizeof(float)));
  const int64_t parts = plan.parts;
  // Merges a sample's part moments (parts of 2c doubles) into the groups'
  // statistics, and fills the normalize coefficients (3c floats: the mean
  // per channel, scale, shift); save: this thread writes save_mean/_invstd.
  auto finish_sample = [&](int64_t i, const double* part_moments, float* coefficients, bool save) {
    double* col = NormWorkspace::grow(t_norm_workspace.task_doubles, 2 * sh.c);
    std::copy(part_moments, part_moments + 2 * sh.c, col);
    for (int64_t p = 1; p < parts; ++p) {
      const double count = static_cast<double>(part_first_row(sh, parts, p));
      const double rows = static_cast<double>(part_first_row(sh, parts, p + 1)) - count;
      const double* pm = part_moments + 2 * sh.c * p;
      for (int64_t j = 0; j < sh.c; ++j) {
        const double delta = pm[j] - col[j];
        col[j] += delta * rows / (count + rows);
        col[sh.c + j] += pm[sh.c + j] + delta * delta * count * rows / (count + rows);
      }
    }
    float* mean_cols = coefficients;
    float* scale = mean_cols + sh.c;
    float* shift = scale + sh.c;
    for (int64_t g = 0; g < groups; ++g) {
      Stat st;
      for (int64_t j = g * cg; j < (g + 1) * cg; ++j)
        st.merge(static_cast<double>(sh.s), col[j], col[sh.c + j]);
      float mean_f, invstd_f;
      const double invstd = finish_group(st, save ? i * groups + g : -1, &mean_f, &invstd_f);
      for (int64_t j = g * cg; j < (g + 1) * cg; ++j) {
        scale[j] = static_cast<float>(invstd * (weight != nullptr ? weight[j] : 1.0));
        const SplitMean split = split_mean(st.mean, scale[j], bias != nullptr ? bias[j] : 0.0);
        mean_cols[j] = mean_f;
        shift[j] = split.shift;
      }
    }
  };
  auto normalize_rows = [&](int64_t i, int64_t r0, int64_t r1, const float* coefficients) {
    const float* sample = x + i * sh.c * sh.s;
    float* out = y + i * sh.c * sh.s;
    for (int64_t t = 0; t < tile_count(sh); ++t) {
      const Tile tile = tile_at(sh, t);
      const int64_t j = tile.first_channel, off = tile.offset + r0 * tile.stride;
      loops().rows_normalize(sample + off, out + off, r1 - r0, tile.stride, tile.width,
                             coefficients + j, coefficients + sh.c + j, coefficients + 2 * sh.c + j,
                             stream);
    }
  };
  const int64_t part_doubles = 2 * sh.c;  // per channel: mean, then m2
  by_sample(
      sh, plan, part_doubles, sh.numel(),
      [&](int64_t i, int64_t p, double* moments) {
        rows_channel_moments(x + i * sh.c * sh.s, sh, part_first_row(sh, parts, p),
                             part_first_row(sh, parts, p + 1), moments);
      },
      [&](int64_t i, const double* moments, int64_t p0, int64_t p1, int member) {
        float* coefficients = NormWorkspace::grow(t_norm_workspace.task_floats, 3 * sh.c);
        finish_sample(i, moments, coefficients, member == 0);
        for (int64_t p = p1; p-- > p0;)  // the parts read last first: they are in L2
          normalize_rows(i, part_first_row(sh, parts, p), part_first_row(sh, parts, p + 1),
                         coefficients);
        if (stream) loops().store_fence();
      });
}

// dx = a*g + b*(x - mean) + c with, per (sample, group), sum_g = sum(w*dy) and
// sum_gx = sum(w*dy*(x - mean)) over its M values:
//   a = invstd (times weight[j] where the loop takes dy alone),
//   b = -invstd^3 * sum_gx / M,  c = -invstd * sum_g / M.
struct DxCoefficients {
  float b, c;
};
DxCoefficients dx_coefficients(double invstd, double sum_g, double sum_gx, int64_t m) {
  const double inv_m = 1.0 / static_cast<double>(m);
  return {static_cast<float>(-invstd * invstd * invstd * sum_gx * inv_m),
          static_cast<float>(-invstd * sum_g * inv_m)};
}

// LayerNorm's shape (and GroupNorm's channels-first with s < kSmallSpatial):
// the tensor is n rows of c*s values. Tasks take chunks of rows, blocks of rows
// at a time: per row and group the sums and dx, then the block's column sums
// for dweight and dbias while its x and dy are still in cache; a channel's
// dweight and dbias add its s columns.
constexpr int64_t kRowChunks = 32;  // tasks (fixed, so results do not depend on threads)
// A block's x and dy within L2, the chunks' column sums within the LLC: the
// sizes from cache_thresholds().
// Rows a chunk takes at least: each chunk's column sums cost as much as a row
// (zeroed, then added up), so a chunk of 2 rows (64x512x3x3 in 32 chunks)
// spent a third of the backward on them.
constexpr int64_t kMinChunkRows = 16;

void backward_rows(const float* x, const float* dy, const GroupNormShape& sh, const float* weight,
                   const float* save_mean, const float* save_invstd, float* dx, float* dweight,
                   float* dbias) {
  // c and cg below count columns: a channel's s positions are s columns.
  const int64_t groups = sh.groups, cg = sh.per_group(), c = sh.c * sh.s;
  const bool params = dweight != nullptr || dbias != nullptr;
  const CacheThresholds t = cache_thresholds();
  const int64_t max_part_doubles = t.norm_max_part_bytes / static_cast<int64_t>(sizeof(double));
  const int64_t row_block_floats = t.norm_row_block_bytes / (2 * static_cast<int64_t>(sizeof(float)));
  const int64_t chunks =
      std::clamp<int64_t>(std::min(max_part_doubles / (2 * c), sh.n / kMinChunkRows), 1, kRowChunks);
  const int64_t block_rows = std::max<int64_t>(1, row_block_floats / c);
  double* parts = NormWorkspace::grow(t_norm_workspace.doubles, params ? 2 * chunks * c : 0);
  const float* weights = full_affine(weight, nullptr, sh.c, sh.s).weight;  // per column
  const bool stream = streams(sh);
  parallel_for(chunks, 3 * sh.numel(), [&](int64_t k) {
    const int64_t r0 = sh.n * k / chunks, r1 = sh.n * (k + 1) / chunks;
    double* part_dy = params ? parts + 2 * k * c : nullptr;
    double* part_dyx = params ? part_dy + c : nullptr;
    if (params) std::fill(part_dy, part_dy + 2 * c, 0.0);
    for (int64_t b0 = r0; b0 < r1; b0 += block_rows) {
      const int64_t b1 = std::min(r1, b0 + block_rows);
      if (dx != nullptr) {
        for (int64_t i = b0; i < b1; ++i)
          for (int64_t g = 0; g < groups; ++g) {
            const int64_t ig = i * groups + g, off = i * c + g * cg;
            const float* w = weights != nullptr ? weights + g * cg : nullptr;
            double sum_g = 0.0, sum_gx = 0.0;
            span_sums(x + off, dy + off, w, cg, save_mean[ig], &sum_g, &sum_gx);
            const DxCoefficients co = dx_coefficients(save_invstd[ig], sum_g, sum_gx, cg);
            loops().span_grad_input(x + off, dy + off, w, dx + off, cg, save_mean[ig],
                                    save_invstd[ig], co.b, co.c, stream);
          }
      }
      if (!params) continue;
      // Column sums with each row's statistics, a group's columns at a time.
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t w0 = g * cg; w0 < (g + 1) * cg; w0 += kNormMaxWidth) {
          const int64_t width = std::min(kNormMaxWidth, (g + 1) * cg - w0);
          const int64_t sub_rows = std::max<int64_t>(1, kNormBlock / width);
          for (int64_t i = b0; i < b1; i += sub_rows) {
            const int64_t rows = std::min(sub_rows, b1 - i);
            loops().rows_affine_grad_sums(x + i * c + w0, dy + i * c + w0, rows, c, width,
                                          save_mean + i * groups + g, save_invstd + i * groups + g,
                                          groups, part_dy + w0, part_dyx + w0);
          }
        }
    }
    if (stream && dx != nullptr) loops().store_fence();
  });
  if (!params) return;
  for (int64_t j = 0; j < sh.c; ++j) {
    double s = 0.0, sx = 0.0;
    for (int64_t col = j * sh.s; col < (j + 1) * sh.s; ++col)
      for (int64_t k = 0; k < chunks; ++k) {
        s += parts[2 * k * c + col];
        sx += parts[2 * k * c + c + col];
      }
    if (dbias != nullptr) dbias[j] = static_cast<float>(s);
    if (dweight != nullptr) dweight[j] = static_cast<float>(sx);
  }
}

void backward(const float* x, const float* dy, const GroupNormShape& sh, const float* weight,
              const float* save_mean, const float* save_invstd, float* dx, float* dweight,
              float* dbias) {
  if (sh.numel() == 0) {
    if (dweight != nullptr) std::fill(dweight, dweight + sh.c, 0.0f);
    if (dbias != nullptr) std::fill(dbias, dbias + sh.c, 0.0f);
    return;
  }
  check_not_null(x, "x");
  check_not_null(dy, "dy");
  check_not_null(save_mean, "save_mean");
  check_not_null(save_invstd, "save_invstd");
  if (dx == nullptr && dweight == nullptr && dbias == nullptr) return;
  if (sh.layout == Layout::channels_first && sh.s < kSmallSpatial) {
    backward_rows(x, dy, sh, weight, save_mean, save_invstd, dx, dweight, dbias);
    return;
  }

  const int64_t groups = sh.groups, cg = sh.channels_per_group(), c = sh.c, m = sh.per_group();
  const bool stream = streams(sh);
  // Per (sample, channel): sum dy and sum dy*(x - mean), in double.
  double* sum_dy = NormWorkspace::grow(t_norm_workspace.doubles, 2 * sh.n * c);
  double* sum_dyx = sum_dy + sh.n * c;
  // The group's sums of w*dy and w*dy*(x - mean) from its channels' sums.
  // (s_dy, s_dyx: the sample's sums per channel).
  auto group_sums = [&](const double* s_dy, const double* s_dyx, int64_t g, double* sum_g,
                        double* sum_gx) {
    *sum_g = *sum_gx = 0.0;
    for (int64_t j = g * cg; j < (g + 1) * cg; ++j) {
      const double w = weight != nullptr ? weight[j] : 1.0;
      *sum_g += w * s_dy[j];
      *sum_gx += w * s_dyx[j];
    }
  };

  if (sh.layout == Layout::channels_first) {
    parallel_for(sh.n * groups, 3 * sh.numel(), [&](int64_t ig) {
      const int64_t i = ig / groups, g = ig % groups, j0 = g * cg;
      const int64_t off = (i * c + j0) * sh.s;
      const float mean = save_mean[ig];
      for (int64_t j = j0; j < j0 + cg; ++j) {
        sum_dy[i * c + j] = sum_dyx[i * c + j] = 0.0;
        span_sums(x + off + (j - j0) * sh.s, dy + off + (j - j0) * sh.s, nullptr, sh.s, mean,
                  &sum_dy[i * c + j], &sum_dyx[i * c + j]);
      }
      if (dx == nullptr) return;
      double sum_g, sum_gx;
      group_sums(sum_dy + i * c, sum_dyx + i * c, g, &sum_g, &sum_gx);
      const double invstd = save_invstd[ig];
      const DxCoefficients co = dx_coefficients(invstd, sum_g, sum_gx, m);
      for (int64_t j = j0; j < j0 + cg; ++j) {
        const double w = weight != nullptr ? weight[j] : 1.0;
        const int64_t span = off + (j - j0) * sh.s;
        loops().span_grad_input(x + span, dy + span, nullptr, dx + span, sh.s, mean,
                                static_cast<float>(invstd * w), co.b, co.c, stream);
      }
      if (stream) loops().store_fence();
    });
  } else {
    // Per part, as the forward's moments: sum dy, then sum dy*(x - mean), per channel.
    const int64_t twice_read =
        (dx != nullptr ? 2 : 0) * c * sh.s * static_cast<int64_t>(sizeof(float));
    const SamplePlan plan = sample_plan(sh, twice_read);
    const int64_t parts = plan.parts, part_doubles = 2 * c;
    auto mean_columns = [&](int64_t i) {  // each channel's group mean, c floats
      float* mean_cols = NormWorkspace::grow(t_norm_workspace.task_floats, 4 * c);
      for (int64_t j = 0; j < c; ++j) mean_cols[j] = save_mean[i * groups + j / cg];
      return mean_cols;
    };
    by_sample(
        sh, plan, part_doubles, 3 * sh.numel(),
        [&](int64_t i, int64_t p, double* sums) {
          const float* mean_cols = mean_columns(i);
          std::fill(sums, sums + part_doubles, 0.0);
          const int64_t r1 = part_first_row(sh, parts, p + 1);
          for (int64_t t = 0; t < tile_count(sh); ++t) {
            const Tile tile = tile_at(sh, t);
            const int64_t j = tile.first_channel, block_rows = rows_per_block(tile.width);
            for (int64_t r = part_first_row(sh, parts, p); r < r1; r += block_rows) {
              const int64_t off = i * c * sh.s + tile.offset + r * tile.stride;
              loops().rows_grad_sums(x + off, dy + off, std::min(block_rows, r1 - r), tile.stride,
                                     tile.width, mean_cols + j, sums + j, sums + c + j);
            }
          }
        },
        [&](int64_t i, const double* sums, int64_t p0, int64_t p1, int member) {
          double* s_dy = member == 0 ? sum_dy + i * c
                                     : NormWorkspace::grow(t_norm_workspace.task_doubles, 2 * c);
          double* s_dyx = member == 0 ? sum_dyx + i * c : s_dy + c;
          for (int64_t j = 0; j < c; ++j) {
            s_dy[j] = sums[j];
            s_dyx[j] = sums[c + j];
          }
          for (int64_t p = 1; p < parts; ++p)
            for (int64_t j = 0; j < c; ++j) {
              s_dy[j] += sums[p * part_doubles + j];
              s_dyx[j] += sums[p * part_doubles + c + j];
            }
          if (dx == nullptr) return;
          float* mean_cols = mean_columns(i);
          float* a = mean_cols + c;
          float* b = a + c;
          float* cst = b + c;
          for (int64_t g = 0; g < groups; ++g) {
            double sum_g, sum_gx;
            group_sums(s_dy, s_dyx, g, &sum_g, &sum_gx);
            const double invstd = save_invstd[i * groups + g];
            const DxCoefficients co = dx_coefficients(invstd, sum_g, sum_gx, m);
            for (int64_t j = g * cg; j < (g + 1) * cg; ++j) {
              a[j] = static_cast<float>(invstd * (weight != nullptr ? weight[j] : 1.0));
              b[j] = co.b;
              cst[j] = co.c;
            }
          }
          for (int64_t p = p1; p-- > p0;) {  // the parts read last first: they are in L2
            const int64_t r0 = part_first_row(sh, parts, p), r1 = part_first_row(sh, parts, p + 1);
            for (int64_t t = 0; t < tile_count(sh); ++t) {
              const Tile tile = tile_at(sh, t);
              const int64_t j = tile.first_channel;
              const int64_t off = i * c * sh.s + tile.offset + r0 * tile.stride;
              loops().rows_grad_input(x + off, dy + off, dx + off, r1 - r0, tile.stride, tile.width,
                                      mean_cols + j, a + j, b + j, cst + j, stream);
            }
          }
          if (stream) loops().store_fence();
        });
  }
  // dbias[j] = sum_i sum_dy, dweight[j] = sum_i invstd(i, g) * sum_dyx, in sample order.
  for (int64_t j = 0; j < c; ++j) {
    double s = 0.0, sx = 0.0;
    for (int64_t i = 0; i < sh.n; ++i) {
      s += sum_dy[i * c + j];
      sx += sum_dyx[i * c + j] * save_invstd[i * groups + j / cg];
    }
    if (dbias != nullptr) dbias[j] = static_cast<float>(s);
    if (dweight != nullptr) dweight[j] = static_cast<float>(sx);
  }
}

}  // namespace
}  // namespace kernels

void validate(const GroupNormShape& shape) {
  // Sizes, layout and overflow as batch norm checks them, then the groups.
  validate(BatchNormShape{shape.n, shape.c, shape.s, shape.layout});
  if (shape.groups < 1)
    throw Error("groups must be at least 1, got " + std::to_string(shape.groups));
  if (shape.c % shape.groups != 0)
    throw Error("c must be a multiple of groups, got c=" + std::to_string(shape.c) +
                ", groups=" + std::to_string(shape.groups));
}

void group_norm_forward(const float* x, const GroupNormShape& shape, const float* weight,
                        const float* bias, double eps, float* y, float* save_mean,
                        float* save_invstd) {
  validate(shape);
  kernels::check_eps(eps);
  if (shape.numel() == 0) return;
  kernels::check_not_null(x, "x");
  kernels::check_not_null(y, "y");
  kernels::forward(x, shape, weight, bias, eps, y, save_mean, save_invstd);
}

void group_norm_backward(const float* x, const float* dy, const GroupNormShape& shape,
                         const float* weight, const float* save_mean, const float* save_invstd,
                         float* dx, float* dweight, float* dbias) {
  validate(shape);
  kernels::backward(x, dy, shape, weight, save_mean, save_invstd, dx, dweight, dbias);
}

std::string group_norm_kernel_variant() { return kernels::loops().name; }

std::string group_norm_kernel_variants() {
  std::string out = "auto";
  for (int i = 0; i < kernels::simd_norm_variant_count(); ++i)
    out += std::string(",") + kernels::simd_norm_loops(i)->name;
  return out + ",plain";
}

void set_group_norm_kernel_variant(const std::string& name) {
  using namespace kernels;
  if (name == "auto") {
    g_norm_loops.store(simd_norm_variant_count() > 0 ? simd_norm_loops(0) : plain_norm_loops());
    return;
  }
  if (name == "plain") {
    g_norm_loops.store(plain_norm_loops());
    return;
  }
  for (int i = 0; i < simd_norm_variant_count(); ++i)
    if (name == simd_norm_loops(i)->name) {
      g_norm_loops.store(simd_norm_loops(i));
      return;
    }
  throw Error("unknown kernel variant '" + name +
              "'; this CPU runs: " + group_norm_kernel_variants());
}

}  // namespace bnlab
