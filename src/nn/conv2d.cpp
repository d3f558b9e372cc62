// Conv2d: 2-D convolution, NCHW, square kernel, through oneDNN's convolution
// primitives. The module's tensors are plain NCHW, or nChw16c where
// Sequential's plan hands it or asks for it (see MemoryFormat). Inside, a
// layer whose output channels are a multiple of 16 lets oneDNN pick blocked
// layouts (reorders where they differ from the module's formats), backward
// data blocked only when the input channels are too; the others run on plain
// NCHW. Why, with the measurements: docs/toolkit.md, "Convolutions". Nothing
// is timed at run time, so a layer computes the same bits in every run.
#include <algorithm>
#include <unordered_map>

#include <oneapi/dnnl/dnnl.hpp>

#include "bnlab/error.hpp"
#include "bnlab/nn/fold.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/nn/precision.hpp"
#include "bnlab/threading.hpp"
#include "nn/gemm.hpp"
#include "nn/init.hpp"

namespace bnlab::nn {
Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
               int64_t padding, bool has_bias, Deferred)
    : in_channels(in_channels),
      out_channels(out_channels),
      kernel_size(kernel_size),
      stride(stride),
      padding(padding) {
  if (in_channels <= 0) throw Error("Conv2d: in_channels must be positive, got " + std::to_string(in_channels));
  if (out_channels <= 0) throw Error("Conv2d: out_channels must be positive, got " + std::to_string(out_channels));
  if (kernel_size <= 0) throw Error("Conv2d: kernel_size must be positive, got " + std::to_string(kernel_size));
  if (stride <= 0) throw Error("Conv2d: stride must be positive, got " + std::to_string(stride));
  if (padding < 0) throw Error("Conv2d: padding must be >= 0, got " + std::to_string(padding));
  if (has_bias) bias.emplace();
}

Conv2d::Conv2d(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
               int64_t padding, bool has_bias, Generator& gen)
    : Conv2d(in_channels, out_channels, kernel_size, stride, padding, has_bias, deferred) {
  reset_parameters(gen);
}

void Conv2d::reset_parameters(Generator& gen) {
  const int64_t fan_in = in_channels * kernel_size * kernel_size;
  weight.value.resize({out_channels, in_channels, kernel_size, kernel_size});
  weight.grad = Tensor(weight.value.shape(), 0.0f);
  fill_uniform_fan_in(weight.value, fan_in, gen);
  if (bias) {
    bias->value.resize({out_channels});
    bias->grad = Tensor({out_channels}, 0.0f);
    fill_uniform_fan_in(bias->value, fan_in, gen);
  }
}

double Conv2d::state_bytes() const {
  const double k = static_cast<double>(kernel_size);
  const double count =
      static_cast<double>(out_channels) * static_cast<double>(in_channels) * k * k +
      (bias ? static_cast<double>(out_channels) : 0.0);
  return 2.0 * count * sizeof(float);  // values and gradients
}

ModulePtr Conv2d::absorb_channel_affine(const ChannelAffine& affine, Generator& gen) const {
  auto folded =
      std::make_unique<Conv2d>(in_channels, out_channels, kernel_size, stride, padding, true, gen);
  fold_channel_affine(weight, bias, affine, folded->weight, *folded->bias);
  return folded;
}

Shape Conv2d::output_shape(const Shape& input) const {
  if (input.size() != 4 || input[1] != in_channels)
    throw Error(repr() + ": expected input (N, " + std::to_string(in_channels) +
                ", H, W), got " + shape_string(input));
  const int64_t h = (input[2] + 2 * padding - kernel_size);
  const int64_t w = (input[3] + 2 * padding - kernel_size);
  if (h < 0 || w < 0)
    throw Error(repr() + ": input " + shape_string(input) + " is smaller than the kernel");
  return {input[0], out_channels, h / stride + 1, w / stride + 1};
}

namespace {

// One primitive argument: the module's plain memory and the memory in the
// primitive's chosen format, with the reorder between them when they differ.
struct Staged {
  dnnl::memory plain, inner;
  dnnl::reorder reorder;  // plain -> inner for inputs, inner -> plain for outputs
  bool reorders = false;
  bool shares_earlier = false;  // inner is an earlier argument's, filled by that one

