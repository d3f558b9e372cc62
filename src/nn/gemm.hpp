// The matrix products of the toolkit: oneDNN's dnnl_sgemm (row-major),
// C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C, op = transpose
// when trans_a / trans_b, for Linear's backward; Linear's forward runs
// oneDNN's matmul primitive (linear.cpp) and Conv2d its convolutions.
// Threads: oneDNN runs on OpenMP and reads omp_get_max_threads(), so the
// calling thread's OpenMP count is set to bnlab::num_threads() first.
#pragma once

#include <cstdint>

#include <oneapi/dnnl/dnnl.hpp>

namespace bnlab::nn {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);

// The same product with A and B rounded to bf16, accumulated in float (beta 0
// or 1): what sgemm runs under ComputePrecision::bf16 (nn/precision.cpp).
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// The CPU engine every oneDNN primitive of the toolkit is created on.
dnnl::engine& onednn_engine();

// Sets the calling thread's OpenMP thread count to bnlab::num_threads() (outside
// parallel regions), so the oneDNN calls that follow use that many threads.
void sync_onednn_threads();

}  // namespace bnlab::nn
