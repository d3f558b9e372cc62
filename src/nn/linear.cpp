// Linear: y = x W^T + b. The forward runs oneDNN's matmul primitive, the
// backward dnnl_sgemm accumulating into the gradient (beta = 1): the faster of
// each at the MLP's shapes (docs/toolkit.md, "Matrix products").
#include <memory>
#include <unordered_map>

#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/error.hpp"
#include "bnlab/nn/fold.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/threading.hpp"
#include "core/parallel.hpp"
#include "bnlab/nn/precision.hpp"
#include "nn/gemm.hpp"
#include "nn/init.hpp"

namespace bnlab::nn {

// The forward's matmul primitive for one batch size and thread count, with
// memory handles whose data pointers are set on each call.
struct Linear::Matmul {
  int64_t batch = -1;
  int threads = 0;
  dnnl::stream stream;
  dnnl::matmul primitive;
  dnnl::memory src, weights, bias, dst;
  std::unordered_map<int, dnnl::memory> args;
};

Linear::~Linear() = default;

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, Deferred)
    : in_features(in_features), out_features(out_features) {
  if (in_features <= 0) throw Error("Linear: in_features must be positive, got " + std::to_string(in_features));
  if (out_features <= 0) throw Error("Linear: out_features must be positive, got " + std::to_string(out_features));
  if (has_bias) bias.emplace();
}

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, Generator& gen)
    : Linear(in_features, out_features, has_bias, deferred) {
  reset_parameters(gen);
}

void Linear::reset_parameters(Generator& gen) {
  weight.value.resize({out_features, in_features});
  weight.grad = Tensor({out_features, in_features});
  fill_uniform_fan_in(weight.value, in_features, gen);
  if (bias) {
    bias->value.resize({out_features});
    bias->grad = Tensor({out_features});
    fill_uniform_fan_in(bias->value, in_features, gen);
  }
}

double Linear::state_bytes() const {
  const double count = static_cast<double>(out_features) * static_cast<double>(in_features) +
                       (bias ? static_cast<double>(out_features) : 0.0);
  return 2.0 * count * sizeof(float);  // values and gradients
}

ModulePtr Linear::absorb_channel_affine(const ChannelAffine& affine, Generator& gen) const {
  auto folded = std::make_unique<Linear>(in_features, out_features, true, gen);
  fold_channel_affine(weight, bias, affine, folded->weight, *folded->bias);
  return folded;
}

Shape Linear::output_shape(const Shape& input) const {
  if (input.size() != 2 || input[1] != in_features)
    throw Error(repr() + ": expected input (N, " + std::to_string(in_features) + "), got " +
                shape_string(input));
  return {input[0], out_features};
}

/* Forward. x (N, in), W (out, in), b (out) -> y (N, out):
 *   y = x W^T + b      one oneDNN matmul (N x out x in), W read as W^T in
 *                      place (format ba), the bias added by the primitive
 * Keeps a pointer to x for the backward. */
const Tensor& Linear::forward(const Tensor& input) {
  return forward_formatted(input, MemoryFormat::plain, MemoryFormat::plain);
}

ChainUse Linear::bf16_use(const Shape& input) const {
  return input.size() == 2 ? ChainUse::ends : ChainUse::no;
}

const Tensor& Linear::forward_formatted(const Tensor& input, MemoryFormat in, MemoryFormat out) {
  if (is_blocked16(in) || is_blocked16(out))
    throw Error(repr() + ": takes and gives plain tensors only (no nChw16c)");
  if (input.shape() != checked_input_shape_) {
    output_.resize(output_shape(input.shape()));
    checked_input_shape_ = input.shape();
  }
  const int64_t n = input.size(0);
  input_ = &input;
  in_format_ = in;
  out_format_ = out;
  rounded_in_forward_ = false;
  if (n == 0) return output_;
  if (compute_precision() == ComputePrecision::bf16 || is_bf16(in) || is_bf16(out))
    return forward_bf16(input);
  sync_onednn_threads();
  if (!matmul_ || matmul_->batch != n || matmul_->threads != num_threads()) {
    using dnnl::memory;
    using tag = memory::format_tag;
    dnnl::engine& engine = onednn_engine();
    const memory::desc src_md({n, in_features}, memory::data_type::f32, tag::ab);
    const memory::desc weights_md({in_features, out_features}, memory::data_type::f32, tag::ba);
    const memory::desc bias_md({1, out_features}, memory::data_type::f32, tag::ab);
    const memory::desc dst_md({n, out_features}, memory::data_type::f32, tag::ab);
    const dnnl::matmul::primitive_desc pd(
        bias ? dnnl::matmul::desc(src_md, weights_md, bias_md, dst_md)
             : dnnl::matmul::desc(src_md, weights_md, dst_md),
        engine);
    auto m = std::make_unique<Matmul>();
    m->batch = n;
    m->threads = num_threads();
    m->stream = dnnl::stream(engine);
    m->primitive = dnnl::matmul(pd);
    m->src = memory(src_md, engine, DNNL_MEMORY_NONE);
    m->weights = memory(weights_md, engine, DNNL_MEMORY_NONE);
    m->dst = memory(dst_md, engine, DNNL_MEMORY_NONE);
    m->args = {{DNNL_ARG_SRC, m->src}, {DNNL_ARG_WEIGHTS, m->weights}, {DNNL_ARG_DST, m->dst}};
    if (bias) {
      m->bias = memory(bias_md, engine, DNNL_MEMORY_NONE);
      m->args.emplace(DNNL_ARG_BIAS, m->bias);
    }
    matmul_ = std::move(m);
  }
  Matmul& m = *matmul_;
  m.src.set_data_handle(const_cast<float*>(input.data()));
  m.weights.set_data_handle(weight.value.data());
  m.dst.set_data_handle(output_.data());
  if (bias) m.bias.set_data_handle(bias->value.data());
  m.primitive.execute(m.stream, m.args);
  m.stream.wait();
  return output_;
}

