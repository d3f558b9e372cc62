// The bf16 batch-norm kernels (bnlab/batch_norm_bf16.hpp). The tensor is cut
// into pieces, contiguous runs of about kPieceValues values that are
// themselves tensors of the same layout (whole samples, a sample's channels,
// or rows of one channel group); each piece is widened to float in the calling
// thread's buffer, which stays in L2, run through the fp32 walks and loops
// (batch_norm_walks.hpp), and the outputs narrowed back to bf16 with rounding
// to nearest even. Over memory, in bf16 (2 bytes a value):
//   training 2 passes over x + 1 write of y, inference 1 read + 1 write,
//   backward 2 reads of x and dy + 1 write of dx.
// Pieces are grouped in tasks by shape alone and merged in task order, so the
// results do not depend on the thread count.
#include "bnlab/batch_norm_bf16.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "core/parallel.hpp"
#include "kernels/batch_norm_validation.hpp"
#include "kernels/batch_norm_walks.hpp"
#include "kernels/bf16_convert.hpp"

namespace bnlab::kernels {
namespace {

constexpr int64_t kPieceValues = int64_t{1} << 16;  // 256 KiB per float buffer

// Piece p of a tensor: `shape` (same layout) at `offset`, channels
// [first_channel, first_channel + shape.c).
struct Piece {
  int64_t offset;
  BatchNormShape shape;
  int64_t first_channel;
};

// A channel group is the channels that share each run of s positions: 1
// (channels-first), 16 (blocked16) or all c (channels-last). Pieces are, by
// the first that fits kPieceValues: several whole samples; several groups of
// one sample; rows of one group of one sample.
struct PiecePlan {
  BatchNormShape sh;
  int64_t group, groups;
  int level;           // 0 samples, 1 groups, 2 rows
  int64_t per;         // samples, groups or rows per piece
  int64_t per_parent;  // pieces per sample (level 1) or per group (level 2)
  int64_t count;

  // (N, C) channels-first is the same memory as channels-last with s = 1: taken
  // as rows of c channels, so that its runs fill vectors.
  static BatchNormShape as_rows(const BatchNormShape& shape) {
    if (shape.layout == Layout::channels_first && shape.s == 1)
      return {shape.n, shape.c, 1, Layout::channels_last};
    return shape;
  }

  explicit PiecePlan(const BatchNormShape& shape) : sh(as_rows(shape)) {
    group = sh.layout == Layout::channels_first ? 1
            : sh.layout == Layout::blocked16    ? 16
                                                : std::max<int64_t>(sh.c, 1);
    groups = sh.c / group;
    if (sh.c * sh.s <= kPieceValues) {
      level = 0;
      per = std::max<int64_t>(1, kPieceValues / std::max<int64_t>(sh.c * sh.s, 1));
      per_parent = 1;
      count = (sh.n + per - 1) / per;
    } else if (group * sh.s <= kPieceValues) {
      level = 1;
      per = kPieceValues / (group * sh.s);
      per_parent = (groups + per - 1) / per;
      count = sh.n * per_parent;
    } else {
      level = 2;
      per = std::max<int64_t>(1, kPieceValues / group);
      per_parent = (sh.s + per - 1) / per;
      count = sh.n * groups * per_parent;
    }
  }

  // The most channels one piece holds.
  int64_t piece_channels() const { return level == 0 ? sh.c : level == 1 ? per * group : group; }

