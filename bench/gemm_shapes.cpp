// bnlab_gemm_shapes: oneDNN's dnnl_sgemm alone at the matrix products of one
// mlp-bn training step (batch 64), on 1 and 2 threads; the floor under
// `bnlab train --model mlp-bn` (docs/performance.md, Training throughput).
// Per shape: 50 warm-up calls, then the mean of 1000 (microseconds, GFLOP/s).
#include <oneapi/dnnl/dnnl.h>
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <vector>

namespace {

// C (m x n) = op(A) (m x k) * op(B) (k x n), row-major, as src/nn/linear.cpp calls it.
struct GemmShape {
  const char* what;
  char transa, transb;
  int m, n, k;
};

constexpr GemmShape kShapes[] = {
    {"forward 784->512", 'N', 'T', 64, 512, 784},
    {"weight grad 784->512", 'T', 'N', 512, 784, 64},
    {"forward 512->256", 'N', 'T', 64, 256, 512},
    {"input grad 512->256", 'N', 'N', 64, 512, 256},
};

}  // namespace

int main() {
  std::printf("%-24s %7s %10s %9s\n", "product (m x n x k)", "threads", "us", "GFLOP/s");
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const GemmShape& g : kShapes) {
      std::vector<float> a(size_t(g.m) * g.k, 0.5f), b(size_t(g.k) * g.n, 0.25f),
          c(size_t(g.m) * g.n, 0.0f);
      const int lda = g.transa == 'N' ? g.k : g.m, ldb = g.transb == 'N' ? g.n : g.k;
      auto call = [&] {
        dnnl_sgemm(g.transa, g.transb, g.m, g.n, g.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f,
                   c.data(), g.n);
      };
      for (int i = 0; i < 50; ++i) call();
      constexpr int kCalls = 1000;
      const auto start = std::chrono::steady_clock::now();
      for (int i = 0; i < kCalls; ++i) call();
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / kCalls;
      std::printf("%-24s %7d %10.1f %9.0f   %dx%dx%d\n", g.what, threads, seconds * 1e6,
                  2.0 * g.m * g.n * g.k / seconds / 1e9, g.m, g.n, g.k);
    }
  }
  return 0;
}
