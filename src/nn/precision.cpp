// The compute precision (bnlab/nn/precision.hpp), and the bf16 matrix
// product Linear runs in bf16 (nn/gemm.hpp).
#include "bnlab/nn/precision.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <tuple>
#include <unordered_map>

#include "bnlab/aligned.hpp"
#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/error.hpp"
#include "bnlab/threading.hpp"
#include "core/parallel.hpp"
#include "nn/gemm.hpp"

namespace bnlab::nn {
namespace {

std::atomic<ComputePrecision> g_precision{ComputePrecision::fp32};

}  // namespace

bool cpu_has_bf16() {
  const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const auto bf16 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_bf16);
  return (isa & bf16) == bf16;  // ISAs are nested bit sets; AMX includes this one
}

std::string onednn_isa_name() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx512_mic: return "avx512_mic";
    case dnnl::cpu_isa::avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "isa " + std::to_string(static_cast<unsigned>(dnnl::get_effective_cpu_isa()));
  }
}

void set_compute_precision(ComputePrecision precision) {
  if (precision == ComputePrecision::bf16 && !cpu_has_bf16())
    throw Error("--precision bf16 needs a CPU with AVX512-BF16 or AMX-BF16; oneDNN sees " +
                onednn_isa_name() + " here (train with --precision fp32)");
  g_precision.store(precision);
}

ComputePrecision compute_precision() { return g_precision.load(); }

std::string precision_name(ComputePrecision precision) {
  return precision == ComputePrecision::bf16 ? "bf16" : "fp32";
}

ComputePrecision parse_compute_precision(const std::string& name) {
  if (name == "fp32") return ComputePrecision::fp32;
  if (name == "bf16") return ComputePrecision::bf16;
  throw Error("precision must be fp32 or bf16, got '" + name + "'");
}

namespace {

// Rows `rows` of `cols` values, `ld` apart, rounded to bf16 in place of the
// same layout (the product reads it with the same strides).
uint16_t* rounded(const float* in, int64_t rows, int64_t cols, int64_t ld,
                  AlignedVector<uint16_t>& out) {
  return round_to_bf16(in, rows == 0 ? 0 : (rows - 1) * ld + cols, out);
}

// One matmul primitive per product shape, strides, accumulation, result type and bias.
using GemmKey =
    std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int, bool, bool>;
struct BfGemm {
  dnnl::matmul primitive;
  dnnl::memory a, b, c, bias;
};

}  // namespace

// Chunks of 16 Ki values over the threads: a weight matrix rounded on one
// thread kept the others waiting (docs/performance.md, bf16 training on AMX).
uint16_t* round_to_bf16(const float* in, int64_t count, AlignedVector<uint16_t>& out) {
  if (out.size() < static_cast<size_t>(count)) out.resize(static_cast<size_t>(count));
  constexpr int64_t kChunk = 1 << 14;
  uint16_t* to = out.data();
  parallel_for((count + kChunk - 1) / kChunk, count, [&](int64_t i) {
    const int64_t begin = i * kChunk;
    floats_to_bf16(in + begin, to + begin, std::min(kChunk, count - begin));
  });
  return to;
}

void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  gemm_bf16(trans_a, trans_b, m, n, k, Bf16Operand{.f32 = a}, lda, Bf16Operand{.f32 = b}, ldb,
            beta, Bf16Result{.f32 = c}, ldc);
}

// One oneDNN matmul on bf16 src and weights, f32 accumulation, an f32 or
// bf16 destination (beta 1 as a sum post-op, the bias as the primitive's).
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, Bf16Operand a,
               int64_t lda, Bf16Operand b, int64_t ldb, float beta, Bf16Result c, int64_t ldc,
               const float* bias) {
  if (m == 0 || n == 0) return;
  if (beta != 0.0f && beta != 1.0f) throw Error("gemm_bf16: beta must be 0 or 1");
  if (beta != 0.0f && c.bf16 != nullptr) throw Error("gemm_bf16: a bf16 result cannot accumulate");
  sync_onednn_threads();
  using dnnl::memory;
  thread_local std::map<GemmKey, BfGemm> cache;
  thread_local AlignedVector<uint16_t> a16, b16;
  const bool c_bf16 = c.bf16 != nullptr;
  const GemmKey key{trans_a, trans_b, m, n, k, lda, ldb, ldc, beta != 0.0f, num_threads(),
                    c_bf16, bias != nullptr};
  auto it = cache.find(key);
  if (it == cache.end()) {
    dnnl::engine& engine = onednn_engine();
    const memory::desc a_md({m, k}, memory::data_type::bf16,
                            trans_a ? memory::dims{1, lda} : memory::dims{lda, 1});
    const memory::desc b_md({k, n}, memory::data_type::bf16,
                            trans_b ? memory::dims{1, ldb} : memory::dims{ldb, 1});
    const memory::desc c_md({m, n}, c_bf16 ? memory::data_type::bf16 : memory::data_type::f32,
                            memory::dims{ldc, 1});
    const memory::desc bias_md({1, n}, memory::data_type::f32, memory::dims{n, 1});
    dnnl::primitive_attr attr;
    if (beta != 0.0f) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    const dnnl::matmul::primitive_desc pd(
        bias != nullptr ? dnnl::matmul::desc(a_md, b_md, bias_md, c_md)
                        : dnnl::matmul::desc(a_md, b_md, c_md),
        attr, engine);
    BfGemm g{dnnl::matmul(pd), memory(a_md, engine, DNNL_MEMORY_NONE),
             memory(b_md, engine, DNNL_MEMORY_NONE), memory(c_md, engine, DNNL_MEMORY_NONE),
             memory(bias_md, engine, DNNL_MEMORY_NONE)};
    it = cache.emplace(key, std::move(g)).first;
  }
  BfGemm& g = it->second;
  const auto bf16_of = [](Bf16Operand x, int64_t rows, int64_t cols, int64_t ld,
                          AlignedVector<uint16_t>& buffer) {
    return x.bf16 != nullptr ? const_cast<uint16_t*>(x.bf16) : rounded(x.f32, rows, cols, ld, buffer);
  };
  g.a.set_data_handle(trans_a ? bf16_of(a, k, m, lda, a16) : bf16_of(a, m, k, lda, a16));
  g.b.set_data_handle(trans_b ? bf16_of(b, n, k, ldb, b16) : bf16_of(b, k, n, ldb, b16));
  g.c.set_data_handle(c_bf16 ? static_cast<void*>(c.bf16) : static_cast<void*>(c.f32));
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, g.a}, {DNNL_ARG_WEIGHTS, g.b}, {DNNL_ARG_DST, g.c}};
  if (bias != nullptr) {
    g.bias.set_data_handle(const_cast<float*>(bias));
    args.emplace(DNNL_ARG_BIAS, g.bias);
  }
  dnnl::stream stream(onednn_engine());
  g.primitive.execute(stream, args);
  stream.wait();
}

}  // namespace bnlab::nn
