// The matrix products of the toolkit: oneDNN's dnnl_sgemm (row-major),
// C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C, op = transpose
// when trans_a / trans_b, for Linear's backward; Linear's forward runs
// oneDNN's matmul primitive (linear.cpp) and Conv2d its convolutions.
// Threads: oneDNN runs on OpenMP and reads omp_get_max_threads(), so the
// calling thread's OpenMP count is set to bnlab::num_threads() first.
#pragma once

#include <cstdint>

#include <oneapi/dnnl/dnnl.hpp>

#include "bnlab/aligned.hpp"

namespace bnlab::nn {

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);

// The same product with A and B rounded to bf16, accumulated in float (beta 0
// or 1): what sgemm runs under ComputePrecision::bf16 (nn/precision.cpp).
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* a,
               int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);

// An operand of the bf16 product: float values (rounded to bf16 on the way
// in) or bf16 ones (read as they are); exactly one pointer set.
struct Bf16Operand {
  const float* f32 = nullptr;
  const uint16_t* bf16 = nullptr;
};
// Its result: float, or rounded to bf16 (then beta must be 0).
struct Bf16Result {
  float* f32 = nullptr;
  uint16_t* bf16 = nullptr;
};
// C = op(A) op(B) (+ C when beta is 1) (+ bias[j] on column j when bias is
// set), one oneDNN matmul on bf16 A and B, accumulated in float.
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, Bf16Operand a,
               int64_t lda, Bf16Operand b, int64_t ldb, float beta, Bf16Result c, int64_t ldc,
               const float* bias = nullptr);

// `count` floats rounded to bf16 into `out` (grown to fit), over the threads;
// returns out.data().
uint16_t* round_to_bf16(const float* in, int64_t count, AlignedVector<uint16_t>& out);

// The CPU engine every oneDNN primitive of the toolkit is created on.
dnnl::engine& onednn_engine();

// Sets the calling thread's OpenMP thread count to bnlab::num_threads() (outside
// parallel regions), so the oneDNN calls that follow use that many threads.
void sync_onednn_threads();

}  // namespace bnlab::nn
