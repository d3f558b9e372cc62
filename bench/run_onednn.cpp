// oneDNN 2.6 as a peer, in-process: the batch normalization primitive on the
// same buffers bnlab ran on. Only execute() (and the stream's wait) is timed;
// descriptors and primitives are built before the clock starts.
//   train forward:     prop_kind::forward_training, use_scale | use_shift
//                      (+ fuse_norm_relu, with its workspace, for the ReLU case)
//   inference forward: prop_kind::forward_inference, use_global_stats | use_scale | use_shift
//   backward:          prop_kind::backward, use_scale | use_shift (dx, dscale, dshift)
//   forward + backward: the training forward, then the backward on its statistics
//   the bf16 ops:      the same primitives on bf16 memory (scale, shift and the
//                      statistics stay f32, as oneDNN requires)
// Formats: nchw / nhwc / nChw16c (4-D), ncdhw / ndhwc / nCdhw16c (5-D), nc (2-D). oneDNN takes the
// variance, not 1/sqrt(var + eps): its own training forward supplies mean and
// variance to its backward, as a framework using it would. oneDNN 2.6's backward
// with use_shift also asks for the shift (query exec_arg_md lists it), though
// the gradient does not depend on it.
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>

#include "bnlab/error.hpp"
#include "kernel_buffers.hpp"

namespace bnlab::bench {
namespace {

using dnnl::memory;
using dnnl::normalization_flags;
using dnnl::prop_kind;
using Tag = memory::format_tag;

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

Tag tag_for(const Case& the_case) {
  const size_t rank = the_case.dims.size();
  const bool last = the_case.layout == BenchLayout::channels_last;
  if (the_case.layout == BenchLayout::blocked16) {
    if (rank == 4) return Tag::nChw16c;
    if (rank == 5) return Tag::nCdhw16c;
    throw Error("oneDNN peer: case " + the_case.id() + ": blocked16 is mapped for 4-D and 5-D only");
  }
  if (rank == 2) return Tag::nc;
  if (rank == 3) return last ? Tag::nwc : Tag::ncw;
  if (rank == 4) return last ? Tag::nhwc : Tag::nchw;
  if (rank == 5) return last ? Tag::ndhwc : Tag::ncdhw;
  throw Error("oneDNN peer: case " + the_case.id() + " has rank " + std::to_string(rank) +
              ", only 2 to 5 are mapped to a format");
}

}  // namespace

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + " (cpu runtime " +
         (v->cpu_runtime == DNNL_RUNTIME_OMP ? std::string("OpenMP")
                                             : std::to_string(v->cpu_runtime)) +
         ")";
}

