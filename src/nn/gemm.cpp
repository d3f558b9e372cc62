// oneDNN's engine, its thread count, and dnnl_sgemm with bnlab's errors (gemm.hpp).
#include "nn/gemm.hpp"

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <string>

#include "bnlab/error.hpp"
#include "bnlab/nn/precision.hpp"
#include "bnlab/threading.hpp"

namespace bnlab::nn {

dnnl::engine& onednn_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

void sync_onednn_threads() {
  const int threads = num_threads();
  if (!omp_in_parallel() && omp_get_max_threads() != threads) omp_set_num_threads(threads);
}

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (compute_precision() == ComputePrecision::bf16)
    return gemm_bf16(trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
  sync_onednn_threads();
  const dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha,
                                          a, lda, b, ldb, beta, c, ldc);
  if (status != dnnl_success)
    throw Error("dnnl_sgemm failed with status " + std::to_string(static_cast<int>(status)) +
                " for m=" + std::to_string(m) + ", n=" + std::to_string(n) +
                ", k=" + std::to_string(k));
}

}  // namespace bnlab::nn