  Staged() = default;
  // chosen: the primitive's desc for this argument; input: whether the
  // primitive reads it (else writes it).
  Staged(const dnnl::memory& plain_memory, const dnnl::memory::desc& chosen, bool input,
         const dnnl::engine& engine)
      : plain(plain_memory), inner(plain_memory) {
    if (chosen == plain_memory.get_desc()) return;
    inner = dnnl::memory(chosen, engine);  // oneDNN's buffer, kept with the primitives
    reorder = input ? dnnl::reorder(plain, inner) : dnnl::reorder(inner, plain);
    reorders = true;
  }
  // An input argument an earlier one already holds in the chosen format (the
  // forward's reordered src serves the backward-weights primitive) shares its
  // memory and is not reordered again; otherwise it is staged on its own.
  static Staged after(const Staged& earlier, const dnnl::memory& plain_memory,
                      const dnnl::memory::desc& chosen, const dnnl::engine& engine) {
    if (chosen != earlier.inner.get_desc()) return Staged(plain_memory, chosen, true, engine);
    Staged s = earlier;
    s.reorders = false;
    s.shares_earlier = earlier.reorders;
    return s;
  }
  void fill(dnnl::stream& stream) {
    if (reorders) reorder.execute(stream, plain, inner);
  }
  void drain(dnnl::stream& stream) {
    if (reorders) reorder.execute(stream, inner, plain);
  }
};

}  // namespace

// The primitives and memory objects for one input shape; rebuilt when the
// shape changes, reused (data handles swapped) on every call otherwise.
struct Conv2d::Primitives {
  Shape input_shape;
  MemoryFormat in_format, out_format;  // the module's input and output tensors'
  int threads = 0;  // oneDNN sizes scratchpads for the thread count at creation
  ComputePrecision precision = ComputePrecision::fp32;
  dnnl::stream stream;
  dnnl::convolution_forward forward;
  dnnl::convolution_backward_data backward_data;
  dnnl::convolution_backward_weights backward_weights;
  // The module's tensors (handles whose data pointers are set before
  // each call) and, for each primitive argument, the memory in the format the
  // primitive chose: the plain one itself, or a buffer of its own filled or
  // drained by a reorder.
  dnnl::memory src, weights, bias, dst, diff_src, diff_weights, diff_bias, diff_dst, scratchpad;
  Staged fwd_src, fwd_weights, fwd_dst, data_diff_dst, data_weights, data_diff_src, wei_src,
      wei_diff_dst, wei_diff_weights;
  // Arguments per primitive, built once.
  std::unordered_map<int, dnnl::memory> forward_args, data_args, weights_args;
};


Conv2d::~Conv2d() = default;

/* Builds forward (forward_training), backward-data and backward-weights
 * primitives for input (N, C, H, W), the module's formats and the current
 * thread count: the module's tensors nchw or nChw16c, weights oihw, bias x, and the primitives' own
 * formats where they chose others (buffers allocated here, once); scratchpads
 * from one user buffer (no allocation per call). */
