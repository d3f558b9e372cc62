// Linear: y = x W^T + b through oneDNN's sgemm.
//
// Why oneDNN: issue 3 measured, 2 threads, fp32, MLP shapes (64x784 by 784x256
// and the like): Debian's oneDNN 2.6 dnnl_sgemm 330-400 GFLOP/s, OpenBLAS 0.3.21
// about 92 (Haswell kernels on this Zen 5), BLIS 50-65. Measured again for this
// file (2026-11-25, one thread, best of 15 windows of 40 ms, while the 2-core
// machine was shared at load ~10, so absolute figures are low): dnnl_sgemm 52,
// 45 and 16 GFLOP/s at 64x784 by 784x512, 64x512 by 512x256 and 64x256 by
// 256x10; Debian's reference BLAS (the only other one installed) 1.4, 1.4, 1.2;
// a plain -O3 loop 1.4, 1.5, 1.3. Two-thread figures were not meaningful under
// that load (OpenMP barriers with the cores oversubscribed).
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include "bnlab/error.hpp"
#include "bnlab/nn/layers.hpp"
#include "bnlab/threading.hpp"
#include "core/parallel.hpp"
#include "nn/gemm.hpp"
#include "nn/init.hpp"

namespace bnlab::nn {

void sync_onednn_threads() {
  const int threads = num_threads();
  if (!omp_in_parallel() && omp_get_max_threads() != threads) omp_set_num_threads(threads);
}

void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
  if (m == 0 || n == 0) return;
  sync_onednn_threads();
  const dnnl_status_t status = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k,
                                          alpha, a, lda, b, ldb, beta, c, ldc);
  if (status != dnnl_success)
    throw Error("dnnl_sgemm failed with status " + std::to_string(static_cast<int>(status)) +
                " for m=" + std::to_string(m) + ", n=" + std::to_string(n) +
                ", k=" + std::to_string(k));
}

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias, Generator& gen)
    : in_features(in_features), out_features(out_features) {
  if (in_features <= 0) throw Error("Linear: in_features must be positive, got " + std::to_string(in_features));
  if (out_features <= 0) throw Error("Linear: out_features must be positive, got " + std::to_string(out_features));
  weight.value.resize({out_features, in_features});
  weight.grad = Tensor({out_features, in_features});
  fill_uniform_fan_in(weight.value, in_features, gen);
  if (has_bias) {
    bias.emplace();
    bias->value.resize({out_features});
    bias->grad = Tensor({out_features});
    fill_uniform_fan_in(bias->value, in_features, gen);
  }
}

Shape Linear::output_shape(const Shape& input) const {
  if (input.size() != 2 || input[1] != in_features)
    throw Error(repr() + ": expected input (N, " + std::to_string(in_features) + "), got " +
                shape_string(input));
  return {input[0], out_features};
}

/* Forward. x (N, in), W (out, in), b (out) -> y (N, out):
 *   y = x W^T          one sgemm (N x out x in)
 *   y[i, :] += b       one pass over y
 * Keeps a pointer to x for the backward. */
const Tensor& Linear::forward(const Tensor& input) {
  if (input.shape() != checked_input_shape_) {
    output_.resize(output_shape(input.shape()));
    checked_input_shape_ = input.shape();
  }
  const int64_t n = input.size(0);
  input_ = &input;
  sgemm(false, true, n, out_features, in_features, 1.0f, input.data(), in_features,
        weight.value.data(), in_features, 0.0f, output_.data(), out_features);
  if (bias) {
    const float* b = bias->value.data();
    float* y = output_.data();
    parallel_for(n, n * out_features, [&](int64_t i) {
      float* row = y + i * out_features;
      for (int64_t j = 0; j < out_features; ++j) row[j] += b[j];
    });
  }
  return output_;
}

/* Backward. dy (N, out):
 *   dx = dy W           (N, in), one sgemm (skipped when !compute_grad_input)
 *   dW += dy^T x        (out, in), one sgemm accumulating (beta = 1)
 *   db += sum_i dy[i]   (out) */
const Tensor& Linear::backward(const Tensor& grad_output) {
  if (input_ == nullptr) throw Error("Linear: backward called before forward");
  const int64_t n = input_->size(0);
  if (grad_output.shape() != output_.shape())
    throw Error(repr() + ": grad_output shape " + shape_string(grad_output.shape()) +
                " does not match the output " + shape_string(output_.shape()));
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