namespace {

Timing time_case(const Case& the_case, KernelBuffers& b, const TimingPolicy& policy) {
  dnnl::engine& engine = cpu_engine();
  dnnl::stream stream(engine);
  const memory::dims dims(the_case.dims.begin(), the_case.dims.end());
  const bool bf16 = is_bf16(the_case.op);
  const memory::desc data_md(dims, bf16 ? memory::data_type::bf16 : memory::data_type::f32,
                             tag_for(the_case));
  const memory::desc channel_md({the_case.dims[1]}, memory::data_type::f32, Tag::a);
  constexpr float kEps = 1e-5f;

  memory src(data_md, engine, bf16 ? static_cast<void*>(b.x_bf16.data()) : b.x.data());
  memory diff_dst(data_md, engine, bf16 ? static_cast<void*>(b.dy_bf16.data()) : b.dy.data());
  memory out(data_md, engine, bf16 ? static_cast<void*>(b.out_peer_bf16.data()) : b.out_peer.data());
  memory scale(channel_md, engine, b.weight.data());
  memory shift(channel_md, engine, b.bias.data());
  memory mean(channel_md, engine, b.peer_mean.data());
  memory variance(channel_md, engine, b.peer_var.data());
  memory running_mean(channel_md, engine, b.running_mean.data());
  memory running_var(channel_md, engine, b.running_var.data());
  memory diff_scale(channel_md, engine, b.peer_dweight.data());
  memory diff_shift(channel_md, engine, b.peer_dbias.data());

  const auto affine = normalization_flags::use_scale | normalization_flags::use_shift;
  const bool relu = the_case.op == Op::train_forward_relu;
  const auto train_flags = relu ? affine | normalization_flags::fuse_norm_relu : affine;
  dnnl::batch_normalization_forward::primitive_desc train_pd(
      {prop_kind::forward_training, data_md, kEps, train_flags}, engine);
  dnnl::batch_normalization_forward train(train_pd);
  memory workspace;
  std::unordered_map<int, memory> train_args = {{DNNL_ARG_SRC, src},       {DNNL_ARG_DST, out},
                                                {DNNL_ARG_SCALE, scale},   {DNNL_ARG_SHIFT, shift},
                                                {DNNL_ARG_MEAN, mean},     {DNNL_ARG_VARIANCE, variance}};
  if (relu) {
    workspace = memory(train_pd.workspace_desc(), engine);
    train_args[DNNL_ARG_WORKSPACE] = workspace;
  }

  const Op op = float_op(the_case.op);
  switch (op) {
    case Op::train_forward:
    case Op::train_forward_relu:
    case Op::split_forward:
      return time_calls([&] { train.execute(stream, train_args), stream.wait(); }, policy);
    case Op::inference_forward: {
      dnnl::batch_normalization_forward::primitive_desc pd(
          {prop_kind::forward_inference, data_md, kEps,
           affine | normalization_flags::use_global_stats},
          engine);
      dnnl::batch_normalization_forward inference(pd);
      std::unordered_map<int, memory> args = {
          {DNNL_ARG_SRC, src},     {DNNL_ARG_DST, out},
          {DNNL_ARG_SCALE, scale}, {DNNL_ARG_SHIFT, shift},
          {DNNL_ARG_MEAN, running_mean}, {DNNL_ARG_VARIANCE, running_var}};
      return time_calls([&] { inference.execute(stream, args), stream.wait(); }, policy);
    }
    case Op::backward:
    case Op::split_backward:
    case Op::forward_backward: {
      // The statistics of x, from oneDNN's own forward (untimed).
      train.execute(stream, train_args);
      stream.wait();
      dnnl::batch_normalization_backward::primitive_desc pd(
          {prop_kind::backward, data_md, data_md, kEps, affine}, engine, train_pd);
      dnnl::batch_normalization_backward backward(pd);
      std::unordered_map<int, memory> args = {
          {DNNL_ARG_SRC, src},           {DNNL_ARG_DIFF_DST, diff_dst},
          {DNNL_ARG_MEAN, mean},         {DNNL_ARG_VARIANCE, variance},
          {DNNL_ARG_SCALE, scale},       {DNNL_ARG_SHIFT, shift},
          {DNNL_ARG_DIFF_SRC, out},
          {DNNL_ARG_DIFF_SCALE, diff_scale}, {DNNL_ARG_DIFF_SHIFT, diff_shift}};
      if (op == Op::backward || op == Op::split_backward)
        return time_calls([&] { backward.execute(stream, args), stream.wait(); }, policy);
      return time_calls(
          [&] {
            train.execute(stream, train_args);
            backward.execute(stream, args);
            stream.wait();
          },
          policy);
    }
    case Op::group_norm_forward:
    case Op::group_norm_backward:
    case Op::layer_norm_forward:
    case Op::layer_norm_backward:
    case Op::bf16_train_forward:
    case Op::bf16_inference_forward:
    case Op::bf16_backward: break;  // not batch norm, or mapped to float_op above
  }
  throw Error("oneDNN peer: unknown op in case " + the_case.id());
}

}  // namespace

Timing time_onednn_case(const Case& the_case, KernelBuffers& buffers, const TimingPolicy& policy) {
  try {
    return time_case(the_case, buffers, policy);
  } catch (const dnnl::error& e) {
    throw Error("oneDNN: " + std::string(e.what()) + " (status " +
                std::to_string(static_cast<int>(e.status)) + ")");
  }
}

}  // namespace bnlab::bench