  Piece piece(int64_t p) const {
    if (level == 0) {
      const int64_t i0 = p * per;
      return {i0 * sh.c * sh.s, {std::min(per, sh.n - i0), sh.c, sh.s, sh.layout}, 0};
    }
    if (level == 1) {
      const int64_t i = p / per_parent, b0 = (p % per_parent) * per;
      const int64_t k = std::min(per, groups - b0);
      return {(i * groups + b0) * group * sh.s, {1, k * group, sh.s, sh.layout}, b0 * group};
    }
    const int64_t q = p / per_parent, r0 = (p % per_parent) * per;  // q = i*groups + b
    return {(q * sh.s + r0) * group,
            {1, group, std::min(per, sh.s - r0), sh.layout},
            (q % groups) * group};
  }
};

// Pieces cut into at most kTargetTasks tasks of consecutive pieces.
struct Tasks {
  int64_t count, pieces;
  explicit Tasks(const PiecePlan& plan)
      : count(std::min(plan.count, kTargetTasks)), pieces(plan.count) {}
  int64_t begin(int64_t t) const { return pieces * t / count; }
};

// The calling thread's float copies of a piece: x, dy, and the output.
struct PieceBuffers {
  AlignedVector<float> x, dy, y, out;  // y: the fused ReLU's output
  AlignedVector<double> a, b;  // a piece's per-channel results
  AlignedVector<Moments> moments;
};
PieceBuffers& piece_buffers() {
  thread_local PieceBuffers buffers;
  return buffers;
}

// Scratch of the calling (API) thread: per-task results, per-channel values.
struct Bf16Workspace {
  AlignedVector<Moments> task_moments;
  AlignedVector<GradSums> task_sums;
  AlignedVector<double> channel_doubles;
  AlignedVector<float> channel_floats;
};
Bf16Workspace& bf16_workspace() {
  thread_local Bf16Workspace w;
  return w;
}

template <class T>
T* zeroed(AlignedVector<T>& v, int64_t count) {
  v.assign(static_cast<size_t>(count), T{});
  return v.data();
}

// Channel j's per-task results merged in task order into out_a[j], out_b[j].
template <class Total>
void merge_tasks(const Total* per_task, int64_t tasks, int64_t c, double* out_a, double* out_b) {
  merge_parts<Total>(
      0, c, tasks, [&](int64_t j, int64_t t) { return per_task[t * c + j]; }, out_a, out_b);
}

// Outputs are streamed when x and the output together overflow the LLC, as the
// fp32 kernels' rule (batch_norm_walks.hpp), counted in 2-byte values.
bool streams_bf16(const BatchNormShape& sh) {
  return 2 * sh.numel() * static_cast<int64_t>(sizeof(uint16_t)) >
         cache_thresholds().stream_bytes;
}

// Runs of one channel (channels-first spans) or of consecutive channels
// (channels-last rows, blocked16 rows) at least this long are normalized in
// registers; shorter ones go through the float buffer and the fp32 walks.
constexpr int64_t kRegisterRun = 16;

// A piece's runs for the register loops: span(at, j, len) for each
// channels-first run of channel j, rows(at, rows, width, j) for each block of
// rows whose columns are channels j, j+1, ... (at: values from the piece's
// start), when the runs are at least kRegisterRun long (true); else false.
template <class Span, class Rows>
bool for_each_register_run(const Piece& piece, Span&& span, Rows&& rows) {
  const BatchNormShape& s = piece.shape;
  const int64_t j0 = piece.first_channel;
  switch (s.layout) {
    case Layout::channels_last:
      if (s.c < kRegisterRun) return false;
      rows(0, s.n * s.s, s.c, j0);
      return true;
    case Layout::blocked16:
      for (int64_t u = 0; u < s.n * (s.c / 16); ++u)  // unit u: s rows of 16 channels
        rows(u * 16 * s.s, s.s, 16, j0 + 16 * (u % (s.c / 16)));
      return true;
    case Layout::channels_first:
      if (s.s < kRegisterRun) return false;
      for (int64_t r = 0; r < s.n * s.c; ++r) span(r * s.s, j0 + r % s.c, s.s);  // channel j0 + r % c
      return true;
  }
  return false;
}

// y = bf16(act((x - mean)*scale + shift)) of one piece (x, y at its offset)
// widened, computed and rounded in registers, when its runs are long enough.
bool normalize_in_registers(const uint16_t* x, uint16_t* y, const Piece& piece, const float* mean,
                            const float* scale, const float* shift, bool relu, bool stream) {
  const Bf16Conversions& v = bf16_conversions();
  return for_each_register_run(
      piece,
      [&](int64_t at, int64_t j, int64_t len) {
        v.span_normalize(x + at, y + at, len, mean[j], scale[j], shift[j], relu, stream);
      },
      [&](int64_t at, int64_t rows, int64_t width, int64_t j) {
        v.rows_normalize(x + at, y + at, rows, width, mean + j, scale + j, shift + j, relu,
                         stream);
      });
}

// dx = bf16(a*g + b*(x - mean) + c) of one piece (g: dy, masked by the
// fused ReLU's output) in registers, likewise.
bool grad_input_in_registers(const Bf16Grad& g, uint16_t* dx, const Piece& piece,
                             const float* mean, const float* a, const float* b, const float* c,
                             bool stream) {
  const Bf16Conversions& v = bf16_conversions();
  return for_each_register_run(
      piece,
      [&](int64_t at, int64_t j, int64_t len) {
        const Bf16Grad r = g.at(at);
        v.span_grad_input(r.x, r.dy, r.relu_y, dx + at, len, mean[j], a[j], b[j], c[j], stream);
      },
      [&](int64_t at, int64_t rows, int64_t width, int64_t j) {
        const Bf16Grad r = g.at(at);
        v.rows_grad_input(r.x, r.dy, r.relu_y, dx + at, rows, width, mean + j, a + j, b + j,
                          c + j, stream);
      });
}

// sum(g) and sum(g*(x - mean)) of one piece's channels into sum_dy[j -
// first_channel], sum_dy_xmu[...] (set here), in registers, likewise.
bool grad_sums_in_registers(const Bf16Grad& g, const Piece& piece, const float* mean,
                            double* sum_dy, double* sum_dy_xmu) {
  const Bf16Conversions& v = bf16_conversions();
  const int64_t j0 = piece.first_channel, c = piece.shape.c;
  std::fill(sum_dy, sum_dy + c, 0.0);
  std::fill(sum_dy_xmu, sum_dy_xmu + c, 0.0);
  return for_each_register_run(
      piece,
      [&](int64_t at, int64_t j, int64_t len) {
        const Bf16Grad r = g.at(at);
        v.span_grad_sums(r.x, r.dy, r.relu_y, len, mean[j], sum_dy + (j - j0),
                         sum_dy_xmu + (j - j0));
      },
      [&](int64_t at, int64_t rows, int64_t width, int64_t j) {
        const Bf16Grad r = g.at(at);
        v.rows_grad_sums(r.x, r.dy, r.relu_y, rows, width, mean + j, sum_dy + (j - j0),
                         sum_dy_xmu + (j - j0));
      });
}

// Count, mean and m2 of one piece's channels into moments[j - first_channel]
// (set here), in registers, likewise.
bool moments_in_registers(const uint16_t* x, const Piece& piece, Moments* moments) {
  const Bf16Conversions& v = bf16_conversions();
  const int64_t j0 = piece.first_channel;
  std::fill(moments, moments + piece.shape.c, Moments{});
  return for_each_register_run(
      piece, [&](int64_t at, int64_t j, int64_t len) { moments[j - j0].merge(v.span_moments(x + at, len)); },
      [&](int64_t at, int64_t rows, int64_t width, int64_t j) {
        v.rows_moments(x + at, rows, width, moments + (j - j0));
      });
}

// Per-channel mean and m2 over the whole tensor: each piece's by the fp32
// walks (float blocks merged in double), merged piece by piece in each task.
void piece_moments(const uint16_t* x, const PiecePlan& plan, double* mean, double* m2) {
  const Tasks tasks(plan);
  const int64_t c = plan.sh.c;
  Moments* per_task = zeroed(bf16_workspace().task_moments, tasks.count * c);
  parallel_for(tasks.count, plan.sh.numel(), [&](int64_t t) {
    PieceBuffers& buf = piece_buffers();
    const int64_t width = plan.piece_channels();
    double* pm = Workspace::grown(buf.a, width);
    double* pq = Workspace::grown(buf.b, width);
    Moments* piece_m = Workspace::grown(buf.moments, width);
    for (int64_t p = tasks.begin(t); p < tasks.begin(t + 1); ++p) {
      const Piece piece = plan.piece(p);
      Moments* total = per_task + t * c + piece.first_channel;
      if (moments_in_registers(x + piece.offset, piece, piece_m)) {
        for (int64_t j = 0; j < piece.shape.c; ++j) total[j].merge(piece_m[j]);
        continue;
      }
      const int64_t values = piece.shape.numel();
      float* xf = Workspace::grown(buf.x, values);
      bf16_conversions().to_float(x + piece.offset, xf, values);
      channel_moments(xf, piece.shape, pm, pq);
      const double count = static_cast<double>(piece.shape.per_channel());
      for (int64_t j = 0; j < piece.shape.c; ++j) total[j].merge(Moments{count, pm[j], pq[j]});
    }
  });
  merge_tasks(per_task, tasks.count, c, mean, m2);
}

// Channel by channel pays for channels-first spans in registers on the fp32
// walks' rule (by_channel_slices_pay, batch_norm_walks.hpp), counted in
// 2-byte values: a channel's x and y (forward) or x and dy (backward). Spans
// longer than a piece (level 2) stay in memory order: their last piece may be
// too short for the registers, and the walks would then differ.
bool by_channel_pays(const PiecePlan& plan) {
  const BatchNormShape& sh = plan.sh;
  const int64_t bytes = static_cast<int64_t>(sizeof(uint16_t));
  return sh.layout == Layout::channels_first && sh.s >= kRegisterRun && sh.c >= 16 &&
         plan.level <= 1 && by_channel_slices_pay(sh.numel() * bytes, 2 * sh.per_channel() * bytes);
}

// y's coefficients of channel j in the bf16 forward: scale = weight /
// sqrt(var + eps) in double, as the fp32 forward rounds it, and shift = bias
// (the loops subtract the float mean).
void scale_and_shift(int64_t j, const float* weight, const float* bias, const double* m2,
                     double count, double eps, float* scale, float* shift) {
  const double wj = weight != nullptr ? weight[j] : 1.0;
  scale[j] = static_cast<float>(wj / std::sqrt(m2[j] / count + eps));
  shift[j] = bias != nullptr ? bias[j] : 0.0f;
}

// Channel j's spans of a channels-first plan of level 0 or 1 in piece order:
// run(p, at, len), at counted in values from the tensor's start.
template <class Run>
void channel_runs(const PiecePlan& plan, int64_t j, const Run& run) {
  const BatchNormShape& sh = plan.sh;
  for (int64_t i = 0; i < sh.n; ++i) {
    const int64_t at = (i * sh.c + j) * sh.s;
    run(plan.level == 0 ? i / plan.per : i * plan.per_parent + j / plan.per, at, sh.s);
  }
}

// Channel j's total over its spans, merged as the memory-order walks merge
// it (span by span into its piece's, piece by piece into its task's, task by
// task into the total), so that both walks give the same bits: add(total,
// at, len) adds one span into the piece's Total.
template <class Total, class Add>
Total channel_total(const PiecePlan& plan, const Tasks& tasks, int64_t j, const Add& add) {
  Total total, task, piece;
  int64_t p_now = -1, t_now = 0;
  channel_runs(plan, j, [&](int64_t p, int64_t at, int64_t len) {
    if (p != p_now) {
      task.merge(piece);
      piece = Total{};
      if (p_now >= 0 && p >= tasks.begin(t_now + 1)) {
        total.merge(task);
        task = Total{};
      }
      while (p >= tasks.begin(t_now + 1)) ++t_now;
      p_now = p;
    }
    add(piece, at, len);
  });
  task.merge(piece);
  total.merge(task);
  return total;
}

// The training forward channel by channel (channels-first, when it pays):
// one task per channel, its moments over every sample's span merged run by
// run, piece by piece and task by task as piece_moments merges them (the same
// bits), its mean, scale and shift, then y over the same spans from L2 (or
// the LLC): 2 passes over DRAM instead of 3.
bool forward_by_channel(const uint16_t* x, uint16_t* y, const PiecePlan& plan, const float* weight,
                        const float* bias, double eps, double* mean, double* m2, float* mean_f,
                        float* scale, float* shift, bool relu) {
  if (!by_channel_pays(plan)) return false;
  const BatchNormShape& sh = plan.sh;
  const Tasks tasks(plan);
  const bool stream = streams_bf16(sh);
  const double count = static_cast<double>(sh.per_channel());
  const Bf16Conversions& v = bf16_conversions();
  parallel_for(sh.c, 3 * sh.numel(), [&](int64_t j) {
    const Moments total = channel_total<Moments>(
        plan, tasks, j,
        [&](Moments& m, int64_t at, int64_t len) { m.merge(v.span_moments(x + at, len)); });
    total.store(mean, m2, j);
    mean_f[j] = static_cast<float>(mean[j]);
    scale_and_shift(j, weight, bias, m2, count, eps, scale, shift);
    for (int64_t i = 0; i < sh.n; ++i) {
      const int64_t at = (i * sh.c + j) * sh.s;
      v.span_normalize(x + at, y + at, sh.s, mean_f[j], scale[j], shift[j], relu, stream);
    }
    if (stream) std::atomic_thread_fence(std::memory_order_seq_cst);  // orders the streamed stores
  });
  return true;
}

// y = act((x - mean)*scale + shift) per channel, piece by piece.
void piece_normalize(const uint16_t* x, uint16_t* y, const PiecePlan& plan, const float* mean,
                     const float* scale, const float* shift, bool relu) {
  const bool stream = streams_bf16(plan.sh);
  parallel_for(plan.count, plan.sh.numel(), [&](int64_t p) {
    const Piece piece = plan.piece(p);
    if (normalize_in_registers(x + piece.offset, y + piece.offset, piece, mean, scale, shift, relu,
                               stream)) {
      if (stream) std::atomic_thread_fence(std::memory_order_seq_cst);  // orders the streamed stores
      return;
    }
    const int64_t values = piece.shape.numel(), j = piece.first_channel;
    float* xf = Workspace::grown(piece_buffers().x, values);
    bf16_conversions().to_float(x + piece.offset, xf, values);
    normalize(xf, xf, piece.shape, mean + j, scale + j, shift + j, relu);
    bf16_conversions().from_float(xf, y + piece.offset, values);
  });
}

// A piece's backward operands widened into buf (x, dy and, with the fused
// ReLU, its output), as the fp32 walks take them.
GradInput widen_piece(const Bf16Grad& g, const Piece& piece, PieceBuffers& buf) {
  const int64_t values = piece.shape.numel();
  const auto widen = [&](const uint16_t* in, AlignedVector<float>& out) {
    if (in == nullptr) return static_cast<const float*>(nullptr);
    float* wide = Workspace::grown(out, values);
    bf16_conversions().to_float(in + piece.offset, wide, values);
    return static_cast<const float*>(wide);
  };
  return {widen(g.x, buf.x), widen(g.dy, buf.dy), widen(g.relu_y, buf.y), nullptr,
          nullptr,           nullptr,              nullptr,                 nullptr};
}

// sum(g) and sum(g*(x - mean)) per channel, summed piece by piece in each task.
void piece_grad_sums(const Bf16Grad& g, const PiecePlan& plan, const float* mean, double* sum_dy,
                     double* sum_dy_xmu) {
  const Tasks tasks(plan);
  const int64_t c = plan.sh.c;
  GradSums* per_task = zeroed(bf16_workspace().task_sums, tasks.count * c);
  parallel_for(tasks.count, 2 * plan.sh.numel(), [&](int64_t t) {
    PieceBuffers& buf = piece_buffers();
    const int64_t width = plan.piece_channels();
    double* ps = Workspace::grown(buf.a, width);
    double* psx = Workspace::grown(buf.b, width);
    for (int64_t p = tasks.begin(t); p < tasks.begin(t + 1); ++p) {
      const Piece piece = plan.piece(p);
      if (!grad_sums_in_registers(g.at(piece.offset), piece, mean, ps, psx)) {
        GradInput wide = widen_piece(g, piece, buf);
        wide.mean = mean + piece.first_channel;
        channel_grad_sums(wide, piece.shape, ps, psx);
      }
      GradSums* total = per_task + t * c + piece.first_channel;
      for (int64_t j = 0; j < piece.shape.c; ++j) total[j].merge(GradSums{ps[j], psx[j]});
    }
  });
  merge_tasks(per_task, tasks.count, c, sum_dy, sum_dy_xmu);
}

// dx = a*g + b*(x - mean) + c per channel, piece by piece.
void piece_grad_input(const Bf16Grad& g, uint16_t* dx, const PiecePlan& plan, const float* mean,
                      const float* a, const float* b, const float* c) {
  const bool stream = streams_bf16(plan.sh);
  parallel_for(plan.count, 3 * plan.sh.numel(), [&](int64_t p) {
    const Piece piece = plan.piece(p);
    if (grad_input_in_registers(g.at(piece.offset), dx + piece.offset, piece, mean, a, b, c,
                                stream)) {
      if (stream) std::atomic_thread_fence(std::memory_order_seq_cst);  // orders the streamed stores
      return;
    }
    PieceBuffers& buf = piece_buffers();
    const int64_t values = piece.shape.numel(), j = piece.first_channel;
    GradInput wide = widen_piece(g, piece, buf);
    float* dxf = Workspace::grown(buf.out, values);
    wide.dx = dxf;
    wide.mean = mean + j;
    wide.a = a + j;
    wide.b = b + j;
    wide.c = c + j;
    grad_input(wide, piece.shape);
    bf16_conversions().from_float(dxf, dx + piece.offset, values);
  });
}

// The backward channel by channel (channels-first, when it pays and dx is
// wanted): one task per channel, its gradient sums merged as piece_grad_sums
// merges them (the same bits), its coefficients, then dx over the same spans
// from L2 (or the LLC): 3 passes over DRAM instead of 5.
bool backward_by_channel(const Bf16Grad& g, uint16_t* dx, const PiecePlan& plan, const float* mean,
                         const BackwardFinish& finish, double* sum_dy, double* sum_dy_xmu,
                         const float* a, const float* b, const float* c) {
  if (dx == nullptr || !by_channel_pays(plan)) return false;
  const BatchNormShape& sh = plan.sh;
  const Tasks tasks(plan);
  const bool stream = streams_bf16(sh);
  const Bf16Conversions& v = bf16_conversions();
  parallel_for(sh.c, 5 * sh.numel(), [&](int64_t j) {
    const GradSums total =
        channel_total<GradSums>(plan, tasks, j, [&](GradSums& sums, int64_t at, int64_t len) {
          const Bf16Grad r = g.at(at);
          v.span_grad_sums(r.x, r.dy, r.relu_y, len, mean[j], &sums.dy, &sums.dy_xmu);
        });
    total.store(sum_dy, sum_dy_xmu, j);
    finish(j);
    channel_runs(plan, j, [&](int64_t, int64_t at, int64_t len) {
      const Bf16Grad r = g.at(at);
      v.span_grad_input(r.x, r.dy, r.relu_y, dx + at, len, mean[j], a[j], b[j], c[j], stream);
    });
    if (stream) std::atomic_thread_fence(std::memory_order_seq_cst);  // orders the streamed stores
  });
  return true;
}

}  // namespace
}  // namespace bnlab::kernels

