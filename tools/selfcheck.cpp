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
  }
  std::printf("%s\n", all_ok ? "self-check passed" : "self-check FAILED");
  return all_ok ? 0 : 1;
}
