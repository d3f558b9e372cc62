// Times bnlab's kernels case by case and, on the same buffers, oneDNN's.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "bnlab/batch_norm.hpp"
#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/error.hpp"
#include "bnlab/group_norm.hpp"
#include "bnlab/layer_norm.hpp"
#include "kernel_buffers.hpp"

namespace bnlab::bench {
namespace {

// Values spread like activations: a per-channel offset plus noise in [-2, 2)
// from a 32-bit xorshift (fast, and the same in every run).
void fill(AlignedVector<float>& values, uint32_t seed, float offset) {
  uint32_t state = seed;
  for (float& v : values) {
    state ^= state << 13, state ^= state >> 17, state ^= state << 5;
    v = offset + 4.0f * static_cast<float>(state >> 8) * (1.0f / 16777216.0f) - 2.0f;
  }
}

void allocate(KernelBuffers& b, int64_t numel, int64_t c) {
  b.x.resize(numel), b.dy.resize(numel), b.out_bnlab.resize(numel), b.out_peer.resize(numel);
  fill(b.x, 1, 0.5f);
  fill(b.dy, 2, 0.0f);
  // Touch the outputs so that no page is faulted in while the clock runs.
  std::memset(b.out_bnlab.data(), 0, numel * sizeof(float));
  std::memset(b.out_peer.data(), 0, numel * sizeof(float));
  for (auto* per_channel : {&b.weight, &b.bias, &b.running_mean, &b.running_var, &b.save_mean,
                            &b.save_invstd, &b.dweight, &b.dbias, &b.peer_mean, &b.peer_var,
                            &b.peer_dweight, &b.peer_dbias})
    per_channel->assign(c, 0.0f);
  for (auto* per_channel :
       {&b.split_mean, &b.split_m2, &b.merged_mean, &b.merged_m2, &b.sum_dy, &b.sum_dy_xhat})
    per_channel->assign(c, 0.0);
  for (int64_t j = 0; j < c; ++j) {
    b.weight[j] = 1.0f + 0.01f * static_cast<float>(j % 7);
    b.bias[j] = 0.1f * static_cast<float>(j % 5);
    b.running_mean[j] = 0.5f;
    b.running_var[j] = 1.3f;
  }
}

// x and dy rounded to bf16, and the bf16 outputs, for the bf16 cases.
void allocate_bf16(KernelBuffers& b) {
  const size_t numel = b.x.size();
  if (b.x_bf16.size() == numel) return;
  b.x_bf16.resize(numel), b.dy_bf16.resize(numel);
  b.out_bnlab_bf16.assign(numel, 0), b.out_peer_bf16.assign(numel, 0);
  floats_to_bf16(b.x.data(), b.x_bf16.data(), static_cast<int64_t>(numel));
  floats_to_bf16(b.dy.data(), b.dy_bf16.data(), static_cast<int64_t>(numel));
}

template <class T>
double max_abs_diff(const AlignedVector<T>& a, const AlignedVector<T>& b) {
  const auto value = [](T v) {
    if constexpr (std::is_same_v<T, uint16_t>) return static_cast<double>(bf16_to_float(v));
    else return static_cast<double>(v);
  };
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(value(a[i]) - value(b[i])));
  return worst;
}

// GroupNorm and LayerNorm: their shapes, and their saved statistics (n*groups
// or rows floats each, more than KernelBuffers keeps per channel).
bool is_norm(Op op) {
  return op == Op::group_norm_forward || op == Op::group_norm_backward ||
         op == Op::layer_norm_forward || op == Op::layer_norm_backward;
}
GroupNormShape group_norm_shape(const BatchNormShape& s) {
  return {s.n, s.c, s.s, kBenchGroups, s.layout};
}
LayerNormShape layer_norm_shape(const Case& c) {  // the table's LayerNorm rows are 2-D
  return {c.numel() / c.dims.back(), c.dims.back()};
}
float* norm_stats(int64_t count) {
  static AlignedVector<float> stats;
  if (stats.size() < static_cast<size_t>(2 * count)) stats.resize(static_cast<size_t>(2 * count));
  return stats.data();
}

// One call of bnlab's kernel for the case, on the buffers.
void call_bnlab(const Case& the_case, const BatchNormShape& shape, KernelBuffers& b) {
  constexpr double kEps = 1e-5;
  switch (the_case.op) {
    case Op::train_forward:
    case Op::train_forward_relu: {
      RunningStats running{b.running_mean.data(), b.running_var.data(), 0.1, true};
      batch_norm_forward_training(
          b.x.data(), shape, b.weight.data(), b.bias.data(), running, kEps, b.out_bnlab.data(),
          b.save_mean.data(), b.save_invstd.data(),
          the_case.op == Op::train_forward_relu ? Activation::relu : Activation::none);
      break;
    }
    case Op::inference_forward:
      batch_norm_forward_inference(b.x.data(), shape, b.weight.data(), b.bias.data(),
                                   b.running_mean.data(), b.running_var.data(), kEps,
                                   b.out_bnlab.data());
      break;
    case Op::backward:
      batch_norm_backward(b.x.data(), b.dy.data(), shape, b.weight.data(), b.save_mean.data(),
                          b.save_invstd.data(), b.out_bnlab.data(), b.dweight.data(),
                          b.dbias.data());
      break;
    case Op::split_forward: {
      // One process's part of a synchronized BN, with a merge of that one part.
      RunningStats running{b.running_mean.data(), b.running_var.data(), 0.1, true};
      batch_norm_stats(b.x.data(), shape, b.split_mean.data(), b.split_m2.data());
      const int64_t part_count = shape.per_channel();
      int64_t count = 0;
      batch_norm_merge_stats(1, shape.c, &part_count, b.split_mean.data(), b.split_m2.data(),
                             b.merged_mean.data(), b.merged_m2.data(), &count);
      batch_norm_forward_with_stats(b.x.data(), shape, b.weight.data(), b.bias.data(),
                                    b.merged_mean.data(), b.merged_m2.data(), count, running, kEps,
                                    b.out_bnlab.data(), b.save_mean.data(), b.save_invstd.data());
      break;
    }
    case Op::split_backward:
      batch_norm_backward_reduce(b.x.data(), b.dy.data(), shape, b.save_mean.data(),
                                 b.save_invstd.data(), b.sum_dy.data(), b.sum_dy_xhat.data());
      batch_norm_backward_with_sums(b.x.data(), b.dy.data(), shape, b.weight.data(),
                                    b.save_mean.data(), b.save_invstd.data(), b.sum_dy.data(),
                                    b.sum_dy_xhat.data(), shape.per_channel(), b.out_bnlab.data());
      break;
    case Op::forward_backward:
      // y, then dx over it: the same bytes move as with two buffers.
      call_bnlab({the_case.dims, the_case.layout, Op::train_forward}, shape, b);
      call_bnlab({the_case.dims, the_case.layout, Op::backward}, shape, b);
      break;
    case Op::group_norm_forward:
    case Op::group_norm_backward: {
      const int64_t count = shape.n * kBenchGroups;
      float* stats = norm_stats(count);
      if (the_case.op == Op::group_norm_forward) {
        group_norm_forward(b.x.data(), group_norm_shape(shape), b.weight.data(), b.bias.data(),
                           kEps, b.out_bnlab.data(), stats, stats + count);
      } else {
        group_norm_backward(b.x.data(), b.dy.data(), group_norm_shape(shape), b.weight.data(),
                            stats, stats + count, b.out_bnlab.data(), b.dweight.data(),
                            b.dbias.data());
      }
      break;
    }
    case Op::bf16_train_forward: {
      RunningStats running{b.running_mean.data(), b.running_var.data(), 0.1, true};
      batch_norm_forward_training_bf16(b.x_bf16.data(), shape, b.weight.data(), b.bias.data(),
                                       running, kEps, b.out_bnlab_bf16.data(), b.save_mean.data(),
                                       b.save_invstd.data());
      break;
    }
    case Op::bf16_inference_forward:
      batch_norm_forward_inference_bf16(b.x_bf16.data(), shape, b.weight.data(), b.bias.data(),
                                        b.running_mean.data(), b.running_var.data(), kEps,
                                        b.out_bnlab_bf16.data());
      break;
    case Op::bf16_backward:
      batch_norm_backward_bf16(b.x_bf16.data(), b.dy_bf16.data(), shape, b.weight.data(),
                               b.save_mean.data(), b.save_invstd.data(), b.out_bnlab_bf16.data(),
                               b.dweight.data(), b.dbias.data());
      break;
    case Op::layer_norm_forward:
    case Op::layer_norm_backward: {
      const LayerNormShape ln = layer_norm_shape(the_case);
      float* stats = norm_stats(ln.rows);
      if (the_case.op == Op::layer_norm_forward) {
        layer_norm_forward(b.x.data(), ln, b.weight.data(), b.bias.data(), kEps,
                           b.out_bnlab.data(), stats, stats + ln.rows);
      } else {
        layer_norm_backward(b.x.data(), b.dy.data(), ln, b.weight.data(), stats, stats + ln.rows,
                            b.out_bnlab.data(), b.dweight.data(), b.dbias.data());
      }
      break;
    }
  }
}

}  // namespace