Conv2d::Primitives& Conv2d::primitives_for(const Shape& input, MemoryFormat in,
                                           MemoryFormat out) {
  sync_onednn_threads();
  if (primitives_ && primitives_->input_shape == input && primitives_->threads == num_threads() &&
      primitives_->in_format == in && primitives_->out_format == out &&
      primitives_->precision == compute_precision())
    return *primitives_;
  using dnnl::memory;
  using tag = memory::format_tag;
  const Shape output = output_shape(input);
  dnnl::engine& engine = onednn_engine();
  const memory::desc src_md(memory::dims(input.begin(), input.end()), memory::data_type::f32, tag::nchw);
  const memory::desc dst_md(memory::dims(output.begin(), output.end()), memory::data_type::f32, tag::nchw);
  const memory::desc weights_md({out_channels, in_channels, kernel_size, kernel_size},
                                memory::data_type::f32, tag::oihw);
  // The module's own tensors, in the formats the plan gave.
  const auto user = [&](const memory::desc& plain, MemoryFormat format) {
    if (format == MemoryFormat::plain) return plain;
    return memory::desc(plain.dims(), is_bf16(format) ? memory::data_type::bf16 : memory::data_type::f32,
                        is_blocked16(format) ? tag::nChw16c : tag::nchw);
  };
  const memory::desc user_src_md = user(src_md, in), user_dst_md = user(dst_md, out);
  // What the primitives are created with: the plain formats, or "any" for
  // oneDNN to choose (see the top): the forward and backward weights when the
  // output channels are a multiple of 16, backward data when the input
  // channels are too.
  const bool blocked = out_channels % 16 == 0;
  const bool data_blocked = blocked && in_channels % 16 == 0;
  const auto any = [&](const memory::desc& md, bool choose) {
    return choose ? memory::desc(md.dims(), memory::data_type::f32, tag::any) : md;
  };
  // Under bf16 (bnlab/nn/precision.hpp) what a primitive reads (src, weights,
  // diff_dst) is bf16 in oneDNN's chosen format, filled by the staging
  // reorders, which round; what it writes stays float.
  // A bf16 output or input gradient (the plan's bf16 chains) is written
  // bf16 by the primitive itself.
  const bool bf16 = compute_precision() == ComputePrecision::bf16 || is_bf16(in) || is_bf16(out);
  const auto read = [&](const memory::desc& md, bool choose) {
    return bf16 ? memory::desc(md.dims(), memory::data_type::bf16, tag::any) : any(md, choose);
  };
  const auto write = [&](const memory::desc& md, bool choose, MemoryFormat format) {
    return is_bf16(format)
               ? memory::desc(md.dims(), memory::data_type::bf16, choose ? tag::any : tag::nchw)
               : any(md, choose);
  };
  const memory::desc src_q = read(src_md, blocked), dst_q = write(dst_md, blocked, out),
                     weights_q = read(weights_md, blocked);
  const memory::desc diff_weights_q = any(weights_md, blocked), diff_dst_q = read(dst_md, blocked);
  const memory::desc data_src_q = write(src_md, data_blocked, in),
                     data_dst_q = read(dst_md, data_blocked),
                     data_weights_q = read(weights_md, data_blocked);
  const memory::desc bias_md({out_channels}, memory::data_type::f32, tag::x);
  const memory::dims strides{stride, stride}, pad{padding, padding};
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

  // The three primitive descriptors for one algorithm.
  struct Descs {
    dnnl::convolution_forward::primitive_desc forward;
    dnnl::convolution_backward_data::primitive_desc data;
    dnnl::convolution_backward_weights::primitive_desc weights;
  };
  const auto describe = [&](dnnl::algorithm algo) {
    const auto forward_desc =
        bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algo, src_q,
                                               weights_q, bias_md, dst_q, strides, pad, pad)
             : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algo, src_q,
                                               weights_q, dst_q, strides, pad, pad);
    const dnnl::convolution_forward::primitive_desc forward_pd(forward_desc, attr, engine);
    const dnnl::convolution_backward_data::primitive_desc data_pd(
        dnnl::convolution_backward_data::desc(algo, data_src_q, data_weights_q, data_dst_q,
                                              strides, pad, pad),
        attr, engine, forward_pd);
    const auto weights_desc =
        bias ? dnnl::convolution_backward_weights::desc(algo, src_q, diff_weights_q, bias_md,
                                                        diff_dst_q, strides, pad, pad)
             : dnnl::convolution_backward_weights::desc(algo, src_q, diff_weights_q, diff_dst_q,
                                                        strides, pad, pad);
    return Descs{forward_pd, data_pd,
                 dnnl::convolution_backward_weights::primitive_desc(weights_desc, attr, engine,
                                                                    forward_pd)};
  };
  // The algorithm: Winograd F(4x4, 3x3) for 3x3 stride-1 layers blocked on
  // both sides, where oneDNN has it (jit_wino_4x3, AVX-512); else oneDNN's
  // choice for such layers, direct for the others (see the top).
  const Descs descs = [&] {
    if (data_blocked && kernel_size == 3 && stride == 1) {
      try {
        return describe(dnnl::algorithm::convolution_winograd);
      } catch (const dnnl::error&) {
        // not on this CPU or for this shape
      }
    }
    return describe(data_blocked ? dnnl::algorithm::convolution_auto
                                 : dnnl::algorithm::convolution_direct);
  }();
  const auto& forward_pd = descs.forward;
  const auto& data_pd = descs.data;
  const auto& weights_pd = descs.weights;

  auto p = std::make_unique<Primitives>();
  p->input_shape = input;
  p->in_format = in;
  p->out_format = out;
  p->threads = num_threads();
  p->precision = compute_precision();
  p->stream = dnnl::stream(engine);
  p->forward = dnnl::convolution_forward(forward_pd);
  p->backward_data = dnnl::convolution_backward_data(data_pd);
  p->backward_weights = dnnl::convolution_backward_weights(weights_pd);
  const size_t scratch_bytes =
      std::max({forward_pd.scratchpad_desc().get_size(), data_pd.scratchpad_desc().get_size(),
                weights_pd.scratchpad_desc().get_size()});
  scratchpad_.resize({static_cast<int64_t>(scratch_bytes / sizeof(float) + 1)});
  // One scratchpad memory per primitive would differ only in its desc; oneDNN
  // accepts a larger buffer, so all three use a byte-sized view of it.
  p->scratchpad = memory(memory::desc({static_cast<memory::dim>(scratch_bytes)}, memory::data_type::u8, tag::x),
                         engine, scratchpad_.data());
  p->src = memory(user_src_md, engine, DNNL_MEMORY_NONE);
  p->diff_src = memory(user_src_md, engine, DNNL_MEMORY_NONE);
  p->dst = memory(user_dst_md, engine, DNNL_MEMORY_NONE);
  p->diff_dst = memory(user_dst_md, engine, DNNL_MEMORY_NONE);
  p->weights = memory(weights_md, engine, DNNL_MEMORY_NONE);
  p->diff_weights = memory(weights_md, engine, DNNL_MEMORY_NONE);
  p->bias = memory(bias_md, engine, DNNL_MEMORY_NONE);
  p->diff_bias = memory(bias_md, engine, DNNL_MEMORY_NONE);
  p->fwd_src = Staged(p->src, forward_pd.src_desc(), true, engine);
  p->fwd_weights = Staged(p->weights, forward_pd.weights_desc(), true, engine);
  p->fwd_dst = Staged(p->dst, forward_pd.dst_desc(), false, engine);
  p->data_diff_dst = Staged(p->diff_dst, data_pd.diff_dst_desc(), true, engine);
  // Backward data uses the weights as the forward reordered them (as
  // PyTorch's autograd uses the weights saved at the forward).
  p->data_weights = Staged::after(p->fwd_weights, p->weights, data_pd.weights_desc(), engine);
  p->data_diff_src = Staged(p->diff_src, data_pd.diff_src_desc(), false, engine);
  p->wei_src = Staged::after(p->fwd_src, p->src, weights_pd.src_desc(), engine);
  p->wei_diff_dst = Staged::after(p->data_diff_dst, p->diff_dst, weights_pd.diff_dst_desc(), engine);
  p->wei_diff_weights = Staged(p->diff_weights, weights_pd.diff_weights_desc(), false, engine);
  p->forward_args = {{DNNL_ARG_SRC, p->fwd_src.inner}, {DNNL_ARG_WEIGHTS, p->fwd_weights.inner},
                     {DNNL_ARG_DST, p->fwd_dst.inner}, {DNNL_ARG_SCRATCHPAD, p->scratchpad}};
  p->data_args = {{DNNL_ARG_DIFF_DST, p->data_diff_dst.inner},
                  {DNNL_ARG_WEIGHTS, p->data_weights.inner},
                  {DNNL_ARG_DIFF_SRC, p->data_diff_src.inner},
                  {DNNL_ARG_SCRATCHPAD, p->scratchpad}};
  p->weights_args = {{DNNL_ARG_SRC, p->wei_src.inner},
                     {DNNL_ARG_DIFF_DST, p->wei_diff_dst.inner},
                     {DNNL_ARG_DIFF_WEIGHTS, p->wei_diff_weights.inner},
                     {DNNL_ARG_SCRATCHPAD, p->scratchpad}};
  if (bias) {
    p->forward_args.emplace(DNNL_ARG_BIAS, p->bias);
    p->weights_args.emplace(DNNL_ARG_DIFF_BIAS, p->diff_bias);
  }
  primitives_ = std::move(p);
  return *primitives_;
}