namespace {

// A tensor as an operand or result of the bf16 product, in its format's element type.
Bf16Operand operand(const Tensor& t, MemoryFormat format) {
  return is_bf16(format) ? Bf16Operand{.bf16 = bf16_data(t)} : Bf16Operand{.f32 = t.data()};
}
Bf16Result result(Tensor& t, MemoryFormat format) {
  return is_bf16(format) ? Bf16Result{.bf16 = bf16_data(t)} : Bf16Result{.f32 = t.data()};
}

}  // namespace

// Under bf16 (bnlab/nn/precision.hpp): y = x W^T + b through the bf16
// product, x and y float or bf16 as the formats say. W (and a float x) are
// rounded here once for the backward's products too.
const Tensor& Linear::forward_bf16(const Tensor& input) {
  const int64_t n = input.size(0);
  const uint16_t* w16 = round_to_bf16(weight.value.data(), weight.value.numel(), weight16_);
  const Bf16Operand x =
      is_bf16(in_format_)
          ? operand(input, in_format_)
          : Bf16Operand{.bf16 = round_to_bf16(input.data(), n * in_features, input16_)};
  gemm_bf16(false, true, n, out_features, in_features, x, in_features, Bf16Operand{.bf16 = w16},
            in_features, 0.0f, result(output_, out_format_), out_features,
            bias ? bias->value.data() : nullptr);
  rounded_in_forward_ = true;
  return output_;
}

/* Backward. dy (N, out):
 *   dx = dy W           (N, in), one sgemm (skipped when !compute_grad_input)
 *   dW += dy^T x        (out, in), one sgemm accumulating (beta = 1)
 *   db += sum_i dy[i]   (out) */
const Tensor& Linear::backward(const Tensor& grad_output) {
  if (input_ == nullptr) throw Error("Linear: backward called before forward");
  if (grad_output.shape() != output_.shape())
    throw Error(repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the output " + shape_string(output_.shape()));
  if (compute_precision() == ComputePrecision::bf16 || is_bf16(in_format_) ||
      is_bf16(out_format_))
    return backward_bf16(grad_output);
  const int64_t n = input_->size(0);
  if (compute_grad_input) {
    grad_input_.resize(input_->shape());
    sgemm(false, false, n, in_features, out_features, 1.0f, grad_output.data(), out_features,
          weight.value.data(), in_features, 0.0f, grad_input_.data(), in_features);
  } else {
    grad_input_.resize(kNoGradInputShape);
  }
  sgemm(true, false, out_features, in_features, n, 1.0f, grad_output.data(), out_features,
        input_->data(), in_features, 1.0f, weight.grad.data(), in_features);
  if (bias) {
    float* db = bias->grad.data();
    const float* dy = grad_output.data();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < out_features; ++j) db[j] += dy[i * out_features + j];
  }
  return grad_input_;
}

// The backward's three terms through the bf16 product, on the forward's
// bf16 W and x; dy and dx float or bf16 as its formats say, dW and db float.
const Tensor& Linear::backward_bf16(const Tensor& grad_output) {
  const int64_t n = input_->size(0);
  if (!rounded_in_forward_) {  // the forward ran in fp32: round what it read now
    round_to_bf16(weight.value.data(), weight.value.numel(), weight16_);
    if (!is_bf16(in_format_)) round_to_bf16(input_->data(), n * in_features, input16_);
  }
  const Bf16Operand dy = operand(grad_output, out_format_);
  const Bf16Operand x = is_bf16(in_format_) ? operand(*input_, in_format_)
                                            : Bf16Operand{.bf16 = input16_.data()};
  if (compute_grad_input) {
    grad_input_.resize(input_->shape());
    gemm_bf16(false, false, n, in_features, out_features, dy, out_features,
              Bf16Operand{.bf16 = weight16_.data()}, in_features, 0.0f,
              result(grad_input_, in_format_), in_features);
  } else {
    grad_input_.resize(kNoGradInputShape);
  }
  gemm_bf16(true, false, out_features, in_features, n, dy, out_features, x, in_features, 1.0f,
            Bf16Result{.f32 = weight.grad.data()}, in_features);
  if (bias) {
    float* db = bias->grad.data();
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < out_features; ++j)
        db[j] += dy.bf16 != nullptr ? bf16_to_float(dy.bf16[i * out_features + j])
                                    : dy.f32[i * out_features + j];
  }
  return grad_input_;
}

std::string Linear::repr() const {
  return "Linear(in_features=" + std::to_string(in_features) +
         ", out_features=" + std::to_string(out_features) +
         ", bias=" + (bias ? "True" : "False") + ")";
}

std::vector<std::pair<std::string, Parameter*>> Linear::parameters() {
  std::vector<std::pair<std::string, Parameter*>> params{{"weight", &weight}};
  if (bias) params.emplace_back("bias", &*bias);
  return params;
}

}  // namespace bnlab::nn
