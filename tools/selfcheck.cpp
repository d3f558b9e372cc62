// bnlab_selfcheck: runs each batch-norm kernel once per layout through the C
// API, checks the output against a float64 computation, and prints what it did.
// Exit status 0 when every check holds, 1 otherwise.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "bnlab/batch_norm.hpp"
#include "bnlab/bnlab.h"
#include "bnlab/threading.hpp"

namespace {

int64_t index_of(int64_t i, int64_t j, int64_t k, int64_t c, int64_t s, bnlab_layout layout) {
  return layout == BNLAB_CHANNELS_FIRST ? (i * c + j) * s + k : (i * s + k) * c + j;
}

bool check(const char* what, double max_error, double tolerance) {
  const bool ok = max_error <= tolerance;
  std::printf("  %-28s max |error| %.2e  %s\n", what, max_error, ok ? "ok" : "FAILED");
  return ok;
}

}  // namespace

int main() {
  const int64_t n = 8, c = 5, s = 37;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(3.0f, 2.0f);
  std::vector<float> x(n * c * s), dy(n * c * s), w(c), b(c);
  for (float& v : x) v = normal(rng);
  for (float& v : dy) v = normal(rng);
  for (int64_t j = 0; j < c; ++j) w[j] = 0.5f + 0.25f * j, b[j] = 0.1f * j;

  std::printf("bnlab self-check: kernel variant %s, %d threads, shape n=%lld c=%lld s=%lld\n",
              bnlab::batch_norm_kernel_variant().c_str(), bnlab::num_threads(),
              static_cast<long long>(n), static_cast<long long>(c), static_cast<long long>(s));
  bool all_ok = true;
  for (bnlab_layout layout : {BNLAB_CHANNELS_FIRST, BNLAB_CHANNELS_LAST}) {
    std::printf("%s:\n", layout == BNLAB_CHANNELS_FIRST ? "channels-first" : "channels-last");
    std::vector<float> y(x.size()), dx(x.size()), mean(c), invstd(c), rm(c, 0.0f), rv(c, 1.0f);
    std::vector<float> dw(c), db(c), y_eval(x.size());
    bnlab_status st = bnlab_batch_norm_forward_training(x.data(), n, c, s, layout, w.data(),
                                                        b.data(), rm.data(), rv.data(), 0.1, 1,
                                                        1e-5, y.data(), mean.data(), invstd.data());
    st = st != BNLAB_OK ? st
                        : bnlab_batch_norm_forward_inference(x.data(), n, c, s, layout, w.data(),
                                                             b.data(), rm.data(), rv.data(), 1e-5,
                                                             y_eval.data());
    st = st != BNLAB_OK ? st
                        : bnlab_batch_norm_backward(x.data(), dy.data(), n, c, s, layout,
                                                    w.data(), mean.data(), invstd.data(),
                                                    dx.data(), dw.data(), db.data());
    if (st != BNLAB_OK) {
      std::printf("  FAILED: %s: %s\n", bnlab_status_string(st), bnlab_last_error());
      return 1;
    }
    // The same in float64, channel by channel.
    double err_y = 0, err_eval = 0, err_dx = 0, err_dw = 0;
    const double m = static_cast<double>(n * s);
    for (int64_t j = 0; j < c; ++j) {
      double mu = 0, var = 0, sdy = 0, sdyx = 0;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < s; ++k) mu += x[index_of(i, j, k, c, s, layout)];
      mu /= m;
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < s; ++k) {
          const int64_t at = index_of(i, j, k, c, s, layout);
          var += (x[at] - mu) * (x[at] - mu);
          sdy += dy[at];
          sdyx += dy[at] * (x[at] - mu);
        }
      var /= m;
      const double is = 1.0 / std::sqrt(var + 1e-5);
      const double rmean = 0.1 * mu, rvar = 0.9 + 0.1 * var * m / (m - 1);
      err_dw = std::fmax(err_dw, std::fabs(dw[j] - sdyx * is));
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < s; ++k) {
          const int64_t at = index_of(i, j, k, c, s, layout);
          const double xhat = (x[at] - mu) * is;
          err_y = std::fmax(err_y, std::fabs(y[at] - (xhat * w[j] + b[j])));
          const double ye = (x[at] - rmean) / std::sqrt(rvar + 1e-5) * w[j] + b[j];
          err_eval = std::fmax(err_eval, std::fabs(y_eval[at] - ye));
          const double g = w[j] * is * (dy[at] - sdy / m - xhat * sdyx * is / m);
          err_dx = std::fmax(err_dx, std::fabs(dx[at] - g));
        }
    }
    all_ok &= check("forward (training)", err_y, 1e-4);
    all_ok &= check("forward (inference)", err_eval, 1e-4);
    all_ok &= check("backward dx", err_dx, 1e-4);
    all_ok &= check("backward dweight", err_dw, 1e-3);

    // The split kernels of a synchronized BN over two parts (3 and 5 samples)
    // against the fused calls above.
    const int64_t sizes[2] = {3, n - 3}, counts[2] = {sizes[0] * s, sizes[1] * s};
    std::vector<double> means(2 * c), m2s(2 * c), gmean(c), gm2(c), sum_dy(c, 0.0), sum_dyx(c, 0.0);
    std::vector<double> part_dy(c), part_dyx(c);
    std::vector<float> split_y(x.size()), split_dx(x.size()), prm(c, 0.0f), prv(c, 1.0f);
    int64_t count = 0;
    for (int p = 0; p < 2 && st == BNLAB_OK; ++p)
      st = bnlab_batch_norm_stats(x.data() + p * sizes[0] * c * s, sizes[p], c, s, layout,
                                  &means[p * c], &m2s[p * c]);
    if (st == BNLAB_OK)
      st = bnlab_batch_norm_merge_stats(2, c, counts, means.data(), m2s.data(), gmean.data(),
                                        gm2.data(), &count);
    for (int p = 0; p < 2 && st == BNLAB_OK; ++p) {
      const int64_t off = p * sizes[0] * c * s;
      st = bnlab_batch_norm_forward_with_stats(
          x.data() + off, sizes[p], c, s, layout, w.data(), b.data(), gmean.data(), gm2.data(),
          count, p == 0 ? prm.data() : nullptr, p == 0 ? prv.data() : nullptr, 0.1, 1, 1e-5,
          split_y.data() + off, nullptr, nullptr);
      if (st == BNLAB_OK)
        st = bnlab_batch_norm_backward_reduce(x.data() + off, dy.data() + off, sizes[p], c, s,
                                              layout, mean.data(), invstd.data(), part_dy.data(),
                                              part_dyx.data());
      for (int64_t j = 0; j < c; ++j) sum_dy[j] += part_dy[j], sum_dyx[j] += part_dyx[j];
    }
    for (int p = 0; p < 2 && st == BNLAB_OK; ++p) {
      const int64_t off = p * sizes[0] * c * s;
      st = bnlab_batch_norm_backward_with_sums(
          x.data() + off, dy.data() + off, sizes[p], c, s, layout, w.data(), mean.data(),
          invstd.data(), sum_dy.data(), sum_dyx.data(), count, split_dx.data() + off);
    }
    if (st != BNLAB_OK) {
      std::printf("  FAILED: %s: %s\n", bnlab_status_string(st), bnlab_last_error());
      return 1;
    }
    double err_split_y = 0, err_split_dx = 0;
    for (size_t e = 0; e < x.size(); ++e) {
      err_split_y = std::fmax(err_split_y, std::fabs(split_y[e] - y[e]));
      err_split_dx = std::fmax(err_split_dx, std::fabs(split_dx[e] - dx[e]));
    }
    all_ok &= check("split forward vs fused", err_split_y, 1e-4);
    all_ok &= check("split backward vs fused", err_split_dx, 1e-4);
  }
  std::printf("%s\n", all_ok ? "self-check passed" : "self-check FAILED");
  return all_ok ? 0 : 1;
}