/* Forward. x (N, C, H, W), W (O, C, k, k), b (O) -> y (N, O, Ho, Wo):
 *   y[i, o, oh, ow] = b[o] + sum_{c, kh, kw} W[o, c, kh, kw] x[i, c, oh*s - p + kh, ow*s - p + kw]
 * (x read as 0 outside the image), Ho = (H + 2p - k) / s + 1. One oneDNN call. */
const Tensor& Conv2d::forward(const Tensor& input) {
  return forward_formatted(input, MemoryFormat::plain, MemoryFormat::plain);
}

Blocked16Use Conv2d::blocked16_use(const Shape& input) const {
  return in_channels % 16 == 0 && fits_blocked16(input) ? Blocked16Use::ends : Blocked16Use::no;
}

ChainUse Conv2d::bf16_use(const Shape& input) const {
  return input.size() == 4 ? ChainUse::ends : ChainUse::no;
}

bool Conv2d::can_output_blocked16(const Shape& input) const {
  return out_channels % 16 == 0 && input.size() == 4;
}

const Tensor& Conv2d::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  if (input.shape() != checked_input_shape_) {
    output_.resize(output_shape(input.shape()));
    checked_input_shape_ = input.shape();
  }
  if ((is_blocked16(in) && blocked16_use(input.shape()) != Blocked16Use::ends) ||
      (is_blocked16(out) && !can_output_blocked16(input.shape())))
    throw Error(repr() + ": nChw16c needs channels that are a multiple of 16 (input " +
                shape_string(input.shape()) + ")");
  in_format_ = in;
  out_format_ = out;
  Primitives& p = primitives_for(input.shape(), in, out);
  input_ = &input;
  p.src.set_data_handle(const_cast<float*>(input.data()));
  p.weights.set_data_handle(weight.value.data());
  p.dst.set_data_handle(output_.data());
  if (bias) p.bias.set_data_handle(bias->value.data());
  p.fwd_src.fill(p.stream);
  p.fwd_weights.fill(p.stream);
  p.forward.execute(p.stream, p.forward_args);
  p.fwd_dst.drain(p.stream);
  p.stream.wait();
  return output_;
}