namespace bnlab {

BatchNormStatus batch_norm_forward_training_bf16(const uint16_t* x, const BatchNormShape& sh,
                                                 const float* weight, const float* bias,
                                                 const RunningStats& running, double eps,
                                                 uint16_t* y, float* save_mean,
                                                 float* save_invstd, Activation activation) {
  using namespace kernels;
  check_training_arguments(sh, eps, running);
  if (sh.c == 0) return BatchNormStatus::ok;
  check_training_count(sh.per_channel(), sh);
  check_not_null(x, "x");
  check_not_null(y, "y");
  const int64_t c = sh.c;
  const PiecePlan plan(sh);
  Bf16Workspace& w = bf16_workspace();
  double* mean = Workspace::grown(w.channel_doubles, 2 * c);
  double* m2 = mean + c;
  float* mean_f = Workspace::grown(w.channel_floats, 4 * c);
  float* invstd_f = mean_f + c;
  float* scale = invstd_f + c;
  float* shift = scale + c;
  const bool relu = activation == Activation::relu;
  const bool normalized =
      forward_by_channel(x, y, plan, weight, bias, eps, mean, m2, mean_f, scale, shift, relu);
  if (!normalized) piece_moments(x, plan, mean, m2);
  // save_*, the running statistics and the status as the fp32 kernel gives
  // them from the same moments (an empty part: nothing to normalize there).
  const BatchNormStatus status =
      batch_norm_forward_with_stats(nullptr, {0, c, sh.s, sh.layout}, weight, bias, mean, m2,
                                    sh.per_channel(), running, eps, nullptr, mean_f, invstd_f);
  if (!normalized) {
    const double count = static_cast<double>(sh.per_channel());
    for (int64_t j = 0; j < c; ++j) scale_and_shift(j, weight, bias, m2, count, eps, scale, shift);
    piece_normalize(x, y, plan, mean_f, scale, shift, relu);
  }
  if (save_mean != nullptr) std::copy(mean_f, mean_f + c, save_mean);
  if (save_invstd != nullptr) std::copy(invstd_f, invstd_f + c, save_invstd);
  return status;
}

void batch_norm_forward_inference_bf16(const uint16_t* x, const BatchNormShape& sh,
                                       const float* weight, const float* bias,
                                       const float* running_mean, const float* running_var,
                                       double eps, uint16_t* y, Activation activation) {
  using namespace kernels;
  validate(sh);
  check_eps(eps);
  if (sh.numel() == 0) return;
  check_inference_inputs(x, y, running_mean, running_var);
  float* scale = Workspace::grown(bf16_workspace().channel_floats, 2 * sh.c);
  float* shift = scale + sh.c;
  inference_coefficients(x, y, sh, weight, bias, running_mean, running_var, eps, scale, shift);
  piece_normalize(x, y, PiecePlan(sh), running_mean, scale, shift,
                  activation == Activation::relu);
}

void batch_norm_backward_bf16(const uint16_t* x, const uint16_t* dy, const BatchNormShape& sh,
                              const float* weight, const float* save_mean,
                              const float* save_invstd, uint16_t* dx, float* dweight,
                              float* dbias, Activation activation, const uint16_t* y) {
  using namespace kernels;
  validate(sh);
  if (sh.numel() == 0) {
    if (dweight != nullptr) std::fill(dweight, dweight + sh.c, 0.0f);
    if (dbias != nullptr) std::fill(dbias, dbias + sh.c, 0.0f);
    return;
  }
  // The fp32 checks take pointers only to test them for null.
  check_backward_inputs(reinterpret_cast<const float*>(x), reinterpret_cast<const float*>(dy),
                        save_mean, save_invstd, activation, reinterpret_cast<const float*>(y));
  if (dx == nullptr && dweight == nullptr && dbias == nullptr) return;
  const int64_t c = sh.c;
  const PiecePlan plan(sh);
  Bf16Workspace& w = bf16_workspace();
  double* sum_dy = Workspace::grown(w.channel_doubles, 2 * c);
  double* sum_dy_xmu = sum_dy + c;
  float* coef = Workspace::grown(w.channel_floats, 3 * c);  // dx's a, b, c
  const Bf16Grad g{x, dy, activation == Activation::relu ? y : nullptr};
  const BackwardFinish finish =
      BackwardFinish::over(sh, weight, save_invstd, sum_dy, dweight, dbias, coef, false);
  if (backward_by_channel(g, dx, plan, save_mean, finish, sum_dy, sum_dy_xmu, coef, coef + c,
                          coef + 2 * c))
    return;
  piece_grad_sums(g, plan, save_mean, sum_dy, sum_dy_xmu);
  for (int64_t j = 0; j < c; ++j) finish(j);
  if (dx != nullptr) piece_grad_input(g, dx, plan, save_mean, coef, coef + c, coef + 2 * c);
}

}  // namespace bnlab
