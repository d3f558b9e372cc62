// The precision of Linear's and Conv2d's products (bnlab/nn/precision.hpp),
// and the bf16 matrix product Linear runs in bf16 (nn/gemm.hpp).
#include "bnlab/nn/precision.hpp"

#include <atomic>
#include <map>
#include <tuple>

#include "bnlab/aligned.hpp"
#include "bnlab/batch_norm_bf16.hpp"
#include "bnlab/error.hpp"
#include "bnlab/threading.hpp"
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
  const int64_t count = rows == 0 ? 0 : (rows - 1) * ld + cols;
  if (out.size() < static_cast<size_t>(count)) out.resize(static_cast<size_t>(count));
  floats_to_bf16(in, out.data(), count);
  return out.data();
}

// One matmul primitive per product shape, strides and accumulation.
using GemmKey = std::tuple<bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, int>;
struct BfGemm {
  dnnl::matmul primitive;
  dnnl::memory a, b, c;
};

}  // namespace

// C = op(A) op(B) (+ C when beta is 1) with A and B rounded to bf16: one
// oneDNN matmul on bf16 src and weights, f32 accumulation and destination
// (beta 1 as a sum post-op).
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (beta != 0.0f && beta != 1.0f) throw Error("gemm_bf16: beta must be 0 or 1");
  sync_onednn_threads();
  using dnnl::memory;
  thread_local std::map<GemmKey, BfGemm> cache;
  thread_local AlignedVector<uint16_t> a16, b16;
  const GemmKey key{trans_a, trans_b, m, n, k, lda, ldb, ldc, beta != 0.0f, num_threads()};
  auto it = cache.find(key);
  if (it == cache.end()) {
    dnnl::engine& engine = onednn_engine();
    const memory::desc a_md({m, k}, memory::data_type::bf16,
                            trans_a ? memory::dims{1, lda} : memory::dims{lda, 1});
    const memory::desc b_md({k, n}, memory::data_type::bf16,
                            trans_b ? memory::dims{1, ldb} : memory::dims{ldb, 1});
    const memory::desc c_md({m, n}, memory::data_type::f32, memory::dims{ldc, 1});
    dnnl::primitive_attr attr;
    if (beta != 0.0f) {
      dnnl::post_ops ops;
      ops.append_sum(1.0f);
      attr.set_post_ops(ops);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), attr, engine);
    BfGemm g{dnnl::matmul(pd), memory(a_md, engine, DNNL_MEMORY_NONE),
             memory(b_md, engine, DNNL_MEMORY_NONE), memory(c_md, engine, DNNL_MEMORY_NONE)};
    it = cache.emplace(key, std::move(g)).first;
  }
  BfGemm& g = it->second;
  g.a.set_data_handle(trans_a ? rounded(a, k, m, lda, a16) : rounded(a, m, k, lda, a16));
  g.b.set_data_handle(trans_b ? rounded(b, n, k, ldb, b16) : rounded(b, k, n, ldb, b16));
  g.c.set_data_handle(c);
  dnnl::stream stream(onednn_engine());
  g.primitive.execute(stream, {{DNNL_ARG_SRC, g.a}, {DNNL_ARG_WEIGHTS, g.b}, {DNNL_ARG_DST, g.c}});
  stream.wait();
}

}  // namespace bnlab::nn
