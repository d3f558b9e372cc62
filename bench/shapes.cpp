// The shape table: the one place the benchmark's shapes are written down.
#include <numeric>

#include "bench.hpp"
#include "bnlab/error.hpp"

namespace bnlab::bench {

const char* op_name(Op op) {
  switch (op) {
    case Op::train_forward: return "train_forward";
    case Op::train_forward_relu: return "train_forward_relu";
    case Op::inference_forward: return "inference_forward";
    case Op::backward: return "backward";
    case Op::forward_backward: return "forward_backward";
    case Op::group_norm_forward: return "group_norm_forward";
    case Op::group_norm_backward: return "group_norm_backward";
    case Op::layer_norm_forward: return "layer_norm_forward";
    case Op::layer_norm_backward: return "layer_norm_backward";
    case Op::split_forward: return "split_forward";
    case Op::split_backward: return "split_backward";
    case Op::bf16_train_forward: return "bf16_train_forward";
    case Op::bf16_inference_forward: return "bf16_inference_forward";
    case Op::bf16_backward: return "bf16_backward";
  }
  return "?";
}

int op_passes(Op op) {
  switch (op) {
    case Op::train_forward:
    case Op::train_forward_relu: return 3;
    case Op::inference_forward: return 2;
    case Op::backward: return 5;
    case Op::forward_backward: return 8;
    case Op::group_norm_forward:
    case Op::layer_norm_forward: return 2;
    case Op::group_norm_backward:
    case Op::layer_norm_backward: return 3;
    case Op::split_forward: return 3;
    case Op::split_backward: return 5;
    case Op::bf16_train_forward:
    case Op::bf16_inference_forward:
    case Op::bf16_backward: return op_passes(float_op(op));
  }
  return 0;
}

bool is_bf16(Op op) {
  return op == Op::bf16_train_forward || op == Op::bf16_inference_forward ||
         op == Op::bf16_backward;
}

int element_bytes(Op op) { return is_bf16(op) ? 2 : 4; }

Op float_op(Op op) {
  if (op == Op::bf16_train_forward) return Op::train_forward;
  if (op == Op::bf16_inference_forward) return Op::inference_forward;
  if (op == Op::bf16_backward) return Op::backward;
  return op;
}

bool is_split(Op op) { return op == Op::split_forward || op == Op::split_backward; }

Op fused_op(Op op) {
  if (op == Op::split_forward) return Op::train_forward;
  if (op == Op::split_backward) return Op::backward;
  return op;
}

const char* layout_name(BenchLayout layout) {
  switch (layout) {
    case BenchLayout::channels_first: return "channels_first";
    case BenchLayout::channels_last: return "channels_last";
    case BenchLayout::nc: return "nc";
    case BenchLayout::blocked16: return "blocked16";
  }
  return "?";
}

std::string Case::dims_string() const {
  std::string text;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i > 0) text += 'x';
    text += std::to_string(dims[i]);
  }
  return text;
}

std::string Case::id() const {
  return dims_string() + "/" + layout_name(layout) + "/" + op_name(op);
}

int64_t Case::numel() const {
  return std::accumulate(dims.begin(), dims.end(), int64_t{1}, std::multiplies<int64_t>());
}

BatchNormShape Case::batch_norm_shape() const {
  if (dims.size() < 2) throw Error("bench case " + id() + ": dims need at least N and C");
  BatchNormShape shape;
  shape.n = dims[0];
  shape.c = dims[1];
  shape.s = std::accumulate(dims.begin() + 2, dims.end(), int64_t{1}, std::multiplies<int64_t>());
  shape.layout = layout == BenchLayout::channels_last ? Layout::channels_last
                 : layout == BenchLayout::blocked16  ? Layout::blocked16
                                                     : Layout::channels_first;
  return shape;
}

std::vector<ShapeEntry> shape_table(bool quick) {
  using enum BenchLayout;
  using enum Op;
  const std::vector<BenchLayout> both = {channels_first, channels_last};
  const std::vector<BenchLayout> all = {channels_first, channels_last, blocked16};
  const std::vector<Op> three = {train_forward, inference_forward, backward};
  const std::vector<Op> three_bf16 = {bf16_train_forward, bf16_inference_forward, bf16_backward};
  if (quick) {
    // Small enough for a sanitizer build in CI; every path of the program runs once.
    return {
        {{4, 8, 16, 16},
         both,
         {train_forward, train_forward_relu, inference_forward, backward, forward_backward,
          split_forward, split_backward}},
        {{16, 32}, {nc}, three},
        {{2, 4, 4, 8, 8}, both, three},
        {{2, 16, 4, 4}, {blocked16}, three},
        // GroupNorm and LayerNorm.
        {{2, 64, 4, 4}, both, {group_norm_forward, group_norm_backward}},
        {{16, 64}, {nc}, {layer_norm_forward, layer_norm_backward}},
        {{2, 16, 8, 8}, all, three_bf16},
    };
  }
  return {
      // ResNet-50 layers: conv2_x at 56x56 (64 and 256 channels) and the stem at 112x112.
      // blocked16 too: the layout oneDNN's convolutions write, where its BN has a JIT kernel.
      {{32, 64, 56, 56}, all, three},
      {{32, 256, 56, 56},
       all,
       {train_forward, train_forward_relu, inference_forward, backward, forward_backward,
        split_forward, split_backward}},
      {{32, 64, 112, 112}, all, three},
      // BatchNorm1d after a Linear layer (s = 1).
      {{256, 1024},
       {nc},
       {train_forward, inference_forward, backward, split_forward, split_backward}},
      {{64, 512}, {nc}, three},
      // BatchNorm3d: a video or volume network's early layer.
      {{8, 32, 16, 32, 32}, both, three},
      // GroupNorm (32 groups) on the ResNet stage, and a transformer's LayerNorm
      // (8192 tokens of 1024 features), beside F.group_norm and F.layer_norm.
      {{32, 256, 56, 56}, both, {group_norm_forward, group_norm_backward}},
      {{8192, 1024}, {nc}, {layer_norm_forward, layer_norm_backward}},
      // bf16 beside the same shapes' fp32 rows: half the bytes.
      {{32, 256, 56, 56}, all, three_bf16},
      {{256, 1024}, {nc}, three_bf16},
  };
}

std::vector<Case> expand_cases(const std::vector<ShapeEntry>& table, const std::string& only) {
  std::vector<Case> cases;
  for (const ShapeEntry& entry : table)
    for (BenchLayout layout : entry.layouts)
      for (Op op : entry.ops) {
        Case c{entry.dims, layout, op};
        if (only.empty() || c.id().find(only) != std::string::npos) cases.push_back(c);
      }
  return cases;
}

}  // namespace bnlab::bench
