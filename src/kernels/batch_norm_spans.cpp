// The channels-first walks with s >= kSpanMin: each (sample, channel) row of s
// floats is a span (batch_norm_walks.hpp).
#include <algorithm>

#include "core/parallel.hpp"
#include "kernels/batch_norm_walks.hpp"

namespace bnlab::kernels {
namespace {

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

  // Walks channel j's units (n samples) in memory order: unit(u) for each,
  // and part_end() after each run of them within one task's range, so that a
  // walk by channel merges what the task-by-task walk merges, in the same
  // order (the same bits).
  template <class Unit, class PartEnd>
  void channel_units(int64_t n, int64_t j, const Unit& unit, const PartEnd& part_end) const {
    int64_t part = 0;
    bool open = false;
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t u = (i * c + j) * blocks + b;
        if (open && u >= unit_begin(part + 1)) {
          part_end();
          open = false;
        }
        while (u >= unit_begin(part + 1)) ++part;
        unit(u);
        open = true;
      }
    }
    if (open) part_end();
  }
};

// Channel by channel pays when there are channels enough for the threads and
// the slices fit (by_channel_slices_pay, batch_norm_walks.hpp).
constexpr int64_t kByChannelMinChannels = 16;

bool by_channel_pays(const BatchNormShape& sh) {
  const int64_t bytes = static_cast<int64_t>(sizeof(float));
  return uses_spans(sh) && sh.c >= kByChannelMinChannels &&
         by_channel_slices_pay(sh.numel() * bytes, 2 * sh.per_channel() * bytes);
}

// One task per channel j: its units' results (add(offset, length, j, part))
// merged as the task-by-task walk merges them, handed to done(j, total), then,
// unless done says no, out(offset, j, stream) on every sample's span, which
// the first pass has just brought into L2 (or the LLC).
template <class Total, class Add, class Done, class Out>
void by_channel(const BatchNormShape& sh, const Add& add, const Done& done, const Out& out) {
  const SpanPlan plan(sh);
  const bool stream = streams(sh);
  parallel_for(sh.c, 3 * sh.numel(), [&](int64_t j) {
    Total total, part;
    plan.channel_units(
        sh.n, j, [&](int64_t u) { add(plan.offset(u), plan.length(u), j, part); },
        [&] {
          total.merge(part);
          part = Total{};
        });
    if (!done(j, total)) return;
    for (int64_t i = 0; i < sh.n; ++i) out((i * sh.c + j) * sh.s, j, stream);
    if (stream) loops().store_fence();
  });
}

}  // namespace

void spans_moments(const float* x, const BatchNormShape& sh, double* mean, double* m2) {
  const SpanPlan plan(sh);
  Moments* parts =
      reinterpret_cast<Moments*>(Workspace::grown(workspace().parts, 3 * plan.parts * sh.c));
  parallel_for(plan.parts, sh.numel(), [&](int64_t p) {
    Moments* acc = parts + p * sh.c;
    std::fill(acc, acc + sh.c, Moments{});
    for (int64_t u = plan.unit_begin(p); u < plan.unit_begin(p + 1); ++u)
      acc[plan.channel(u)].merge(loops().span_moments(x + plan.offset(u), plan.length(u)));
  });
  merge_parts<Moments>(
      0, sh.c, plan.parts, [&](int64_t j, int64_t p) { return parts[p * sh.c + j]; }, mean, m2);
}

void spans_normalize(const float* x, float* y, const BatchNormShape& sh, const float* mean,
                     const float* scale, const float* shift, bool relu) {
  const bool stream = streams(sh);
  const int64_t rows = sh.n * sh.c, chunks = std::min(rows, kTargetTasks);
  parallel_for(chunks, sh.numel(), [&](int64_t k) {
    for (int64_t row = rows * k / chunks; row < rows * (k + 1) / chunks; ++row) {
      const int64_t j = row % sh.c;
      loops().span_normalize(x + row * sh.s, y + row * sh.s, sh.s, mean[j], scale[j], shift[j],
                             relu, stream);
    }
    if (stream) loops().store_fence();
  });
}

void spans_grad_sums(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                     double* sum_dy_xmu) {
  const SpanPlan plan(sh);
  GradSums* parts =
      reinterpret_cast<GradSums*>(Workspace::grown(workspace().parts, 2 * plan.parts * sh.c));
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

void spans_grad_input(const GradInput& g, const BatchNormShape& sh) {
  const SpanPlan plan(sh);
  const bool stream = streams(sh);
  parallel_for(plan.parts, 3 * sh.numel(), [&](int64_t p) {
    for (int64_t u = plan.unit_begin(p); u < plan.unit_begin(p + 1); ++u) {
      const int64_t off = plan.offset(u), j = plan.channel(u);
      loops().span_grad_input(g.x + off, g.dy + off, offset_or_null(g.relu_y, off), g.dx + off,
                              plan.length(u), g.mean[j], g.a[j], g.b[j], g.c[j], stream);
    }
    if (stream) loops().store_fence();
  });
}

bool spans_forward_by_channel(const float* x, float* y, const BatchNormShape& sh, double* mean,
                              double* m2, const ForwardFinish& finish, bool relu) {
  if (!by_channel_pays(sh)) return false;
  by_channel<Moments>(
      sh,
      [&](int64_t off, int64_t len, int64_t, Moments& part) {
        part.merge(loops().span_moments(x + off, len));
      },
      [&](int64_t j, const Moments& total) {
        total.store(mean, m2, j);
        finish(j);
        return true;
      },
      [&](int64_t off, int64_t j, bool stream) {
        loops().span_normalize(x + off, y + off, sh.s, finish.mean_f[j], finish.scale[j],
                               finish.shift[j], relu, stream);
      });
  return true;
}

bool spans_backward_by_channel(const GradInput& g, const BatchNormShape& sh, double* sum_dy,
                               double* sum_dy_xmu, const BackwardFinish& finish) {
  if (!by_channel_pays(sh)) return false;
  by_channel<GradSums>(
      sh,
      [&](int64_t off, int64_t len, int64_t j, GradSums& part) {
        loops().span_grad_sums(g.x + off, g.dy + off, offset_or_null(g.relu_y, off), len, g.mean[j],
                               &part.dy, &part.dy_xmu);
      },
      [&](int64_t j, const GradSums& total) {
        total.store(sum_dy, sum_dy_xmu, j);
        finish(j);
        return g.dx != nullptr;
      },
      [&](int64_t off, int64_t j, bool stream) {
        loops().span_grad_input(g.x + off, g.dy + off, offset_or_null(g.relu_y, off), g.dx + off,
                                sh.s, g.mean[j], g.a[j], g.b[j], g.c[j], stream);
      });
  return true;
}

}  // namespace bnlab::kernels