std::vector<CaseResult> run_bnlab_and_onednn(const std::vector<Case>& cases,
                                             const TimingPolicy& policy, bool onednn,
                                             PeerStatus& onednn_status) {
  if (onednn) {
    onednn_status.ran = true;
    onednn_status.version = onednn_version();
  }
  std::vector<CaseResult> results;
  KernelBuffers buffers;
  std::vector<int64_t> allocated_dims;
  for (const Case& the_case : cases) {
    // Cases of one shape come together in the table; they share the buffers.
    if (the_case.dims != allocated_dims) {
      buffers = KernelBuffers{};  // give the previous shape's memory back first
      allocate(buffers, the_case.numel(), the_case.dims[1]);
      allocated_dims = the_case.dims;
    }
    const BatchNormShape shape = the_case.batch_norm_shape();
    if (is_bf16(the_case.op)) allocate_bf16(buffers);
    if (the_case.op == Op::bf16_backward) {
      // The saved statistics of the bf16 forward on the same x.
      call_bnlab({the_case.dims, the_case.layout, Op::bf16_train_forward}, shape, buffers);
    }
    if (the_case.op == Op::backward || the_case.op == Op::forward_backward ||
        the_case.op == Op::split_backward) {
      // Backward reads the saved statistics of a forward on the same x.
      Case forward = the_case;
      forward.op = Op::train_forward;
      call_bnlab(forward, shape, buffers);
    }
    if (the_case.op == Op::group_norm_backward || the_case.op == Op::layer_norm_backward) {
      // The saved statistics of the same op's forward on the same x.
      Case forward = the_case;
      forward.op = the_case.op == Op::group_norm_backward ? Op::group_norm_forward
                                                          : Op::layer_norm_forward;
      call_bnlab(forward, shape, buffers);
    }
    CaseResult result;
    result.the_case = the_case;
    std::fprintf(stderr, "  %-45s bnlab", the_case.id().c_str());
    result.bnlab = time_calls([&] { call_bnlab(the_case, shape, buffers); }, policy);
    if (onednn && is_norm(the_case.op)) {
      result.onednn.note = "n/a: oneDNN 2.6 has no group normalization; layer norm not wired";
    } else if (onednn) {
      std::fprintf(stderr, ", oneDNN");
      try {
        result.onednn.timing = time_onednn_case(the_case, buffers, policy);
        result.onednn.max_abs_diff_vs_bnlab =
            is_bf16(the_case.op) ? max_abs_diff(buffers.out_bnlab_bf16, buffers.out_peer_bf16)
                                 : max_abs_diff(buffers.out_bnlab, buffers.out_peer);
      } catch (const std::exception& e) {
        result.onednn.note = e.what();
      }
    }
    std::fprintf(stderr, "\n");
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace bnlab::bench