/* Backward. dy (N, O, Ho, Wo):
 *   dx = the adjoint of the forward applied to dy       (backward data; skipped when !compute_grad_input)
 *   dW += sum_{i, oh, ow} dy[i, o, oh, ow] x[i, c, oh*s - p + kh, ow*s - p + kw]
 *   db += sum_{i, oh, ow} dy[i, o, oh, ow]              (backward weights)
 * oneDNN writes this batch's dW and db; they are then added into the grads. */
const Tensor& Conv2d::backward(const Tensor& grad_output) {
  if (input_ == nullptr) throw Error(repr() + ": backward called before forward");
  if (grad_output.shape() != output_.shape())
    throw Error(repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the output " + shape_string(output_.shape()));
  Primitives& p = primitives_for(input_->shape(), in_format_, out_format_);
  grad_weight_.resize(weight.value.shape());
  p.diff_dst.set_data_handle(const_cast<float*>(grad_output.data()));
  if (compute_grad_input) {
    grad_input_.resize(input_->shape());
    p.weights.set_data_handle(weight.value.data());
    p.diff_src.set_data_handle(grad_input_.data());
    p.data_diff_dst.fill(p.stream);
    p.data_weights.fill(p.stream);
    p.backward_data.execute(p.stream, p.data_args);
    p.data_diff_src.drain(p.stream);
  } else {
    grad_input_.resize(kNoGradInputShape);
    // Backward data does not run: fill its dy only where backward weights shares it.
    if (p.wei_diff_dst.shares_earlier) p.data_diff_dst.fill(p.stream);
  }
  p.src.set_data_handle(const_cast<float*>(input_->data()));
  p.diff_weights.set_data_handle(grad_weight_.data());
  if (bias) {
    grad_bias_.resize(bias->value.shape());
    p.diff_bias.set_data_handle(grad_bias_.data());
  }
  p.wei_src.fill(p.stream);
  p.wei_diff_dst.fill(p.stream);
  p.backward_weights.execute(p.stream, p.weights_args);
  p.wei_diff_weights.drain(p.stream);
  p.stream.wait();
  for (int64_t i = 0; i < weight.grad.numel(); ++i) weight.grad[i] += grad_weight_[i];
  if (bias)
    for (int64_t o = 0; o < out_channels; ++o) bias->grad[o] += grad_bias_[o];
  return grad_input_;
}

// PyTorch's extra_repr: padding only when non-zero, bias only when absent.
std::string Conv2d::repr() const {
  auto pair = [](int64_t v) {
    const std::string n = std::to_string(v);
    std::string out = "(";  // appended piece by piece: GCC 12 warns (-Wrestrict) on "(" + n
    out += n;
    out += ", ";
    out += n;
    out += ")";
    return out;
  };
  std::string s = "Conv2d(" + std::to_string(in_channels) + ", " + std::to_string(out_channels) +
                  ", kernel_size=" + pair(kernel_size) + ", stride=" + pair(stride);
  if (padding != 0) s += ", padding=" + pair(padding);
  if (!bias) s += ", bias=False";
  return s + ")";
}

std::vector<std::pair<std::string, Parameter*>> Conv2d::parameters() {
  std::vector<std::pair<std::string, Parameter*>> params{{"weight", &weight}};
  if (bias) params.emplace_back("bias", &*bias);
  return params;
}

}  // namespace bnlab::nn
